"""Slow and bloated clients against a real uvicorn server running the hardened protocol (short deadlines)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import uvicorn
from starlette.types import ASGIApp

from app import forms
from app.hardening import HardenedHttpToolsProtocol
from app.main import create_app
from app.settings import Settings
from tests.mailsink import Sink, free_port


class QuickProtocol(HardenedHttpToolsProtocol):
    header_seconds = 0.4


Scenario = Callable[[int], Awaitable[None]]


def run_against(app: ASGIApp, scenario: Scenario) -> None:
    """Serve `app` with the hardened protocol on a free port, run `scenario(port)`, stop the server."""

    async def main() -> None:
        port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, http=QuickProtocol, loop="asyncio", lifespan="off",
            log_config=None, access_log=False, timeout_keep_alive=5,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
                await asyncio.sleep(0.01)
            await asyncio.wait_for(scenario(port), timeout=10)
        finally:
            server.should_exit = True
            await task

    asyncio.run(main())


async def exchange(port: int, data: bytes, *, pause_after: float = 0.0) -> tuple[bytes, float]:
    """Send `data`, keep the connection open, read until the server closes it; the answer and how long it took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    writer.write(data)
    await writer.drain()
    if pause_after:
        await asyncio.sleep(pause_after)
    answer = await reader.read(-1)
    writer.close()
    await writer.wait_closed()
    return answer, time.monotonic() - start


@pytest.fixture
def app(sink: Sink, make_settings: Callable[..., Settings]) -> ASGIApp:
    return create_app(make_settings(sink))


def test_a_client_trickling_its_headers_is_cut_off(app: ASGIApp) -> None:
    async def scenario(port: int) -> None:
        answer, took = await exchange(port, b"GET / HTTP/1.1\r\nHost: tipbox.test\r\nAccept: te")
        assert answer.startswith(b"HTTP/1.1 408 ") and 0.3 < took < 3
        silent, took = await exchange(port, b"")
        assert silent.startswith(b"HTTP/1.1 408 ") and took < 3

    run_against(app, scenario)


def test_headers_past_the_cap_are_refused(app: ASGIApp) -> None:
    async def scenario(port: int) -> None:
        padding = b"X-Pad: " + b"a" * 20_000 + b"\r\n"
        answer, _ = await exchange(port, b"GET / HTTP/1.1\r\nHost: tipbox.test\r\n" + padding + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")

    run_against(app, scenario)


def test_kept_alive_requests_still_work_and_unread_bodies_are_not_drained(app: ASGIApp) -> None:
    async def scenario(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: tipbox.test\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\nok")
            assert head.startswith(b"HTTP/1.1 200 ")
            await asyncio.sleep(0.5)  # longer than the header deadline: it only runs while a request arrives
        writer.close()
        await writer.wait_closed()
        # A body the app never reads: the answer comes, then the connection closes instead of waiting for it.
        answer, took = await exchange(
            port, b"POST /healthz HTTP/1.1\r\nHost: tipbox.test\r\nContent-Length: 100000\r\n\r\nxx", pause_after=0.1
        )
        assert answer.startswith(b"HTTP/1.1 405 ") and took < 3

    run_against(app, scenario)


def test_a_form_body_that_trickles_gets_408_in_the_senders_language(
    app: ASGIApp, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forms, "BODY_GRACE_SECONDS", 0.5)

    async def scenario(port: int) -> None:
        head = (
            b"POST /?lang=vi HTTP/1.1\r\nHost: tipbox.test\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 5000\r\n\r\ncategory=drugs&what="
        )
        answer, took = await exchange(port, head)
        assert answer.startswith(b"HTTP/1.1 408 ") and 0.4 < took < 3
        assert "Mạng chậm quá" in answer.decode("utf-8", "replace")

    run_against(app, scenario)
    assert sink.handler.messages == []

