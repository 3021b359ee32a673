"""Delivery against a real aiosmtpd server: TLS modes, AUTH, and every failure the sender must hear about."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from starlette.testclient import TestClient

from app import delivery
from app.guard import TOKEN_FIELD
from app.main import create_app
from app.settings import Settings
from tests import media
from tests.helpers import form_fields, hidden_fields, post_tip
from tests.mailsink import PASSWORD, USERNAME, Sink, free_port
from tests.test_guard import receipt_of, token_of

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


SEND_AGAIN = "Chưa gửi được. Hãy bấm nút Gửi một lần nữa."  # "Not sent yet. Please press Send again."
CANNOT_RECEIVE = "lúc này đồn chưa nhận được tin báo"  # "the post cannot receive tips right now"


@pytest.mark.parametrize("secure_sink", ["starttls"], indirect=True)
def test_wrong_password_gives_the_text_back_without_send_again(
    secure_sink: Sink, make_settings: Callable[..., Settings], ca_file: Path
) -> None:
    # 535: the provider refused the credentials; pressing Send again cannot change that, so it is not suggested.
    settings = make_settings(secure_sink, smtp_username=USERNAME, smtp_password="wrong", smtp_ca_file=ca_file)
    with _client(settings) as client:
        page = post_tip(client, **TIP)
    _assert_not_sent_page(page)
    assert CANNOT_RECEIVE in page.text and SEND_AGAIN not in page.text
    assert secure_sink.handler.messages == []


@pytest.mark.parametrize("secure_sink", ["starttls"], indirect=True)
@pytest.mark.parametrize(
    ("step", "reply"),
    [("starttls_reply", "454 4.7.0 TLS not available due to temporary reason"),
     ("auth_reply", "454 4.7.0 Temporary authentication failure")],
)
def test_a_454_is_for_now_send_again(
    secure_sink: Sink, make_settings: Callable[..., Settings], ca_file: Path, step: str, reply: str
) -> None:
    setattr(secure_sink.handler, step, reply)
    settings = make_settings(secure_sink, smtp_username=USERNAME, smtp_password=PASSWORD, smtp_ca_file=ca_file)
    with _client(settings) as client:
        page = post_tip(client, **TIP)
        _assert_not_sent_page(page)
        assert SEND_AGAIN in page.text and CANNOT_RECEIVE not in page.text
        setattr(secure_sink.handler, step, None)  # the provider is back: the same form, sent again, goes
        again = client.post("/", data={**hidden_fields(page.text), **TIP})
    assert again.status_code == 200 and 'class="receipt"' in again.text
    _assert_delivered_whole(secure_sink)


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


def test_a_server_silent_after_the_message_is_not_asked_twice(
    sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    sink.handler.mode = "hang"
    settings = make_settings(sink, smtp_security="none", smtp_timeout=0.5, smtp_data_timeout=0.5)
    with _client(settings) as client:
        page = post_tip(client, **TIP)
    _assert_may_have_arrived_page(page)
    assert sink.handler.attempts == 1


def test_connection_dropped_after_the_message_is_not_retried(
    sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    sink.handler.mode = "drop"
    with _client(make_settings(sink, smtp_security="none")) as client:
        _assert_may_have_arrived_page(post_tip(client, **TIP))
    assert sink.handler.attempts == 1


def test_connection_dropped_before_the_message_is_retried(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    sink.handler.drop_at_rcpt = 1
    with _client(make_settings(sink, smtp_security="none")) as client:
        assert post_tip(client, **TIP).status_code == 200
    assert len(sink.handler.messages) == 1


def _assert_may_have_arrived_page(page: Any) -> None:
    assert page.status_code == 504
    assert "chưa xác nhận" in page.text and "có thể nhận tin hai lần" in page.text  # may arrive twice, in Vietnamese
    assert TIP["what"] in page.text and 'value="smuggling" checked' in page.text


def test_success_pages_equal_accepted_messages(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    """The ledger: over a run of mixed outcomes, every success page matches exactly one accepted message."""
    outcomes = ["accept", "550 5.7.1 no", "accept", "drop", "451 4.3.0 later", "accept", "hang", "accept"]
    successes = 0
    receipts: list[str] = []
    with _client(make_settings(sink, smtp_security="none", smtp_timeout=0.5, smtp_data_timeout=0.5)) as client:
        for number, outcome in enumerate(outcomes):
            sink.handler.mode = outcome if outcome in ("drop", "hang") else "accept"
            sink.handler.reply = None if outcome in ("accept", "drop", "hang") else outcome
            # Distinct texts: the guard answers the same text twice with the first receipt (a double tap).
            page = post_tip(client, **{**TIP, "what": f"{TIP['what']} #{number}"})
            assert page.status_code in (200, 503, 504)
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


def test_a_slow_answer_to_the_message_is_waited_for_and_never_makes_a_second_copy(
    sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    """The server takes the message and answers 250 two seconds later: longer than a command may take, well within
    the wait for the answer to the message (TIPBOX_SMTP_DATA_TIMEOUT)."""
    sink.handler.delay = 2.0
    settings = make_settings(sink, smtp_security="none", smtp_timeout=0.5, smtp_data_timeout=30)
    with _client(settings) as client:
        page = post_tip(client, **TIP)
    assert page.status_code == 200 and 'id="receipt"' in page.text
    assert sink.handler.attempts == 1 and len(sink.handler.messages) == 1


@pytest.mark.parametrize("answers", [False, True], ids=["answers-off", "answers-on"])
@pytest.mark.parametrize("follow_up", [False, True], ids=["first", "follow-up"])
def test_a_form_sent_again_after_no_answer_makes_the_same_email(
    sink: Sink, make_settings: Callable[..., Settings], tmp_path: Path, follow_up: bool, answers: bool
) -> None:
    """No answer to the message in time: the sender is told it may have arrived, keeps the form, and Send again
    makes an email with the first one's Message-ID and receipt (a mailbox that drops repeated Message-IDs shows
    it once), counted against no limit; with answers on too, whose Message-IDs carry the code's key."""
    sink.handler.delay = 3.0
    on = {"reply_to": "answers@example.vn", "answers_store": f"sqlite:///{tmp_path / 'a.sqlite3'}"} if answers else {}
    settings = make_settings(sink, smtp_security="none", smtp_data_timeout=0.5, post_rate="1/hour", **on)
    tip = {**TIP, "receipt": _first_receipt(settings, sink)} if follow_up else TIP
    first_count = len(sink.handler.messages)
    with _client(settings) as client:
        fields = form_fields(client, "/?lang=hmn")
        page = client.post("/?lang=hmn", data={**fields, **tip})
        assert page.status_code == 504 and "tej zaum lawv yuav tau txais ob zaug" in page.text  # twice, in Hmong
        assert TIP["what"] in page.text and token_of(page) == fields[TOKEN_FIELD]  # the same form, kept
        sink.handler.delay = 0
        again = client.post("/?lang=hmn", data={**hidden_fields(page.text), **tip})
    assert again.status_code == 200 and sink.handler.attempts == first_count + 2
    first, second = sink.handler.parsed()[first_count:]
    assert first["Message-ID"] == second["Message-ID"] and first["X-Tipbox-Receipt"] == second["X-Tipbox-Receipt"]
    assert receipt_of(again) == first["X-Tipbox-Receipt"]
    assert (first["In-Reply-To"] is not None) == follow_up


def _first_receipt(settings: Settings, sink: Sink) -> str:
    """The receipt of a first tip delivered now, for a follow-up to add to."""
    delay, sink.handler.delay = sink.handler.delay, 0
    with _client(settings.model_copy(update={"post_rate": "5/hour"})) as client:
        code = receipt_of(post_tip(client, **TIP))
    sink.handler.delay = delay
    return code


def test_a_form_with_a_voice_note_sent_again_without_it_after_no_answer_keeps_its_receipt(
    sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    """The page cannot keep files, and a recording made on it cannot be chosen again: an unconfirmed tip sent again
    with its text alone goes under the first receipt and Message-ID, not as a second tip with a code of its own."""
    sink.handler.delay = 3.0
    settings = make_settings(sink, smtp_security="none", smtp_data_timeout=0.5)
    with _client(settings) as client:
        fields = form_fields(client)
        voice = [("voice", ("ghi-am.m4a", media.m4a(), "audio/mp4"))]
        page = client.post("/", data={**fields, **TIP}, files=voice)
        assert page.status_code == 504 and token_of(page) == fields[TOKEN_FIELD]
        sink.handler.delay = 0
        again = client.post("/", data={**hidden_fields(page.text), **TIP})
        assert again.status_code == 200
        # Sent once more (a reload of the success page): the same receipt, nothing sent again.
        repeat = client.post("/", data={**hidden_fields(page.text), **TIP})
    assert receipt_of(repeat) == receipt_of(again)
    first, second = sink.handler.parsed()
    assert first["Message-ID"] == second["Message-ID"] and first["X-Tipbox-Receipt"] == second["X-Tipbox-Receipt"]
    assert receipt_of(again) == first["X-Tipbox-Receipt"]
    assert [part.get_filename() for part in first.walk() if part.get_filename()] == ["voice-1.m4a"]
    assert not any(part.get_filename() for part in second.walk())


@pytest.mark.parametrize(
    "case", ["a login where the server offers none", "STARTTLS not offered", "an untrusted certificate on 465"]
)
def test_a_setting_the_server_can_never_meet_is_not_temporary(case: str, ca_file: Path) -> None:
    """These would tell every resident "not sent yet, press Send again" for ever, and `tipbox check` "temporary"."""
    if case == "an untrusted certificate on 465":
        stranger = trustme.CA()  # not the CA in TIPBOX_SMTP_CA_FILE
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        stranger.issue_cert("127.0.0.1", "sink.test").configure_cert(context)
        server = Sink("tls", tls=context).start()
        settings = delivery.SmtpServer("127.0.0.1", server.port, "tls", ca_file=ca_file, timeout=5)
    else:
        server = Sink("none").start()
        login = {"username": USERNAME, "password": PASSWORD} if case.startswith("a login") else {}
        security: Any = "none" if login else "starttls"
        settings = delivery.SmtpServer("127.0.0.1", server.port, security, timeout=5, **login)
    try:
        with pytest.raises(delivery.DeliveryError) as refused:
            asyncio.run(delivery.Mailer(settings).probe())
    finally:
        server.stop()
    assert not refused.value.transient, refused.value.reason


def test_a_tls_handshake_cut_short_is_temporary() -> None:
    """The network or a busy provider ended it: the next try may pass (and start-up must not stop for good)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def cut() -> None:
        connection, _ = listener.accept()
        connection.recv(16)
        connection.close()

    thread = threading.Thread(target=cut, daemon=True)
    thread.start()
    try:
        with pytest.raises(delivery.DeliveryError) as failed:
            asyncio.run(delivery.Mailer(delivery.SmtpServer("127.0.0.1", port, "tls", timeout=5)).probe())
    finally:
        listener.close()
    assert failed.value.transient, failed.value.reason
