"""Invariant 1: nothing identifies the sender — not in any page, log record or email byte."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.guard import SOURCE_KEY
from app.main import create_app
from app.privacy import PrivacyMiddleware
from app.settings import Settings
from tests.helpers import form_fields
from tests.mailsink import Sink

PEER = "203.0.113.77"
IDENTIFYING = {
    "X-Forwarded-For": "198.51.100.23, 10.9.8.7",
    "X-Real-IP": "198.51.100.24",
    "Forwarded": "for=198.51.100.25;proto=https",
    "User-Agent": "Mozilla/5.0 (Linux; Android 9; Redmi-Distinctive-7A) Zalo android/12100728",
    "Cookie": "zalo_session=distinctive-cookie-value",
    "Referer": "https://zalo.me/distinctive-referrer",
}
MARKERS = [PEER, "198.51.100.23", "10.9.8.7", "198.51.100.24", "198.51.100.25", "Redmi-Distinctive-7A",
           "distinctive-cookie-value", "distinctive-referrer", "12100728"]


def test_no_sender_data_in_logs_pages_or_email(
    sink: Sink, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = create_app(make_settings(sink))
    seen: list[str] = []
    with TestClient(app, client=(PEER, 43210), headers=IDENTIFYING) as client:
        for path in ("/", "/p/post", "/p/missing", "/healthz"):
            seen.append(client.get(path).text)
        data = {**form_fields(client), "category": "trafficking", "what": "Có người dụ con gái sang biên giới"}
        sent = client.post("/", data=data)
        assert sent.status_code == 200
        seen.append(sent.text)
        seen.append(str(sent.headers))
        seen.append(client.post("/", data={**data, "what": ""}).text)
    assert len(sink.handler.messages) == 1
    raw_email = sink.handler.messages[0].decode("ascii", "replace")
    parsed = sink.handler.parsed()[0]
    decoded_parts = [part.get_content() for part in parsed.walk() if part.get_content_maintype() == "text"]
    logged = [record.getMessage() for record in caplog.records]
    haystacks = {"pages": "\n".join(seen), "email": raw_email + "\n".join(decoded_parts), "logs": "\n".join(logged)}
    for where, text in haystacks.items():
        for marker in MARKERS:
            assert marker not in text, f"{marker!r} leaked into {where}"
    assert any("delivered" in line for line in logged)  # the log did run at DEBUG


def test_middleware_hands_the_app_no_address_and_only_allowlisted_headers() -> None:
    seen: dict[str, Any] = {}

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"set-cookie", b"a=b"), (b"server", b"x"), (b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    app = PrivacyMiddleware(inner, csp="default-src 'none'")
    client = TestClient(app, client=(PEER, 1))
    response = client.get("/", headers={**IDENTIFYING, "Accept-Language": "hmn", "X-Custom": "z"})
    assert seen["client"] is None
    names = {name for name, _ in seen["headers"]}
    assert names <= {b"host", b"accept", b"accept-language", b"accept-encoding"}
    assert (b"accept-language", b"hmn") in seen["headers"]
    assert "set-cookie" not in response.headers
    assert "server" not in response.headers
    assert response.headers["content-security-policy"] == "default-src 'none'"


def test_only_a_submission_gets_a_source_key() -> None:
    seen: list[tuple[str, Any, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["method"], scope["client"], scope[SOURCE_KEY]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    client = TestClient(PrivacyMiddleware(inner, csp="default-src 'none'"), client=(PEER, 1))
    client.get("/")
    client.head("/")
    client.post("/", data={"what": "x"})
    (get, _, get_key), (head, _, head_key), (post, address, post_key) = seen
    assert (get, get_key, head, head_key) == ("GET", None, "HEAD", None)  # a page view is counted nowhere
    assert post == "POST" and address is None and isinstance(post_key, str) and PEER not in post_key
    assert all(client_address is None for _, client_address, _ in seen)


def test_every_page_carries_strict_security_headers(client: TestClient) -> None:
    for path in ("/", "/p/missing", "/healthz"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
        assert "camera=()" in headers["permissions-policy"]
        assert "set-cookie" not in headers


def test_page_has_no_third_party_resource(client: TestClient) -> None:
    page = client.get("/").text
    for needle in ("http://", "https://", "//fonts", "<script src=\"//"):
        assert needle not in page
