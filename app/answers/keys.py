"""Receipt code → X25519 key pair, through Argon2id keyed by the deployment's secret; sealing to the public key.

The code is the only key: the pair is derived when a tip is sent (its public key goes into the Message-ID) and when
the resident comes back, and forgotten at once. The KDF's password and salt are both HMACs under the secret key, so
whoever holds the store alone cannot even start a search; whoever also holds the secret pays one Argon2id run per
candidate code (`search_cost_cpu_years`, docs/answers.md).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # libsodium's binding loads with the first derivation: a service with answers off never needs it
    from nacl.public import PrivateKey

# Chosen by measurement (benchmarks/answers.py, docs/benchmarks.md): about 30-50 ms on one core of a small VPS,
# 32 MiB each, so the few derivations allowed at once (app.answers.bound) fit beside the service.
OPS_LIMIT = 2
MEM_LIMIT = 32 * 1024 * 1024
# The code's 14 random digits; the tag digit and the check digit add nothing an attacker must guess.
CODE_SPACE = 10**14
_SECONDS_PER_YEAR = 365.25 * 24 * 3600


class SealError(Exception):
    """A ciphertext that this key cannot open (another code's answer, or damaged bytes)."""


def _label(secret: bytes, label: str) -> bytes:
    """A key for one purpose, derived from the secret key, so no two uses of it can be confused."""
    return hmac.new(secret, b"tipbox-answers:" + label.encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A code's key pair; the private half lives only while one request is answered."""

    private: PrivateKey

    @property
    def public(self) -> bytes:
        return bytes(self.private.public_key)


def derive(code: str, secret: bytes, *, ops: int = OPS_LIMIT, mem: int = MEM_LIMIT) -> KeyPair:
    """The key pair of the canonical receipt `code` ("4821 0937 5512 9634") under `secret`; tens of ms, by design.

    Blocking and CPU-bound: call it in a worker thread under the derivation bound, never on the event loop.
    """
    from nacl import pwhash
    from nacl.public import PrivateKey

    digits = code.replace(" ", "")
    password = hmac.new(_label(secret, "password"), digits.encode(), hashlib.sha256).digest()
    salt = _label(secret, "salt")[: pwhash.argon2id.SALTBYTES]
    seed = pwhash.argon2id.kdf(32, password, salt, opslimit=ops, memlimit=mem)
    return KeyPair(PrivateKey(seed))


def lookup_id(public: bytes) -> bytes:
    """What the store files a code's answers under: a hash of its public key (16 bytes)."""
    return hashlib.blake2b(public, digest_size=16, person=b"tipbox-lookup").digest()


def seal(public: bytes, plaintext: bytes) -> bytes:
    """`plaintext` in a libsodium sealed box: only the private key of `public` opens it, the sealer included not."""
    from nacl.public import PublicKey, SealedBox

    return bytes(SealedBox(PublicKey(public)).encrypt(plaintext))


def unseal(pair: KeyPair, ciphertext: bytes) -> bytes:
    from nacl.exceptions import CryptoError
    from nacl.public import SealedBox

    try:
        return bytes(SealedBox(pair.private).decrypt(ciphertext))
    except (CryptoError, ValueError, TypeError) as exc:
        raise SealError("this key cannot open that answer") from exc


def keyed_hash(secret: bytes, label: str, value: bytes) -> bytes:
    """An HMAC of `value` under the secret key and `label` (16 bytes): a stable id that reveals nothing of `value`."""
    return hmac.new(_label(secret, label), value, hashlib.sha256).digest()[:16]


def search_cost_cpu_years(seconds_per_derivation: float, codes: int = CODE_SPACE) -> float:
    """CPU time to try every code once at this cost per derivation (a targeted search finds one in half of it)."""
    return codes * seconds_per_derivation / _SECONDS_PER_YEAR
