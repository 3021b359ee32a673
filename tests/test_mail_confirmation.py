"""The officer's confirmation of a stored answer, written by app/mail.py (the one email writer) and read back with
the standard library as the reference; and no other module of the service writes email."""

from __future__ import annotations

import ast
from email.message import EmailMessage
from pathlib import Path

from app.mail import confirmation
from tests.reference import parse

APP = Path(__file__).parent.parent / "app"
TIPBOX, OFFICER = "tipbox@bienphong.test", "officer@post.test"
TIP_ID = "<ncs.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbb@bienphong.test>"
ANSWER_ID = "<CAabcdef0123456789abcdef0123456789@mail.gmail.com>"
SUBJECT = "Re: [Tin báo] [Ma túy] Đồn Biên phòng Na Cô Sa · 4821 0937 5512 9639"


def _read(raw: bytes) -> EmailMessage:
    assert raw.isascii() and raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"") and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    return parse(raw)


def _plain(note: EmailMessage) -> list[str]:
    body = note.get_body(("plain",))
    assert body is not None and not note.is_multipart()
    return [line for line in str(body.get_content()).splitlines() if line.strip()]


def test_a_confirmation_in_the_answers_thread() -> None:
    note = _read(confirmation(TIPBOX, OFFICER, subject=SUBJECT, answer_id=ANSWER_ID, references=TIP_ID, files=0,
                              at=1_715_000_000))
    assert (note["From"], note["To"], note["Subject"]) == (TIPBOX, OFFICER, SUBJECT)
    assert (note["In-Reply-To"], note["References"]) == (ANSWER_ID, f"{TIP_ID} {ANSWER_ID}")
    assert note["Auto-Submitted"] == "auto-replied"
    assert note["Date"] == "Mon, 06 May 2024 12:53:20 -0000"
    assert str(note["Message-ID"]).endswith("@bienphong.test>")
    stored = "Câu trả lời đã được lưu. Người gửi sẽ thấy khi nhập mã biên nhận trên trang hòm thư."
    assert _plain(note) == [stored]  # in the officers' language, and quoting nothing
    with_files = _read(confirmation(TIPBOX, OFFICER, subject=SUBJECT, answer_id=ANSWER_ID, references="", files=2,
                                    at=1_715_000_000))
    assert _plain(with_files) == [
        stored, "Tệp đính kèm không được chuyển cho người gửi: hãy viết ra điều họ cần biết."
    ]
    assert with_files["References"] == ANSWER_ID


def test_what_the_answer_brought_is_tidied_not_trusted() -> None:
    # A subject without "Re:", folded and with control characters; references with junk between the ids, and more
    # of them than a line holds; an answer without a usable Message-ID.
    many = " ".join(f"<id{n:04d}.{'x' * 40}@mail.example.com>" for n in range(40))
    note = _read(confirmation(TIPBOX, OFFICER, subject="Tin báo\r\n\t · mã\x00", answer_id=ANSWER_ID,
                              references=f"junk {many} (comment) <not an id>", files=0, at=0))
    assert note["Subject"] == "Re: Tin báo · mã\x00"
    references = str(note["References"]).split()
    assert references[-1] == ANSWER_ID and references[-2] == f"<id0039.{'x' * 40}@mail.example.com>"
    assert all(ref.startswith("<id") for ref in references[:-1]) and len(" ".join(references)) <= 900
    bare = _read(confirmation(TIPBOX, OFFICER, subject="", answer_id="no id\r\nBcc: x@evil.test", references=TIP_ID,
                              files=0, at=0))
    assert bare["In-Reply-To"] is None and bare["References"] is None and bare["Bcc"] is None
    assert bare["Subject"] == "Re:"


def _writes_email(path: Path) -> list[str]:
    """What in `path` builds or serialises a message with the stdlib `email` package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in {"EmailMessage", "MIMEText", "MIMEMultipart", "MIMEBase", "Message", "as_string",
                        "set_content", "add_alternative", "add_attachment", "generator", "BytesGenerator"}:
                found.append(f"{path.relative_to(APP.parent)}:{node.lineno} {name}")
            if name == "as_bytes" and isinstance(node.func, ast.Attribute):
                found.append(f"{path.relative_to(APP.parent)}:{node.lineno} .as_bytes")
    return found


def test_app_mail_is_the_only_email_writer() -> None:
    assert [hit for path in sorted(APP.rglob("*.py")) for hit in _writes_email(path)] == []
