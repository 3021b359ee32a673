"""The officer's email: encoded correctly, escaped, and shaped only by configuration."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import jinja2
import pytest
from starlette.testclient import TestClient

from app import i18n, receipts, rendering, tips
from app.categories import RECEIPT_TAGS
from app.mail import Attachment, Composer, Tip, as_bytes, email_templates
from app.main import create_app
from app.settings import Post, Settings
from tests.helpers import post_tip
from tests.mailsink import Sink
from tests.reference import as_message, parse, serialize
from tests.test_mime import assert_wire_form

POST = Post("ncs", "Đồn Biên phòng Na Cô Sa", "nacosa@example.vn", ("vi", "hmn"))


def _tip(**overrides: str) -> Tip:
    values = {"category": "drugs", "what": "Bán ma túy ở chợ phiên", "where": "Chợ", "when": "Sáng nay", "contact": ""}
    values.update(overrides)
    return Tip(
        post=POST, language="hmn", received_at=datetime(2026, 11, 29, 23, 30, tzinfo=UTC),
        receipt="4821 0937 5512 9634", **values,
    )


def _composed(tip: Tip, files: list[Attachment] | None = None) -> EmailMessage:
    """The email for `tip` as it goes over SMTP, read back as a mail client reads it."""
    return parse(Composer("tipbox@example.vn", b"k" * 32).compose(tip, files or []).data)


def test_headers_come_from_configuration() -> None:
    message = _composed(_tip())
    assert message["From"] == "tipbox@example.vn"
    assert message["To"] == "nacosa@example.vn"
    assert str(message["Subject"]).startswith("[Tin báo]")
    assert "Ma túy" in str(message["Subject"]) and "4821 0937 5512 9634" in str(message["Subject"])
    # Received time is shown in Vietnam time (UTC+7): 23:30 UTC is 06:30 the next morning.
    assert message["Date"].endswith("+0700")
    assert message["Message-ID"] == receipts.thread_id("4821 0937 5512 9634", b"k" * 32, "example.vn")


def test_subject_is_encoded_and_decodes_back() -> None:
    raw = Composer("tipbox@example.vn", b"k" * 32).compose(_tip()).data
    subject_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject:"))
    assert subject_line.isascii()  # RFC 2047 encoded words, not raw UTF-8
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert "Đồn Biên phòng Na Cô Sa" in str(parsed["Subject"])


def test_body_has_time_language_and_privacy_line() -> None:
    message = _composed(_tip())
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
    photo = Attachment("photo", 1, "photo-1.jpg", "image/jpeg", b"\xff\xd8\xff" + bytes(1_234_000))
    voice = Attachment("voice", 1, "voice-1.amr", "audio/amr", b"#!AMR\n" + bytes(349_500))
    for files, shape in (
        ([photo], ["multipart/alternative", "text/plain", "multipart/related", "text/html", "image/jpeg"]),
        ([voice], ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "audio/amr"]),
    ):
        assert [part.get_content_type() for part in _composed(_tip(), files).walk()] == shape
    plain = _composed(_tip(), [photo, voice]).get_body(("plain",))
    assert plain is not None
    listed = "Tệp đính kèm (2):\n1. Ảnh JPEG, 1,2 MB\n2. Ghi âm AMR, 350 KB\n"
    assert listed in plain.get_content().replace("\r\n", "\n")


# -- the wire form (written by app/mime.py) against the reference (tests/reference.py, the `email` package) --

HOSTILE = "x\r\nBcc: attacker@evil.example\r\nSubject: hijacked\r\nTo: b@evil.example\r\n\r\nbody"
CONTROLS = "nul\x00 vt\x0b ff\x0c esc\x1b del\x7f nel\x85 ls\u2028 ps\u2029 lone\rCR CRCRLF\r\r\n tab\t end"
HMONG = "Kuv pom ib tug neeg muag yeeb tshuaj ntawm lub khw.\nNws hnav lub tsho dub, tuaj txhua hnub Sunday."
LOOKALIKES = "--=_0123456789abcdef01234567\n--=_--\n=?utf-8?b?SGk=?=\n.\n..\nFrom here\n=3D =20\nend  \n"
LONG_POST = Post(
    "namo", "Đồn Biên phòng Cửa khẩu Quốc tế Na Mèo, Bộ Chỉ huy Bộ đội Biên phòng tỉnh Thanh Hóa " * 3,
    "namo@bienphong.example.vn", ("vi",),
)  # fmt: skip
WIRE_COMPOSER = Composer("tipbox@example.vn", b"k" * 32)
VOICES = {"m4a": "audio/mp4", "3gp": "audio/3gpp", "amr": "audio/amr", "mp3": "audio/mpeg", "ogg": "audio/ogg",
          "webm": "audio/webm"}  # fmt: skip


def _files(photos: int, voices: tuple[str, ...] = ()) -> list[Attachment]:
    # Every byte value, sizes that do not fill the last base64 line, and the boundary's "=_" in the data.
    files = [
        Attachment("photo", n, f"photo-{n}.jpg", "image/jpeg", b"\xff\xd8\xff=_" + bytes(range(256)) * (40 * n) + b"\n")
        for n in range(1, photos + 1)
    ]
    return files + [
        Attachment("voice", n, f"voice-{n}.{ext}", VOICES[ext], b"--=_\r\n" * (300 * n) + bytes([n]))
        for n, ext in enumerate(voices, start=1)
    ]


def _code(tag: str = "drugs") -> str:
    return receipts.new_code(RECEIPT_TAGS[tag], b"k" * 32)


def _cleaned(**typed: str) -> Tip:
    """A tip as app/relay.py makes it from what was typed (cleaned by app/tips.py)."""
    values = tips.read_fields({"category": "other", **typed})
    return tips.make_tip(values, POST, "vi", datetime(2026, 11, 29, 23, 30, tzinfo=UTC), _code("other"))


WIRE_CASES: dict[str, Callable[[], tuple[Tip, list[Attachment]]]] = {
    "vietnamese": lambda: (dataclasses.replace(_tip(), language="vi"), []),
    "hmong": lambda: (_tip(what=HMONG, where="Khw Nas Kauj Xab", when="Hnub no"), []),
    "long lines": lambda: (
        _tip(what="x" * 5000 + "\n" + "Bán ma túy ở chợ " * 300, where="ồ" * 300, when=" " * 80), []
    ),
    "CR, LF and control characters in every field, as typed": lambda: (
        _tip(what=HOSTILE + CONTROLS, where=HOSTILE + CONTROLS, when=HOSTILE, contact=CONTROLS + HOSTILE), []
    ),
    "CR, LF and control characters in every field, cleaned": lambda: (
        _cleaned(what=HOSTILE + CONTROLS, where=HOSTILE + CONTROLS, when=HOSTILE, contact=CONTROLS), []
    ),
    "HTML in the fields": lambda: (
        _tip(what='<script>alert("x")</script>&amp;', where="<b>bold</b>", contact='<a href="http://x.example">Z</a>'),
        [],
    ),
    "boundary and encoded-word look-alikes": lambda: (_tip(what=LOOKALIKES, where="=?utf-8?q?x?=", when="--"), []),
    "a post name long enough to fold": lambda: (dataclasses.replace(_tip(), post=LONG_POST), []),
    "a follow-up": lambda: (_tip(category="theft", follow_up_to="4821 0937 5512 9634"), []),
    "a follow-up to a code from this key": lambda: (_follow_up(_code("weapons")), []),
    "one photo": lambda: (_tip(), _files(1)),
    "one voice note": lambda: (_tip(), _files(0, ("m4a",))),
    "photos and every kind of voice note": lambda: (_tip(), _files(3, tuple(VOICES))),
    "a follow-up with files on a long post name, as typed": lambda: (
        dataclasses.replace(_follow_up(_code("border"), what=HOSTILE, contact=CONTROLS), post=LONG_POST),
        _files(2, ("amr", "ogg")),
    ),
}


def _follow_up(code: str, **overrides: str) -> Tip:
    return dataclasses.replace(_tip(**overrides), receipt=code, follow_up_to=code)


def _read(raw: bytes) -> tuple[list[tuple[str, str]], list[tuple[object, ...]]]:
    """What an officer's client reads: the headers (decoded), and each part's type, parameters (not the boundary),
    disposition, name, Content-ID, encoding, header names and decoded content."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    headers = [(name, str(value)) for name, value in message.items() if name not in ("MIME-Version", "Content-Type")]
    parts: list[tuple[object, ...]] = []
    for part in message.walk():
        assert not part.defects, part.defects
        params = [(key, value) for key, value in part.get_params() or [] if key != "boundary"]
        # The `email` package also writes a MIME-Version into parts it made multipart; it means nothing there.
        names = sorted(name for name in part if name != "MIME-Version")
        content = None if part.is_multipart() else part.get_content()
        parts.append((
            part.get_content_type(), params, part.get_content_disposition(), part.get_filename(), part["Content-ID"],
            part["Content-Transfer-Encoding"], names, content,
        ))  # fmt: skip
    return headers, parts


def _crlf(text: str) -> str:
    """A text as a text part carries it: line breaks CRLF, one at the end (as the `email` package writes it)."""
    return (b"\r\n".join(text.encode().splitlines()) + b"\r\n").decode()


@pytest.mark.parametrize("case", WIRE_CASES)
def test_the_wire_form_reads_back_as_the_reference_message(case: str) -> None:
    tip, files = WIRE_CASES[case]()
    draft = WIRE_COMPOSER.draft(tip, files)
    wire = as_bytes(draft)
    assert_wire_form(wire)
    reference = serialize(as_message(draft))
    assert _read(wire) == _read(reference)
    # And right, not only the same: every header as drafted, the texts as rendered, the files byte for byte.
    headers, parts = _read(wire)
    assert headers == list(draft.headers)
    contents = [part[-1] for part in parts if part[-1] is not None]
    assert contents == [_crlf(draft.plain), _crlf(draft.html)] + [
        file.data for file, cid in draft.files if cid is not None
    ] + [file.data for file, cid in draft.files if cid is None]  # fmt: skip


def test_hostile_fields_add_no_header_and_no_recipient_to_the_wire_form() -> None:
    hostile = {name: HOSTILE + CONTROLS for name in ("what", "where", "when", "contact")}
    for tip in (_tip(**hostile), _cleaned(**hostile)):
        wire = WIRE_COMPOSER.compose(tip, _files(1, ("mp3",)))
        assert (wire.sender, wire.recipients) == ("tipbox@example.vn", ("nacosa@example.vn",))
        head = wire.data.split(b"\r\n\r\n", 1)[0]
        assert b"evil.example" not in head and b"hijacked" not in head
        headers, _ = _read(wire.data)
        assert [name for name, _ in headers] == [
            "From", "To", "Date", "Subject", "Message-ID", "X-Tipbox-Kind", "X-Tipbox-Receipt", "X-Tipbox-Category",
            "X-Tipbox-Post", "X-Tipbox-Language", "Auto-Submitted",
        ]  # fmt: skip


def test_compose_is_the_draft_in_its_wire_form_with_its_envelope() -> None:
    tip = _tip()  # no files and a first report: nothing random in it but the boundaries
    wire = WIRE_COMPOSER.compose(tip)
    assert (wire.sender, wire.recipients) == ("tipbox@example.vn", ("nacosa@example.vn",))
    assert _read(wire.data) == _read(serialize(as_message(WIRE_COMPOSER.draft(tip))))
    assert wire.data.startswith(b"From: tipbox@example.vn\r\nTo: nacosa@example.vn\r\n")


@pytest.mark.parametrize("override", [False, True])
def test_the_email_templates_render_as_the_pages_environment_renders_them(override: bool, tmp_path: Path) -> None:
    locales = None
    if override:  # an operator's catalog, with what autoescaping and `%` formatting would each change
        locales = tmp_path
        (tmp_path / "vi.po").write_text(
            'msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n\n'
            'msgid "Category"\nmsgstr "Loại <b>việc</b> & \'nhóm\' 100%%"\n',
            encoding="utf-8",
        )
    env = rendering.environment(i18n.OFFICER_LANGUAGE, locales)
    photo = {"kind": "Ảnh JPEG", "size": "1,2 MB", "cid": "photo-1.jpg.0123@example.vn"}
    voice = {"kind": "Ghi âm M4A", "size": "300 KB", "cid": None}
    for tip, follow_up, code_possible, files in (
        (_tip(), False, True, []),
        (_tip(what=HOSTILE + LOOKALIKES, where="<b>&amp;</b>", contact="100% 'x' \"y\" %(name)s"), False, True, []),
        (_follow_up("4821 0937 5512 9634", category="theft"), True, False, [photo, voice]),
        (_follow_up("4821 0937 5512 9634"), True, True, [voice]),
    ):
        context = {
            "tip": tip, "category": "Trộm cắp", "report_category": "Ma túy", "follow_up": follow_up,
            "code_possible": code_possible, "received": "30/11/2026 06:30", "sender_language": "Hmoob (hmn)",
            "attachments": files,
        }  # fmt: skip
        plain, html = email_templates(locales)
        assert plain.render(context) == env.get_template("email/tip.txt").render(context)
        assert html.render(context) == env.get_template("email/tip.html").render(context)
        assert not override or "<b>việc</b> & 'nhóm' 100%" in html.render(context)


def test_a_post_on_an_internationalised_domain_gets_its_tips(
    sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    with TestClient(create_app(make_settings(sink, mailbox="post@hòm.vn"))) as client:
        assert post_tip(client, category="drugs", what="Bán ma túy").status_code == 200
    assert sink.handler.envelopes == [("tipbox@example.vn", ["post@xn--hm-2ja.vn"])]
    assert sink.handler.parsed()[0]["To"] == "post@xn--hm-2ja.vn"


def test_a_tip_after_the_first_compiles_no_template(monkeypatch: pytest.MonkeyPatch) -> None:
    """The email's templates (and what they import) are compiled once per process, not for every tip: compiling
    was two thirds of a tip's CPU when the email environment had no cache (docs/benchmarks.md)."""
    composer = Composer("tipbox@example.vn", b"k" * 32)
    voice = [Attachment("voice", 1, "voice-1.m4a", "audio/mp4", bytes(10))]
    composer.compose(_tip(what=""), voice)  # every template used
    compiled: list[str | None] = []
    compile_ = jinja2.Environment._compile

    def counting(self: jinja2.Environment, source: str, filename: str) -> object:
        compiled.append(filename)
        return compile_(self, source, filename)

    monkeypatch.setattr(jinja2.Environment, "_compile", counting)
    for what in ("", "Bán ma túy ở chợ phiên"):
        composer.compose(_tip(what=what), voice)
    assert compiled == []
