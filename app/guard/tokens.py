"""Form tokens: each form served carries one, signed with the secret key, dated, with a single-use nonce.

`t` is 48 URL-safe characters: base64url(version ‖ served-at in ms (6 bytes) ‖ nonce (13 bytes) ‖ MAC), the MAC being
HMAC-SHA256 (first 16 bytes) under a key derived from `TIPBOX_SECRET_KEY`, over the post's slug and the rest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

_VERSION = 1
_NONCE_BYTES = 13
_MAC_BYTES = 16
_TOKEN_BYTES = 1 + 6 + _NONCE_BYTES + _MAC_BYTES  # 36 bytes: 48 URL-safe characters, no padding


@dataclass(frozen=True, slots=True)
class Token:
    """A verified form token: served for `post` at `issued` (seconds), with a random `nonce` (hex)."""

    post: str
    issued: float
    nonce: str


class Tokens:
    """Signs and reads form tokens: HMAC-SHA256 over the post, the time the form was served and a nonce."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"tipbox form token", hashlib.sha256).digest()

    def _mac(self, post: str, head: bytes) -> bytes:
        return hmac.new(self._key, post.encode() + b"\0" + head, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, post: str, issued: float) -> str:
        head = bytes([_VERSION]) + int(issued * 1000).to_bytes(6, "big") + secrets.token_bytes(_NONCE_BYTES)
        return base64.urlsafe_b64encode(head + self._mac(post, head)).decode("ascii")

    def read(self, text: str, post: str) -> Token | None:
        """The token if well formed and signed for `post`; None if missing, malformed, forged or another post's."""
        raw = _decode(text)
        if raw is None:
            return None
        head, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(post, head)):
            return None
        return Token(post, int.from_bytes(head[1:7], "big") / 1000, head[7:].hex())

    @staticmethod
    def well_formed(text: str) -> bool:
        """Shaped like a token of ours (whatever key signed it): what a form served by tipbox sends back."""
        return _decode(text) is not None


def _decode(text: str) -> bytes | None:
    """A token's bytes if it has a token's length, encoding and version; its MAC is not checked."""
    if len(text) != _TOKEN_BYTES * 4 // 3 or not text.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _TOKEN_BYTES and raw[0] == _VERSION else None

