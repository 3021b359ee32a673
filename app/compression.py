"""Text responses gzip-compressed for the phones that ask for it (nearly all of them).

Only `text/*` bodies of `MINIMUM_SIZE` bytes or more are compressed (pages, the script): images never leave this
service and a poster PDF's streams are compressed already. Every text response says `Vary: Accept-Encoding`,
compressed or not, so a cache in between never hands a gzip body to a client that did not ask for one.

A response that already has a Content-Encoding passes through untouched: the fresh form and the success page are
kept compressed (`app.pagecache`), and they are most of the traffic. Starlette's GZipMiddleware does the same job
with more generality (streams, excluded types, large bodies in a thread), and was measured in its place (issue 12):
45,686 more CPU instructions per GET of the form through `tipbox serve`, 9.7 % of the whole request, where the
project's rule was to take the library unless it cost over 5 % (docs/benchmarks.md, "One router"). tipbox answers
every request with one body message.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.pagecache import GZIP_LEVEL

MINIMUM_SIZE = 500  # smaller bodies gain less than gzip's own 18 bytes and a header cost
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip member (header and trailer), not a bare zlib stream
_VARY = b"Accept-Encoding"


def accepts_gzip(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the request's Accept-Encoding names gzip (the test Starlette makes, without parsing q-values)."""
    for name, value in headers:
        if name == b"accept-encoding":
            return b"gzip" in value
    return False


def compress(body: bytes) -> bytes:
    return zlib.compress(body, GZIP_LEVEL, _GZIP_WBITS)


class Compression:
    """Compress text bodies for clients that accept gzip; mark every text response as varying by encoding."""

    def __init__(self, app: ASGIApp, minimum_size: int = MINIMUM_SIZE) -> None:
        self.app = app
        self.minimum_size = minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gzip = accepts_gzip(scope["headers"])
        held: Message | None = None  # a text response's start, held until its body shows its size

        async def respond(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and _compressible(message.get("headers", ())):
                held = message
            elif held is not None and message["type"] == "http.response.body":
                start, held = held, None
                await self._answer(start, message, gzip, send)
            else:
                await send(message)

        await self.app(scope, receive, respond)

    async def _answer(self, start: Message, body_message: Message, gzip: bool, send: Send) -> None:
        headers = _with_vary(start.get("headers", ()))
        body: bytes = body_message.get("body", b"")
        # A body in several messages (none of tipbox's responses) goes out as it comes, uncompressed.
        if gzip and len(body) >= self.minimum_size and not body_message.get("more_body", False):
            body = compress(body)
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers += [(b"content-encoding", b"gzip"), (b"content-length", b"%d" % len(body))]
            body_message = {**body_message, "body": body}
        await send({**start, "headers": headers})
        await send(body_message)


def _compressible(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """A text body that carries no Content-Encoding of its own."""
    text = False
    for name, value in headers:
        name = name.lower()
        if name == b"content-encoding":
            return False
        if name == b"content-type":
            text = value.lower().startswith(b"text/")
    return text


def _with_vary(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    result: list[tuple[bytes, bytes]] = []
    varied = False
    for name, value in headers:
        if name.lower() == b"vary":
            varied = True
            if _VARY.lower() not in value.lower():
                value = value + b", " + _VARY
        result.append((name, value))
    if not varied:
        result.append((b"vary", _VARY))
    return result
