"""End to end through a real MTA into a real mailbox: a phone posts the form to a `tipbox serve` process, tipbox
hands the tip to Postfix over STARTTLS, Postfix files it in a Maildir, and the officer's client reads it over IMAP."""

from __future__ import annotations

import email
import email.policy
import io
import os
import re
import secrets
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app import sizes
from app.settings import Settings, load_settings
from tests import media
from tests.helpers import hidden_fields
from tests.mailsink import Sink, free_port
from tests.mta import OFFICER, MailSystem, mail_system

pytestmark = pytest.mark.e2e
__all__ = ["mail_system"]  # the session fixture, collected from here

POST_NAME = "Đồn Biên phòng Na Cô Sa"
# Distinctive things a resident's phone (or a proxy in front of tipbox) sends: none may reach the mailbox.
PHONE_HEADERS = {
    "User-Agent": "Mozilla/5.0 (Linux; Android 9; CANARY-PHONE-7731) Zalo/23.09.01",
    "X-Forwarded-For": "198.51.100.231",
    "X-Real-IP": "198.51.100.232",
    "Forwarded": "for=198.51.100.233;proto=https",
    "Via": "1.1 canary-proxy-7731",
    "Accept-Language": "vi-VN,vi;q=0.9",
}
CANARIES = (b"CANARY", b"canary", b"198.51.100.", b"Zalo/23", b"Android 9")
PHOTO_NAME = "IMG_20240506_CANARY-photo.jpg"


def _request(url: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, str]:
    headers = dict(PHONE_HEADERS)
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _multipart(fields: dict[str, str], photo: bytes = b"") -> tuple[bytes, str]:
    """A multipart/form-data body, as the form's enctype makes a phone send it (with `photo` in the photo input)."""
    boundary = f"----tipbox{secrets.token_hex(8)}"
    chunks = []
    for name, value in fields.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    filename = PHOTO_NAME if photo else ""
    chunks.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="{filename}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode() + photo + b"\r\n"
    )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _send(base: str, path: str, photo: bytes = b"", **typed: str) -> str:
    """Open the form at `path` like a phone, fill it in, press Send; return the receipt code shown."""
    status, page = _request(base + path)
    assert status == 200, page
    body, content_type = _multipart({**hidden_fields(page), **typed}, photo)
    status, page = _request(f"{base}{path}?lang=vi", body, content_type)
    assert status == 200, page
    match = re.search(r'id="receipt">\s*(\d{4} \d{4} \d{4} \d{4})\s*<', page)
    assert match, page
    return match.group(1)


@pytest.fixture(scope="module")
def tipbox(mail_system: MailSystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`tipbox serve` as a real process, relaying to the test Postfix over STARTTLS; yields its base URL."""
    folder = tmp_path_factory.mktemp("tipbox")
    posts = folder / "posts.toml"
    posts.write_text(f'[posts.ncs]\nname = "{POST_NAME}"\nmailbox = "{OFFICER}"\n', encoding="utf-8")
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("TIPBOX_")}
    env.update(
        TIPBOX_SMTP_HOST="127.0.0.1",
        TIPBOX_SMTP_PORT=str(mail_system.smtp_port),
        TIPBOX_SMTP_SECURITY="starttls",
        TIPBOX_SMTP_CA_FILE=str(mail_system.ca_file),
        TIPBOX_MAIL_FROM="tipbox@bienphong.test",
        TIPBOX_POSTS_FILE=str(posts),
        TIPBOX_SECRET_KEY=secrets.token_urlsafe(32),
        TIPBOX_MIN_FILL_SECONDS="0",
        TIPBOX_DEV_MAILBOX=str(folder / "unused"),
    )
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
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_tip_and_follow_up_arrive_threaded_in_the_officers_mailbox(tipbox: str, mail_system: MailSystem) -> None:
    photo = media.jpeg((800, 600), orientation=6)  # with GPS, camera model, owner...; stored sideways
    code = _send(
        tipbox,
        "/p/ncs",
        photo=photo,
        category="drugs",
        what="Có hai người lạ bán ma túy ở chợ phiên sáng thứ Bảy.",
        where="Chợ Na Cô Sa",
        when="Sáng thứ Bảy",
        contact="Zalo 0912 345 678",
    )
    again = _send(tipbox, "/p/ncs/more", category="weapons", what="Hôm nay họ mang theo súng.", receipt=code)
    assert again == code

    raw_first, raw_follow_up = mail_system.fetch(2)
    first, follow_up = _parse(raw_first), _parse(raw_follow_up)

    # What the officer's client shows: decoded Vietnamese subjects, one thread.
    assert str(first["Subject"]) == f"[Tin báo] [Ma túy] {POST_NAME} · {code}"
    assert str(follow_up["Subject"]) == f"Re: [Tin báo] [Ma túy] {POST_NAME} · {code}"
    assert follow_up["In-Reply-To"] == first["Message-ID"]
    assert follow_up["References"] == first["Message-ID"]
    assert first["To"] == OFFICER and first["From"] == "tipbox@bienphong.test"
    assert first["X-Tipbox-Post"] == "ncs" and follow_up["X-Tipbox-Kind"] == "follow-up"
    text = _plain(first)
    assert "Có hai người lạ bán ma túy ở chợ phiên sáng thứ Bảy." in text
    assert "Liên lạc: Zalo 0912 345 678" in text
    assert "không ghi lại địa chỉ IP" in text
    assert f"Bổ sung cho tin báo mã {code}" in _plain(follow_up)
    assert first.get_body(("html",)) is not None
    # The photo came through Postfix and IMAP intact, cleaned and upright, shown in the HTML part.
    (attached,) = [part for part in first.walk() if part.get_filename()]
    assert attached.get_filename() == "photo-1.jpg" and "Tệp đính kèm (1):\r\n1. Ảnh JPEG, " in text
    html = first.get_body(("html",))
    assert html is not None and f'src="cid:{str(attached["Content-ID"]).strip("<>")}"' in html.get_content()
    data = attached.get_content()
    assert [secret for secret in media.SECRETS if secret in data] == []
    with Image.open(io.BytesIO(data)) as picture:
        assert (picture.format, picture.size) == ("JPEG", (600, 800))
    assert [secret for secret in media.SECRETS if len(secret) >= 8 and secret in raw_first] == []

    for raw, message in ((raw_first, first), (raw_follow_up, follow_up)):
        # Nothing the phone sent about itself is stored, anywhere in the message, encoded or decoded.
        decoded = "\n".join(
            [f"{name}: {value}" for name, value in message.items()]
            + [str(part.get_content()) for part in message.walk() if part.get_content_maintype() == "text"]
        )
        for canary in CANARIES:
            assert canary not in raw and canary.decode() not in decoded, canary
        # The only Received line is Postfix's own, naming the host tipbox connected from (tipbox's server,
        # not the resident): tipbox adds none, and no other header carries an address.
        received = message.get_all("Received") or []
        assert len(received) == 1 and "by mta.tipbox.test (Postfix)" in str(received[0])
        for name, value in message.items():
            if name.lower() != "received":
                assert "127.0.0.1" not in str(value), (name, value)
        for part in message.walk():
            if part.get_content_maintype() == "text":
                assert "127.0.0.1" not in str(part.get_content())
        # The contact is in the body only: never Reply-To, never any header.
        assert message["Reply-To"] is None
        assert all("0912 345 678" not in str(value) for value in message.values())
        # tipbox handed the message over with STARTTLS.
        assert "ESMTPS" in str(received[0])


# --- Size limits that agree (deploy/postfix/main.cf, app/sizes.py) ------------------------------------------------

WIDE = "𠜎"  # four bytes in UTF-8, twelve in quoted-printable: the widest a typed character gets in the email


def test_a_tip_at_the_largest_size_is_accepted_and_queued_by_the_kits_postfix(
    tipbox: str, mail_system: MailSystem
) -> None:
    """Default settings (TIPBOX_MAX_UPLOAD_BYTES=20000000) and the kit's message_size_limit: the largest tip goes."""
    limit = _postconf(mail_system, "message_size_limit")
    assert limit == sizes.mta_size_limit(_settings_like_the_server()) == 28_000_000  # the kit's, not a test's
    before = len(mail_system.fetch(0))
    voice = media.mp3_of_size(20_000_000)
    status, page = _request(tipbox + "/p/ncs")
    assert status == 200, page
    fields = {
        **hidden_fields(page), "category": "smuggling", "what": (WIDE * 99 + "\n") * 50,
        "where": WIDE * 300, "when": WIDE * 200, "contact": WIDE * 200,
    }
    boundary = f"----tipbox{secrets.token_hex(8)}"
    body = b"".join(
        [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
         for name, value in fields.items()]
        + [f'--{boundary}\r\nContent-Disposition: form-data; name="voice"; filename="rec.mp3"\r\n'
           f"Content-Type: audio/mpeg\r\n\r\n".encode(), voice, f"\r\n--{boundary}--\r\n".encode()]
    )
    status, page = _request(tipbox + "/p/ncs?lang=vi", body, f"multipart/form-data; boundary={boundary}")
    assert status == 200 and 'id="receipt"' in page, page[-2000:]

    raw = mail_system.fetch(before + 1, timeout=60)[-1]
    largest = sizes.largest_email(_settings_like_the_server())
    assert largest - 100_000 < len(raw) <= largest  # as large as an email can get, and within the bound
    (attached,) = [part for part in _parse(raw).walk() if part.get_filename()]
    assert attached.get_filename() == "voice-1.mp3" and attached.get_content() == voice


def _settings_like_the_server() -> Settings:
    """The settings the `tipbox` fixture serves with, as far as sizes go (the defaults, and its one post)."""
    return load_settings(smtp_host="127.0.0.1", mail_from="tipbox@bienphong.test", mailbox=OFFICER,
                         secret_key=secrets.token_urlsafe(32))


def _postconf(system: MailSystem, name: str) -> int:
    postconf = str(Path(system.postfix).with_name("postconf"))
    done = subprocess.run([postconf, "-c", str(system.root / "postfix"), "-h", name], capture_output=True,
                          text=True, check=True, timeout=30)
    return int(done.stdout.strip())


@pytest.fixture(scope="module")
def stock_postfix(mail_system: MailSystem, ca: Any) -> Iterator[MailSystem]:
    """Another Postfix, with Debian's stock message_size_limit (10240000) over the kit's."""
    root = Path(tempfile.mkdtemp(prefix="tipbox-mta-small-", dir="/tmp"))
    stock = {"message_size_limit": "10240000"}
    system = MailSystem(root, ca, mail_system.postfix, mail_system.dovecot, overrides=stock)
    try:
        system.start()
        yield system
    finally:
        system.stop()
        shutil.rmtree(root, ignore_errors=True)


def _command_env(system: MailSystem) -> dict[str, str]:
    """The environment of a `tipbox` command that sends through `system`'s Postfix as a real deployment would."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TIPBOX_")}
    env.update(
        TIPBOX_SMTP_HOST="127.0.0.1", TIPBOX_SMTP_PORT=str(system.smtp_port), TIPBOX_SMTP_SECURITY="starttls",
        TIPBOX_SMTP_CA_FILE=str(system.ca_file), TIPBOX_MAIL_FROM="tipbox@bienphong.test",
        TIPBOX_MAILBOX=OFFICER, TIPBOX_SECRET_KEY=secrets.token_urlsafe(32),
        TIPBOX_PUBLIC_URL="https://tip.bienphong.test",
    )
    return env


def test_a_postfix_with_a_lower_limit_stops_check_and_serve_naming_both_numbers(
    stock_postfix: MailSystem, tmp_path: Path
) -> None:
    env = _command_env(stock_postfix)
    largest = sizes.largest_email(_settings_like_the_server())
    tipbox = str(Path(sys.executable).parent / "tipbox")
    for command in (["check"], ["serve", "--host", "127.0.0.1", "--port", str(free_port())]):
        done = subprocess.run([tipbox, *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode != 0, (command, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (command, done.stderr)
        assert "10,240,000" in lines[0] and f"{largest:,}" in lines[0] and "TIPBOX_MAX_UPLOAD_BYTES" in lines[0]


def test_bounces_and_postmaster_mail_reach_the_operator(mail_system: MailSystem, ca: Any) -> None:
    """The kit's main.cf with `operator_mailbox` set: a tip the provider refuses for good is bounced to tipbox's
    sender (through the provider) and a copy of the notice reaches the operator, as does mail for this machine's
    postmaster; none of it is dropped, and nothing can go to a resident (tipbox has no address of theirs)."""
    provider = Sink().start()  # the smarthost: refuses the tip for good, then takes the bounce for TIPBOX_MAIL_FROM
    provider.handler.script = ["550 5.7.1 refused by the provider"]
    root = Path(tempfile.mkdtemp(prefix="tipbox-mta-operator-", dir="/tmp"))
    system = MailSystem(root, ca, mail_system.postfix, mail_system.dovecot, overrides={
        "operator_mailbox": OFFICER, "default_transport": "smtp", "relayhost": f"[127.0.0.1]:{provider.port}",
        "smtp_tls_security_level": "none",
    })
    try:
        system.start()
        with smtplib.SMTP("127.0.0.1", system.smtp_port, timeout=20) as smtp:
            smtp.sendmail("tipbox@bienphong.test", ["ncs@provider.test"],
                          b"From: tipbox@bienphong.test\r\nSubject: [tipbox] tip\r\n\r\nA tip.\r\n")
            smtp.sendmail("cron@mta.tipbox.test", ["postmaster"],
                          b"From: cron@mta.tipbox.test\r\nSubject: for the postmaster\r\n\r\nHello.\r\n")
        got = [email.message_from_bytes(raw, policy=email.policy.default) for raw in system.fetch(2)]
        deadline = time.monotonic() + 20
        while not provider.handler.envelopes and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        system.stop()
        provider.stop()
        shutil.rmtree(root, ignore_errors=True)
    subjects = sorted(str(message["Subject"]) for message in got)
    assert subjects == ["Postmaster Copy: Undelivered Mail", "for the postmaster"], subjects
    assert provider.handler.envelopes == [("<>", ["tipbox@bienphong.test"])]  # the bounce, to tipbox's sender only


def test_check_send_test_names_the_queue_id_the_mail_log_follows(mail_system: MailSystem, ca: Any) -> None:
    """A local Postfix says 250 once the test email is in its queue; whether it went on (to the provider, here to
    the mailbox) is in the mail log under the queue id, which `tipbox check --send-test` prints with the command."""
    root = Path(tempfile.mkdtemp(prefix="tipbox-mta-check-", dir="/tmp"))
    system = MailSystem(root, ca, mail_system.postfix, mail_system.dovecot)
    try:
        system.start()
        env = _command_env(system)
        tipbox = str(Path(sys.executable).parent / "tipbox")
        done = subprocess.run([tipbox, "check", "--send-test"], env=env, cwd=root, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        queued = re.search(r"queued it as (\w+): see where it went with `journalctl -g (\w+)`", done.stdout)
        assert queued is not None and queued[1] == queued[2], done.stdout
        deadline = time.monotonic() + 20
        while True:  # the log line comes once the mailbox took it
            followed = [line for line in (root / "postfix.log").read_text().splitlines() if f" {queued[1]}: " in line]
            if any("status=sent" in line for line in followed) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        system.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert any("status=sent" in line for line in followed), followed
