"""Pages rendered once and served many times: a fixed page with one slot for a short per-request value.

The fresh form differs between requests only in its token, the success page only in its receipt. Each is rendered
once per (post, language, address) with a placeholder of the value's length in the slot, and kept as the bytes
before and after it, plain and gzip-compressed. A request then costs a join, not a template render or a
compression:

    gzip header | deflate(before), sync-flushed | stored block(value) | deflate(after) | CRC-32, length

The part after the slot is compressed with the part before it and a run of NUL bytes as its preset dictionary,
so its back-references land where they will in the served stream, and never in the slot (no page holds a NUL).
"""

from __future__ import annotations

import re
import secrets
import string
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.responses import Response

_SAFE = re.compile(r"[A-Za-z0-9_\- ]*")  # needs no HTML escaping: a token (base64url) or a receipt code
_WINDOW = 32 * 1024
GZIP_LEVEL = 9  # for every compressed response: app.compression compresses the pages rendered in full with it
# Magic, deflate, no flags, no modification time, maximum compression, OS unknown (as Python's gzip writes it).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"


def placeholder(length: int) -> str:
    """What the slot holds while a page is rendered: random letters, which no page holds by itself."""
    return "".join(secrets.choice(string.ascii_letters) for _ in range(length))


@dataclass(frozen=True, slots=True)
class SlottedPage:
    """A page's bytes around one slot of `length` characters, plain and as gzip members' parts."""

    length: int
    before: bytes
    after: bytes
    gzip_before: bytes  # gzip header and the deflate blocks of `before`, ending on a byte boundary
    gzip_after: bytes  # the deflate blocks of `after`, the last one final
    crc_before: int

    @classmethod
    def render(cls, render: Callable[[str], str], length: int) -> SlottedPage:
        """Render the page once with a placeholder of `length` characters in its only slot."""
        mark = placeholder(length)
        html = render(mark).encode("utf-8")
        if html.count(mark.encode()) != 1 or b"\0" in html:
            raise ValueError("a slotted page must show its slot value exactly once (and hold no NUL byte)")
        before, _, after = html.partition(mark.encode())
        head = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        gzip_before = _GZIP_HEADER + head.compress(before) + head.flush(zlib.Z_SYNC_FLUSH)
        history = (before + b"\0" * length)[-_WINDOW:]
        tail = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=history)
        gzip_after = tail.compress(after) + tail.flush(zlib.Z_FINISH)
        return cls(length, before, after, gzip_before, gzip_after, zlib.crc32(before))

    def fits(self, value: str) -> bool:
        """Whether `value` can fill the slot: its length, and characters that need no escaping."""
        return len(value) == self.length and _SAFE.fullmatch(value) is not None

    def identity(self, value: str) -> bytes:
        return b"".join((self.before, self._checked(value), self.after))

    def gzip(self, value: str) -> bytes:
        """One gzip member: `value` goes in as a stored (uncompressed) deflate block."""
        data = self._checked(value)
        crc = zlib.crc32(self.after, zlib.crc32(data, self.crc_before))
        size = len(self.before) + len(data) + len(self.after)
        stored = struct.pack("<BHH", 0, len(data), len(data) ^ 0xFFFF)  # not final, stored, LEN, NLEN
        return b"".join((self.gzip_before, stored, data, self.gzip_after, struct.pack("<II", crc, size & 0xFFFFFFFF)))

    def _checked(self, value: str) -> bytes:
        if not self.fits(value):
            raise ValueError("the value does not fit the page's slot")
        return value.encode("ascii")


class Prepared(Response):
    """A response whose headers were encoded once, ahead of time: only its Content-Length is added per request."""

    def __init__(self, body: bytes, raw_headers: Sequence[tuple[bytes, bytes]], status_code: int = 200) -> None:
        # Response.__init__ would encode a header mapping again for every request: the point is not to.
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = [*raw_headers, (b"content-length", b"%d" % len(body))]
