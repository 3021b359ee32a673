"""Answers end to end through the real mail system: a tip through `tipbox serve` and Postfix, an officer's reply
(Gmail, Vietnamese) through Postfix to the reply address, collected over IMAP from Dovecot, read by the resident on
/p/{slug}/more; and another reply taken by `tipbox answer` on standard input, as a Postfix pipe would run it."""

from __future__ import annotations

import email.policy
import html
import imaplib
import os
import re
import secrets
import smtplib
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from app.answers import threads
from tests import replies
from tests.mailsink import free_port
from tests.mta import ANSWERS, OFFICER, PASSWORD, MailSystem, mail_system
from tests.test_mta_e2e import POST_NAME, _multipart, _request, _send

pytestmark = pytest.mark.e2e
__all__ = ["mail_system"]  # the session fixture, collected from here

ANSWER = "Cảm ơn anh đã báo tin! Anh thấy họ ở bản nào? Xe máy màu gì, có biển số không?"
SECOND = "Chúng tôi đã kiểm tra chợ phiên. Nếu họ quay lại, anh báo ngay nhé."


def _environment(system: MailSystem, folder: Path, secret: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("TIPBOX_")}
    posts = folder / "posts.toml"
    posts.write_text(f'[posts.ncs]\nname = "{POST_NAME}"\nmailbox = "{OFFICER}"\n', encoding="utf-8")
    env.update(
        TIPBOX_SMTP_HOST="127.0.0.1", TIPBOX_SMTP_PORT=str(system.smtp_port), TIPBOX_SMTP_SECURITY="starttls",
        TIPBOX_SMTP_CA_FILE=str(system.ca_file), TIPBOX_MAIL_FROM="tipbox@bienphong.test",
        TIPBOX_POSTS_FILE=str(posts), TIPBOX_SECRET_KEY=secret, TIPBOX_MIN_FILL_SECONDS="0",
        TIPBOX_DEV_MAILBOX=str(folder / "unused"), TIPBOX_REPLY_TO=ANSWERS,
        TIPBOX_IMAP_HOST="127.0.0.1", TIPBOX_IMAP_PORT=str(system.imap_port), TIPBOX_IMAP_SECURITY="none",
        TIPBOX_IMAP_USERNAME=ANSWERS, TIPBOX_IMAP_PASSWORD=PASSWORD,
        TIPBOX_ANSWERS_STORE=f"sqlite:///{folder / 'answers.sqlite3'}",
    )
    return env


@pytest.fixture(scope="module")
def served(mail_system: MailSystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """`tipbox serve` with answers on, its collector on the Dovecot reply mailbox; yields (base URL, environment)."""
    folder = tmp_path_factory.mktemp("tipbox-answers")
    env = _environment(mail_system, folder, secrets.token_urlsafe(32))
    port = free_port()
    command = [str(Path(sys.executable).parent / "tipbox"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = folder / "tipbox.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tipbox did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield base, env
    finally:
        process.terminate()
        process.wait(timeout=15)


def _mailbox(system: MailSystem, user: str) -> list[EmailMessage]:
    with imaplib.IMAP4("127.0.0.1", system.imap_port, timeout=10) as imap:
        imap.login(user, PASSWORD)
        _, exists = imap.select("INBOX", readonly=True)
        if exists == [b"0"]:
            return []
        _, data = imap.fetch("1:*", "(BODY.PEEK[])")
    found = []
    for item in data:
        if isinstance(item, tuple):
            message = email.message_from_bytes(item[1], policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.append(message)
    return found


def _wait_for(system: MailSystem, user: str, match: object, what: str, timeout: float = 40.0) -> EmailMessage:
    deadline = time.monotonic() + timeout
    while True:
        for message in _mailbox(system, user):
            if match(message):  # type: ignore[operator]
                return message
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{system.logs()[-3000:]}")
        time.sleep(0.2)


def _submit_through_postfix(system: MailSystem, raw: bytes, sender: str, recipient: str) -> None:
    """The officer's mail client submitting the reply to the mail server (STARTTLS)."""
    context = ssl.create_default_context(cafile=str(system.ca_file))
    with smtplib.SMTP("127.0.0.1", system.smtp_port, timeout=20) as smtp:
        smtp.starttls(context=context)
        smtp.sendmail(sender, [recipient], raw)


def _read_answers(base: str, code: str) -> tuple[int, str]:
    body, content_type = _multipart({"read": "1", "code": code})
    return _request(f"{base}/p/ncs/more?lang=vi", body, content_type)


def _texts(page: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(r'<p class="text">(.*?)</p>', page, re.DOTALL)]


def test_an_officers_reply_reaches_the_resident(served: tuple[str, dict[str, str]], mail_system: MailSystem) -> None:
    base, env = served
    code = _send(base, "/p/ncs", category="drugs", what="Có hai người lạ bán ma túy ở chợ phiên.", where="Chợ")
    tip = _wait_for(mail_system, OFFICER, lambda m: code in str(m["Subject"]) and "Re:" not in str(m["Subject"]),
                    "the tip")
    # What the officer's client shows: Reply goes to the reply address, and the email says what that means.
    assert tip["Reply-To"] == ANSWERS
    assert threads.read(str(tip["Message-ID"]), env["TIPBOX_SECRET_KEY"].encode()) is not None
    plain = tip.get_body(("plain",))
    assert plain is not None and "Trả lời thư này để trả lời người gửi" in str(plain.get_content())
    status, page = _read_answers(base, code)
    assert status == 200 and "Chưa có trả lời — vài ngày nữa hãy quay lại xem." in page and _texts(page) == []

    # The officer presses Reply in Gmail (Vietnamese), writes above the quoted tip, sends through the mail server.
    reply = replies.gmail(tip, ANSWER, sender=OFFICER)
    reply_id = str(email.message_from_bytes(reply, policy=email.policy.default)["Message-ID"])
    _submit_through_postfix(mail_system, reply, OFFICER, ANSWERS)
    note = _wait_for(mail_system, OFFICER, lambda m: m["In-Reply-To"] == reply_id, "the officer's confirmation")
    assert note["From"] == "tipbox@bienphong.test" and note["Subject"] == f"Re: {tip['Subject']}"
    note_text = note.get_body(("plain",))
    assert note_text is not None and "Câu trả lời đã được lưu" in str(note_text.get_content())
    assert [m for m in _mailbox(mail_system, ANSWERS) if m["Message-ID"] == reply_id] == []  # expunged

    status, page = _read_answers(base, code)
    assert status == 200, page
    assert _texts(page) == [ANSWER]  # diacritics intact, no quoted tip, no "Vào … đã viết:"
    assert "Có hai người lạ" not in page and "đã viết" not in page
    assert re.search(r'<p class="when">\d{2}/\d{2}/\d{4} \d{2}:\d{2}</p>', page)
    assert f'value="{code}"' in page  # the code is kept for a follow-up, in the form, never in an address
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
    status, page = _read_answers(base, wrong)
    assert status == 422 and _texts(page) == []  # a typo: caught by the check digit

    # Another reply, taken by `tipbox answer` from standard input as a Postfix pipe transport would run it.
    second = replies.outlook(tip, SECOND, sender=OFFICER)
    second_id = str(email.message_from_bytes(second, policy=email.policy.default)["Message-ID"])
    command = [str(Path(sys.executable).parent / "tipbox"), "answer"]
    done = subprocess.run(command, input=second, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    _wait_for(mail_system, OFFICER, lambda m: m["In-Reply-To"] == second_id, "the second confirmation")
    status, page = _read_answers(base, code)
    assert _texts(page) == [SECOND, ANSWER]  # newest first

    # Forged and stray mail on standard input: exit 0 (no bounce), nothing stored, nothing sent.
    for stray in (replies.gmail(tip, "Giả mạo", sender="ke-gia-mao@example.com"), replies.unrelated(ANSWERS)):
        done = subprocess.run(command, input=stray, env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert _texts(_read_answers(base, code)[1]) == [SECOND, ANSWER]
    time.sleep(1.0)
    notes = [m for m in _mailbox(mail_system, OFFICER) if m["Auto-Submitted"] == "auto-replied"]
    assert sorted(str(m["In-Reply-To"]) for m in notes) == sorted([reply_id, second_id])
