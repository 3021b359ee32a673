"""The officer's email: encoded correctly, escaped, and shaped only by configuration."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from starlette.testclient import TestClient

from app import receipts
from app.mail import Composer, serialize
from app.settings import Post
from app.tips import Tip
from tests.conftest import post_tip
from tests.mailsink import Sink

POST = Post("ncs", "Đồn Biên phòng Na Cô Sa", "nacosa@example.vn", ("vi", "hmn"))


def _tip(**overrides: str) -> Tip:
    values = {"category": "drugs", "what": "Bán ma túy ở chợ phiên", "where": "Chợ", "when": "Sáng nay", "contact": ""}
    values.update(overrides)
    return Tip(
        post=POST, language="hmn", received_at=datetime(2026, 11, 29, 23, 30, tzinfo=UTC),
        receipt="4821 0937 5512 9634", **values,
    )


def test_headers_come_from_configuration() -> None:
    message = Composer("tipbox@example.vn", b"k" * 32).compose(_tip())
    assert message["From"] == "tipbox@example.vn"
    assert message["To"] == "nacosa@example.vn"
    assert str(message["Subject"]).startswith("[Tin báo]")
    assert "Ma túy" in str(message["Subject"]) and "4821 0937 5512 9634" in str(message["Subject"])
    # Received time is shown in Vietnam time (UTC+7): 23:30 UTC is 06:30 the next morning.
    assert message["Date"].endswith("+0700")
    assert message["Message-ID"] == receipts.thread_id("4821 0937 5512 9634", b"k" * 32, "example.vn")


def test_subject_is_encoded_and_decodes_back() -> None:
    raw = serialize(Composer("tipbox@example.vn", b"k" * 32).compose(_tip()))
    subject_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject:"))
    assert subject_line.isascii()  # RFC 2047 encoded words, not raw UTF-8
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert "Đồn Biên phòng Na Cô Sa" in str(parsed["Subject"])


def test_body_has_time_language_and_privacy_line() -> None:
    message = Composer("tipbox@example.vn", b"k" * 32).compose(_tip())
    plain = message.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert "30/11/2026 06:30" in text
    assert "Hmoob (hmn)" in text
    assert "không ghi lại địa chỉ IP" in text


def test_html_part_escapes_markup(client: TestClient, sink: Sink) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    assert post_tip(client, category="other", what=hostile, where="<b>bold</b>").status_code == 200
    message = sink.handler.parsed()[0]
    html = message.get_body(("html",))
    plain = message.get_body(("plain",))
    assert html is not None and plain is not None
    assert "<script>" not in html.get_content()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html.get_content()
    assert "<b>bold</b>" not in html.get_content()
    assert hostile in plain.get_content()  # plain text shows exactly what was typed


def test_crlf_in_any_field_adds_no_header_and_no_recipient(client: TestClient, sink: Sink) -> None:
    injected = "x\r\nBcc: attacker@evil.example\r\nSubject: hijacked\r\n\r\nbody"
    fields = {name: injected for name in ("what", "where", "when", "contact")}
    assert post_tip(client, category="theft", **fields).status_code == 200
    assert sink.handler.envelopes == [("tipbox@example.vn", ["post@example.vn"])]
    message = sink.handler.parsed()[0]
    assert message["Bcc"] is None
    assert message.get_all("Subject") is not None and len(message.get_all("Subject") or []) == 1
    assert "hijacked" not in str(message["Subject"])
    raw = sink.handler.messages[0]
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert b"evil.example" not in header_block


def test_contact_stays_in_the_body(client: TestClient, sink: Sink) -> None:
    assert post_tip(client, category="weapons", what="Súng tự chế", contact="Zalo 0912 345 678").status_code == 200
    message = sink.handler.parsed()[0]
    assert message["Reply-To"] is None
    header_block = sink.handler.messages[0].split(b"\r\n\r\n", 1)[0]
    assert b"0912" not in header_block
    plain = message.get_body(("plain",))
    assert plain is not None and "Zalo 0912 345 678" in plain.get_content()


def test_files_are_listed_with_their_type_and_size_and_photos_shown_in_place() -> None:
    from app.attachments import Attachment

    photo = Attachment("photo", 1, "photo-1.jpg", "image/jpeg", b"\xff\xd8\xff" + bytes(1_234_000))
    voice = Attachment("voice", 1, "voice-1.amr", "audio/amr", b"#!AMR\n" + bytes(349_500))
    composer = Composer("tipbox@example.vn", b"k" * 32)
    for files, shape in (
        ([photo], ["multipart/alternative", "text/plain", "multipart/related", "text/html", "image/jpeg"]),
        ([voice], ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "audio/amr"]),
    ):
        message = composer.compose(_tip(), files)
        assert [part.get_content_type() for part in message.walk()] == shape
        parsed = email.message_from_bytes(serialize(message), policy=email.policy.default)
        assert [part.get_content_type() for part in parsed.walk()] == shape
    plain = composer.compose(_tip(), [photo, voice]).get_body(("plain",))
    assert plain is not None
    assert "Tệp đính kèm (2):\n1. Ảnh JPEG, 1,2 MB\n2. Ghi âm AMR, 350 KB\n" in plain.get_content()
