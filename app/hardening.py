"""Slow and bloated clients, cut off in the HTTP layer before the app sees them (docs/abuse.md, "The server").

uvicorn closes idle keep-alive connections but has no deadline for a client that trickles its request line and
headers (slowloris), and httptools accepts headers of any size. This protocol adds both, and drops a connection
whose body is still arriving after its response was sent (a 408/413 answer, a GET with a body) instead of
draining it. A slow body on a form is the app's to answer: `app.forms` gives it a read deadline and a 408 page.
The memory that request bodies take together is bounded by `app.budget`, as `app.forms` reads them.

The answers this layer gives itself (a request that cannot be parsed, headers too slow, too many connections, an
app that failed before it answered) come before any language is known: each is a short page in Vietnamese and
Hmong (`app.pages.bilingual`), with the look and the security headers of every other page.
"""

from __future__ import annotations

import asyncio
import logging
from functools import cache
from http import HTTPStatus
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from app import pages, privacy, rendering

logger = logging.getLogger(__name__)

HEADER_SECONDS = 10.0
MAX_HEADER_BYTES = 16 * 1024


@cache  # one per status (400, 408, 500, 503) and HSTS
def answer_headers(status: int, hsts: bool = False) -> list[tuple[bytes, bytes]]:
    """The headers of the page for `status`, the security headers included (this layer is outside app.privacy,
    so it adds them as that layer would: HSTS too when the service is served over https)."""
    body = bilingual_body(status)
    csp = privacy.content_security_policy([rendering.csp_hash(rendering.stylesheet())])
    return [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        (b"content-language", ", ".join(pages.BEFORE_LANGUAGE).encode()),
        (b"cache-control", b"no-store"),
        (b"connection", b"close"),
        *privacy.security_headers(csp),
        *([(b"strict-transport-security", privacy.HSTS)] if hsts else []),
    ]


@cache
def bilingual_body(status: int) -> bytes:
    return pages.bilingual(status).encode("utf-8")


@cache
def raw_answer(status: int, hsts: bool = False) -> bytes:
    """The whole HTTP response for `status`, written straight to the connection."""
    phrase = HTTPStatus(status).phrase.encode()
    head = b"".join(name + b": " + value + b"\r\n" for name, value in answer_headers(status, hsts))
    return b"HTTP/1.1 %d %s\r\n%s\r\n%s" % (status, phrase, head, bilingual_body(status))


async def _answer(status: int, send: Send, hsts: bool) -> None:
    await send({"type": "http.response.start", "status": status, "headers": answer_headers(status, hsts)})
    await send({"type": "http.response.body", "body": bilingual_body(status)})


def _overloaded(hsts: bool) -> ASGIApp:
    """uvicorn's answer past --limit-concurrency, as a page."""

    async def run(scope: Scope, receive: Receive, send: Send) -> None:
        await _answer(503, send, hsts)

    return run


def _answered(app: ASGIApp, cycle: RequestResponseCycle, hsts: bool) -> ASGIApp:
    """`app`, with a 500 page where it fails (or returns) before it answered; uvicorn still logs the failure."""

    async def run(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except Exception:
            if not cycle.response_started and not cycle.disconnected:
                await _answer(500, send, hsts)
            raise
        if not cycle.response_started and not cycle.disconnected:
            logger.error("the app returned without answering")
            await _answer(500, send, hsts)

    return run


class HardenedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline, a header size cap, no draining of unread bodies, and
    its own answers as pages in Vietnamese and Hmong."""

    header_seconds = HEADER_SECONDS
    max_header_bytes = MAX_HEADER_BYTES
    hsts = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._header_timer is None:  # the next request on a kept-alive connection
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # `msg` is uvicorn's English reason ("Invalid HTTP request received."); it is logged, not shown.
        self.transport.write(raw_answer(400, self.hsts))
        self.transport.close()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # Every request starts here, pipelined ones too; uvicorn hands over its own 503 app past the concurrency limit.
        wrapped: Any = _overloaded(self.hsts) if app is service_unavailable else _answered(app, cycle, self.hsts)
        super()._start_asgi_task(cycle, wrapped)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            self.transport.close()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            # httptools turns this into a parser error; uvicorn answers 400 and closes.
            raise ValueError("request line and headers too large")

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(raw_answer(408, self.hsts))
            self.transport.close()


def protocol(*, hsts: bool) -> type[HardenedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http`: its own pages with HSTS or without (`Settings.hsts`)."""

    class Protocol(HardenedHttpToolsProtocol):
        pass

    Protocol.hsts = hsts
    return Protocol
