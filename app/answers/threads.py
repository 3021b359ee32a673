"""The tip's Message-ID when answers are on: the post's slug, the code's public key and a MAC over both.

`<ncs.{public key}.{mac}@domain>` for the first tip (follow-ups derive it again from the code and reply to it),
`<ncs.{public key}.{nonce}.{mac}@domain>` for a follow-up's own id, so that a reply to a follow-up is recognised
even by a mail client that references only its parent. Ingestion reads the slug (whose officers may answer) and the
public key (whom to seal to) back, and only when the MAC under the secret key holds: nobody can make one up.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

_PUBLIC_BYTES = 32
_MAC_BYTES = 16
_NONCE_BYTES = 8
# Lowercase base32, no padding: letters and digits only, valid in a Message-ID and unchanged by any mail system.
_B32 = "[a-z2-7]"
_ID = re.compile(
    rf"<?(?P<slug>[a-z0-9-]{{1,32}})\.(?P<public>{_B32}{{52}})(?:\.(?P<nonce>{_B32}{{13}}))?"
    rf"\.(?P<mac>{_B32}{{26}})@(?P<domain>[^<>@\s]+)>?"
)
_IN_HEADER = re.compile(r"<[^<>\s]{1,250}>")


@dataclass(frozen=True, slots=True)
class Thread:
    """What a valid tipbox Message-ID says: which post the tip was for, and the code's public key."""

    slug: str
    public: bytes


def _encode(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _decode(text: str, size: int) -> bytes | None:
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        data = base64.b32decode(padded)
    except (binascii.Error, ValueError):
        return None
    return data if len(data) == size else None


def _mac(secret: bytes, slug: str, public: bytes, nonce: bytes) -> bytes:
    key = hmac.new(secret, b"tipbox-answers:thread-mac", hashlib.sha256).digest()
    data = slug.encode() + b"\0" + public + nonce
    return hmac.new(key, data, hashlib.sha256).digest()[:_MAC_BYTES]


def message_id(
    slug: str, public: bytes, secret: bytes, domain: str, *, follow_up: bool = False, seed: bytes = b""
) -> str:
    """The first tip's Message-ID (the same every time for a code), or one for a follow-up: from `seed` (the same
    form sent again gets the same one), else fresh."""
    nonce = (seed[:_NONCE_BYTES] if len(seed) >= _NONCE_BYTES else secrets.token_bytes(_NONCE_BYTES)) if follow_up \
        else b""
    parts = [slug, _encode(public), *([_encode(nonce)] if nonce else []), _encode(_mac(secret, slug, public, nonce))]
    return f"<{'.'.join(parts)}@{domain}>"


def read(value: str, secret: bytes) -> Thread | None:
    """The thread a Message-ID names, or None if tipbox did not make it under `secret` (or it was changed)."""
    match = _ID.fullmatch(value.strip())
    if match is None:
        return None
    public = _decode(match["public"], _PUBLIC_BYTES)
    nonce = _decode(match["nonce"], _NONCE_BYTES) if match["nonce"] else b""
    mac = _decode(match["mac"], _MAC_BYTES)
    if public is None or nonce is None or mac is None:
        return None
    if not hmac.compare_digest(mac, _mac(secret, match["slug"], public, nonce)):
        return None
    return Thread(match["slug"], public)


def find(headers: Iterable[str], secret: bytes) -> Thread | None:
    """The first valid tipbox thread among the ids in In-Reply-To and References values (nearest parent first)."""
    for header in headers:
        for found in reversed(_IN_HEADER.findall(header)):
            thread = read(found, secret)
            if thread is not None:
                return thread
    return None
