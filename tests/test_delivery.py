"""Delivery against a real aiosmtpd server: TLS modes, AUTH, and every failure the sender must hear about."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from app import delivery
from app.main import create_app
from app.settings import Settings
from tests.helpers import post_tip
from tests.mailsink import PASSWORD, USERNAME, Sink, free_port

TIP = {
    "category": "smuggling",
    "what": "Xe máy chở hàng lậu qua đường mòn — Tsheb thauj khoom hla ciam teb",
    "where": "Bản Na Cô Sa",
    "when": "Tối qua, khoảng 9 giờ",
}


@pytest.fixture
def secure_sink(request: pytest.FixtureRequest, server_tls: ssl.SSLContext) -> Iterator[Sink]:
    server = Sink(security=request.param, tls=server_tls, auth=True).start()
    yield server
    server.stop()


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings))


def _assert_delivered_whole(sink: Sink) -> None:
    assert len(sink.handler.messages) == 1
    message = sink.handler.parsed()[0]
    assert message["To"] == "post@example.vn"
    assert "Buôn lậu" in str(message["Subject"])
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    for part in (plain, html):
        content = part.get_content()
        assert TIP["what"] in content
        assert TIP["where"] in content


@pytest.mark.parametrize("secure_sink", ["starttls", "tls"], indirect=True)
def test_tls_and_auth_deliver_the_whole_tip(
    secure_sink: Sink, make_settings: Callable[..., Settings], ca_file: Path
) -> None:
    settings = make_settings(secure_sink, smtp_username=USERNAME, smtp_password=PASSWORD, smtp_ca_file=ca_file)
    with _client(settings) as client:
        page = post_tip(client, **TIP)
    assert page.status_code == 200
    assert "4" in page.text and 'class="receipt"' in page.text
    assert page.headers["cache-control"] == "no-store"
    _assert_delivered_whole(secure_sink)


def test_plain_smtp_delivers(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    with _client(make_settings(sink, smtp_security="none")) as client:
        assert post_tip(client, **TIP).status_code == 200
    _assert_delivered_whole(sink)


def _assert_not_sent_page(page: Any) -> None:
    assert page.status_code == 503
    assert "Chưa gửi được" in page.text  # "not sent yet", in Vietnamese, the post's default language
    assert TIP["what"] in page.text
    assert TIP["where"] in page.text
    assert 'value="smuggling" checked' in page.text
    assert page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("secure_sink", ["starttls"], indirect=True)
def test_wrong_password_gives_the_text_back(
    secure_sink: Sink, make_settings: Callable[..., Settings], ca_file: Path
) -> None:
    settings = make_settings(secure_sink, smtp_username=USERNAME, smtp_password="wrong", smtp_ca_file=ca_file)
    with _client(settings) as client:
        _assert_not_sent_page(post_tip(client, **TIP))
    assert secure_sink.handler.messages == []


@pytest.mark.parametrize("secure_sink", ["starttls", "tls"], indirect=True)
def test_untrusted_certificate_is_refused(secure_sink: Sink, make_settings: Callable[..., Settings]) -> None:
    # No CA file: the trustme certificate is not trusted by the system store, so TLS must fail closed.
    settings = make_settings(secure_sink, smtp_username=USERNAME, smtp_password=PASSWORD)
    with _client(settings) as client:
        _assert_not_sent_page(post_tip(client, **TIP))
    assert secure_sink.handler.messages == []


@pytest.mark.parametrize("reply", ["421 4.3.2 shutting down", "451 4.3.0 try later", "550 5.7.1 rejected"])
def test_refusals_at_data_give_503(sink: Sink, make_settings: Callable[..., Settings], reply: str) -> None:
    sink.handler.reply = reply
    with _client(make_settings(sink, smtp_security="none")) as client:
        _assert_not_sent_page(post_tip(client, **TIP))
    assert sink.handler.messages == []
    # 4xx is transient: one bounded retry; 5xx is final: no retry.
    assert sink.handler.attempts == (2 if reply.startswith("4") else 1)


def test_one_transient_failure_is_retried_and_delivered(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    sink.handler.script = ["451 4.3.0 busy"]
    with _client(make_settings(sink, smtp_security="none")) as client:
        assert post_tip(client, **TIP).status_code == 200
    assert sink.handler.attempts == 2
    assert len(sink.handler.messages) == 1


def test_server_down_gives_503(make_settings: Callable[..., Settings]) -> None:
    # Nothing listens on this port: the connection is refused.
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_security="none")
    with _client(settings) as client:
        _assert_not_sent_page(post_tip(client, **TIP))


def test_server_that_never_answers_gives_503(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    sink.handler.mode = "hang"
    with _client(make_settings(sink, smtp_security="none", smtp_timeout=0.5)) as client:
        _assert_not_sent_page(post_tip(client, **TIP))


def test_connection_dropped_during_data_gives_503(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    sink.handler.mode = "drop"
    with _client(make_settings(sink, smtp_security="none")) as client:
        _assert_not_sent_page(post_tip(client, **TIP))
    assert sink.handler.messages == []


def test_success_pages_equal_accepted_messages(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    """The ledger: over a run of mixed outcomes, every success page matches exactly one accepted message."""
    outcomes = ["accept", "550 5.7.1 no", "accept", "drop", "451 4.3.0 later", "accept", "hang", "accept"]
    successes = 0
    receipts: list[str] = []
    with _client(make_settings(sink, smtp_security="none", smtp_timeout=0.5)) as client:
        for number, outcome in enumerate(outcomes):
            sink.handler.mode = outcome if outcome in ("drop", "hang") else "accept"
            sink.handler.reply = None if outcome in ("accept", "drop", "hang") else outcome
            # Distinct texts: the guard answers the same text twice with the first receipt (a double tap).
            page = post_tip(client, **{**TIP, "what": f"{TIP['what']} #{number}"})
            assert page.status_code in (200, 503)
            if page.status_code == 200:
                successes += 1
                start = page.text.index('id="receipt">') + len('id="receipt">')
                receipts.append(page.text[start : page.text.index("<", start)])
    assert successes == len(sink.handler.messages) == 4
    delivered = [str(message["Subject"]) for message in sink.handler.parsed()]
    assert all(any(code in subject for subject in delivered) for code in receipts)


def test_the_ehlo_name_is_looked_up_once_not_per_tip(
    sink: Sink, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    with _client(make_settings(sink, smtp_security="none")) as client:

        def no_lookup(*args: object) -> str:
            raise AssertionError("a host name lookup while sending a tip")

        monkeypatch.setattr(socket, "getfqdn", no_lookup)  # aiosmtplib's default, in a worker thread per send
        for number in range(2):
            assert post_tip(client, **{**TIP, "what": f"{TIP['what']} #{number}"}).status_code == 200
    assert sink.handler.greetings == [delivery.local_hostname()] * 2
