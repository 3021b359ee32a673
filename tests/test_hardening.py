"""Slow and bloated clients against a real uvicorn server running the hardened protocol (short deadlines)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from starlette.types import ASGIApp

from app import forms, rendering
from app.hardening import HardenedHttpToolsProtocol
from app.main import create_app
from app.settings import Settings
from tests.mailsink import Sink, free_port


class QuickProtocol(HardenedHttpToolsProtocol):
    header_seconds = 0.4


Scenario = Callable[[int], Awaitable[None]]


def run_against(app: ASGIApp, scenario: Scenario, **options: Any) -> None:
    """Serve `app` with the hardened protocol on a free port, run `scenario(port)`, stop the server."""

    async def main() -> None:
        port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, http=QuickProtocol, loop="asyncio", lifespan="off",
            log_config=None, access_log=False, timeout_keep_alive=5, **options,
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


def assert_bilingual_page(answer: bytes, status: int, vietnamese: str, hmong: str) -> None:
    """An answer given before a language is known: a page in Vietnamese and Hmong, dressed like every other page."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert int(headers["content-length"]) == len(body)
    assert headers["content-language"] == "vi, hmn"
    assert headers["x-frame-options"] == "deny" and headers["referrer-policy"] == "no-referrer"
    assert "microphone=()" in headers["permissions-policy"]
    style = re.search(rb"<style>(.*?)</style>", body, re.S)
    assert style is not None
    assert rendering.csp_hash(style.group(1).decode()).lower() in headers["content-security-policy"]
    html = body.decode("utf-8")
    assert '<html lang="vi">' in html and '<div lang="hmn">' in html
    assert vietnamese in html and hmong in html
    assert "Request" not in html and "Invalid" not in html and "Error" not in html  # no English


def test_a_client_trickling_its_headers_is_cut_off(app: ASGIApp) -> None:
    async def scenario(port: int) -> None:
        answer, took = await exchange(port, b"GET / HTTP/1.1\r\nHost: tipbox.test\r\nAccept: te")
        assert answer.startswith(b"HTTP/1.1 408 ") and 0.3 < took < 3
        assert_bilingual_page(answer, 408, "Mạng chậm quá. Hãy thử một lần nữa.", "Kev sib txuas qeeb dhau.")
        silent, took = await exchange(port, b"")
        assert silent.startswith(b"HTTP/1.1 408 ") and took < 3

    run_against(app, scenario)


def test_headers_past_the_cap_are_refused(app: ASGIApp) -> None:
    async def scenario(port: int) -> None:
        padding = b"X-Pad: " + b"a" * 20_000 + b"\r\n"
        answer, _ = await exchange(port, b"GET / HTTP/1.1\r\nHost: tipbox.test\r\n" + padding + b"\r\n")
        assert_bilingual_page(answer, 400, "Không đọc được yêu cầu này.", "Peb nyeem tsis tau qhov koj xa tuaj.")
        junk, _ = await exchange(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")
        assert_bilingual_page(junk, 400, "Không đọc được yêu cầu này.", "Peb nyeem tsis tau qhov koj xa tuaj.")

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
    monkeypatch.setattr(forms, "BODY_WINDOW_SECONDS", 0.5)

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


def test_past_the_concurrency_limit_the_answer_is_a_page(app: ASGIApp) -> None:
    async def scenario(port: int) -> None:
        _, idle = await asyncio.open_connection("127.0.0.1", port)  # one connection open: the limit
        await asyncio.sleep(0.1)
        answer, _ = await exchange(port, b"GET / HTTP/1.1\r\nHost: tipbox.test\r\n\r\n")
        assert_bilingual_page(answer, 503, "quá nhiều người đang dùng hòm thư", "muaj neeg siv ntau dhau")
        idle.close()

    run_against(app, scenario, limit_concurrency=1)


@pytest.mark.parametrize("failure", ["raises", "returns"])
def test_an_app_that_fails_before_answering_gets_a_500_page(failure: str, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        if failure == "raises":
            raise RuntimeError("a bug")

    async def scenario(port: int) -> None:
        answer, _ = await exchange(port, b"GET / HTTP/1.1\r\nHost: tipbox.test\r\n\r\n")
        assert_bilingual_page(answer, 500, "Tin của bạn có thể chưa được gửi", "Tej zaum koj cov xov tseem tsis tau xa")
        assert b"a bug" not in answer

    run_against(broken, scenario)
    # uvicorn still logs what failed, for the operator.
    logged = [str(record.exc_info) + record.getMessage() for record in caplog.records]
    assert any("a bug" in line or "without answering" in line for line in logged)
