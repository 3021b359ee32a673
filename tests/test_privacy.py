"""Invariant 1: nothing identifies the sender — not in any page, log record or email byte."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from app import rendering
from app.guard import SOURCE_KEY
from app.main import create_app
from app.privacy import PrivacyMiddleware, SourceKeys, TrustedProxies
from app.settings import Settings
from tests.helpers import form_fields, post_tip
from tests.mailsink import Sink
from tests.served import serve, smtp_settings

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


def test_only_a_form_page_may_use_the_microphone_and_only_from_its_own_origin(client: TestClient) -> None:
    """The recorder on the form needs the microphone; no other page, and no frame or other site, gets it."""
    forms = [client.get(path) for path in ("/", "/p/post", "/more", "/?lang=hmn")]
    forms.append(client.get("/", headers={"Accept-Encoding": "identity"}))  # the kept page, plain
    forms.append(post_tip(client, "/", category="drugs", what=""))  # given back with a problem
    for response in forms:
        assert response.headers["permissions-policy"] == (
            "camera=(), microphone=(self), geolocation=(), interest-cohort=()"
        )
        assert "x-tipbox-form-page" not in response.headers  # the mark never leaves the privacy layer
    others = [
        post_tip(client, "/", category="drugs", what="Có người bán ma túy ở chợ"),  # the success page
        client.get("/p/missing"), client.get("/calendar"), client.get("/healthz"), client.get(rendering.script_url()),
    ]
    for response in others:
        assert response.headers["permissions-policy"] == "camera=(), microphone=(), geolocation=(), interest-cohort=()"
        assert "x-tipbox-form-page" not in response.headers


def test_a_page_may_play_back_a_recording_from_memory_only(client: TestClient) -> None:
    csp = client.get("/").headers["content-security-policy"]
    assert "media-src blob:;" in csp and "'self'" not in csp.split("media-src", 1)[1].split(";", 1)[0]


def test_page_has_no_third_party_resource(client: TestClient) -> None:
    page = client.get("/").text
    for needle in ("http://", "https://", "//fonts", "<script src=\"//"):
        assert needle not in page


@pytest.mark.e2e
def test_an_https_public_address_makes_every_answer_demand_https(sink: Sink, tmp_path: Path) -> None:
    """Behind a TLS proxy at an https:// address, every answer (pages, errors, health) carries HSTS; a development
    run on plain http carries none (a browser ignores it over http, and it would pin a LAN address to https)."""
    settings = smtp_settings(sink, TIPBOX_PUBLIC_URL="https://tip.example.vn")
    with serve(tmp_path / "https", settings) as served, httpx2.Client(base_url=served.url) as client:
        answers = [client.get("/"), client.get("/p/missing"), client.get("/healthz"), client.post("/", content=b"x")]
        assert [answer.status_code for answer in answers] == [200, 404, 200, 415]
        for answer in answers:
            assert answer.headers["strict-transport-security"] == "max-age=31536000"
        # The HTTP layer's own page for bytes that are not HTTP, answered before the app: the same header.
        with socket.create_connection((served.host, served.port), timeout=5) as connection:
            connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            raw = b"".join(iter(lambda: connection.recv(65536), b""))
        head = raw.partition(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 400 ") and b"\r\nstrict-transport-security: max-age=31536000" in head
    with serve(tmp_path / "dev", {"TIPBOX_PUBLIC_URL": "http://192.168.1.20:8000"}) as served:
        assert "strict-transport-security" not in httpx2.get(served.url + "/").headers


def _keys_seen(trusted: TrustedProxies, requests: list[tuple[str, dict[str, str]]]) -> list[Any]:
    """The source key the app got for each POST (peer address, headers), all under one hour's key."""
    seen: list[tuple[Any, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope[SOURCE_KEY], scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = PrivacyMiddleware(inner, csp="default-src 'none'", sources=SourceKeys(lambda: 1000.0), trusted=trusted)
    for peer, headers in requests:
        TestClient(app, client=(peer, 1)).post("/", headers=headers, data={"what": "x"})
    for _, headers in seen:  # the forwarding headers never reach the app
        assert {name for name, _ in headers}.isdisjoint({b"x-forwarded-for", b"forwarded", b"x-real-ip"})
    return [key for key, _ in seen]


def test_behind_a_trusted_proxy_the_forwarded_client_is_the_source() -> None:
    proxy = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
    direct_a, direct_b, via_a, via_b, via_a_again, chain, rfc7239, v6 = _keys_seen(proxy, [
        ("198.51.100.7", {}),
        ("198.51.100.8", {}),
        ("127.0.0.1", {"X-Forwarded-For": "198.51.100.7"}),
        ("127.0.0.1", {"X-Forwarded-For": "198.51.100.8"}),
        # What the phone wrote on the left is not believed: the right-most hop that is not a proxy is.
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.1, 198.51.100.7"}),
        ("10.0.0.1", {"X-Forwarded-For": "203.0.113.1, 198.51.100.8, 10.0.0.5"}),
        ("127.0.0.1", {"Forwarded": 'for=203.0.113.1, for="198.51.100.7:4711";proto=https'}),
        ("127.0.0.1", {"Forwarded": 'for="[2001:db8:cafe::17]:4711"'}),
    ])
    assert direct_a != direct_b
    assert via_a == direct_a and via_b == direct_b and via_a_again == direct_a
    assert chain == direct_b and rfc7239 == direct_a
    assert v6 not in (direct_a, direct_b, None)


def test_an_untrusted_peer_is_its_own_source_whatever_it_forwards() -> None:
    keys = _keys_seen(TrustedProxies(["127.0.0.1"]), [
        ("198.51.100.7", {}),
        ("198.51.100.7", {"X-Forwarded-For": "203.0.113.9"}),
        ("198.51.100.7", {"Forwarded": "for=203.0.113.10"}),
    ])
    assert len(set(keys)) == 1
    # With no trusted proxy at all (the default), the proxy's own address is every sender's source.
    nobody = _keys_seen(TrustedProxies([]), [
        ("127.0.0.1", {"X-Forwarded-For": "198.51.100.7"}), ("127.0.0.1", {"X-Forwarded-For": "198.51.100.8"}),
    ])
    assert nobody[0] == nobody[1]
