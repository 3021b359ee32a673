"""`tipbox check` catches what will fail, against real servers: each problem one line, exit status non-zero."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import cli, sizes
from app.settings import load_settings
from tests.helpers import SECRET
from tests.mailsink import PASSWORD, USERNAME, Sink, free_port

POSTS = """\
[posts.ncs]
name = "Đồn Biên phòng Na Cô Sa"
mailbox = "nacosa@example.vn"

[posts.apc]
name = "Đồn Biên phòng A Pa Chải"
mailbox = "apachai@example.vn"
"""


@pytest.fixture
def secure_sink(server_tls: ssl.SSLContext) -> Iterator[Sink]:
    """A submission server as a provider runs one: STARTTLS, then AUTH."""
    server = Sink("starttls", server_tls, auth=True).start()
    yield server
    server.stop()


def _configure(monkeypatch: pytest.MonkeyPatch, sink: Sink, ca_file: Path | None = None, **settings: str) -> None:
    values = {
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port), "SMTP_SECURITY": sink.security,
        "MAIL_FROM": "tipbox@example.vn", "MAILBOX": "post@example.vn", "SECRET_KEY": SECRET,
        "PUBLIC_URL": "https://tip.example.vn", "SMTP_TIMEOUT": "5",
        **({"SMTP_CA_FILE": str(ca_file)} if ca_file else {}),
        **settings,
    }
    for name, value in values.items():
        monkeypatch.setenv(f"TIPBOX_{name}", value)


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, list[str]]:
    status = cli.main(["check", *args])
    out, err = capsys.readouterr()
    return status, out, err.strip().splitlines()


def test_a_good_configuration_logs_in_sends_nothing_and_reports_the_size(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], secure_sink: Sink, ca_file: Path
) -> None:
    _configure(monkeypatch, secure_sink, ca_file, SMTP_USERNAME=USERNAME, SMTP_PASSWORD=PASSWORD)
    status, out, problems = _check(capsys)
    assert (status, problems) == (0, [])
    assert "configuration OK" in out
    assert "EHLO, TLS, AUTH accepted; SIZE 33,554,432 bytes" in out  # aiosmtpd's default limit, read from EHLO
    assert f"largest email: {sizes.largest_email(load_settings()):,} bytes" in out
    assert secure_sink.handler.attempts == 0  # logged in, and sent nothing


def test_a_wrong_password_is_one_line_and_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], secure_sink: Sink, ca_file: Path
) -> None:
    _configure(monkeypatch, secure_sink, ca_file, SMTP_USERNAME=USERNAME, SMTP_PASSWORD="not the password")
    status, out, problems = _check(capsys)
    assert status == 1 and "configuration NOT OK" in out
    assert problems == [
        f"tipbox: TIPBOX_SMTP_USERNAME: 127.0.0.1:{secure_sink.port} (starttls) refused the login of "
        f"'{USERNAME}': authentication refused (535); check TIPBOX_SMTP_USERNAME and TIPBOX_SMTP_PASSWORD"
    ]
    assert "not the password" not in out + "".join(problems)
    assert secure_sink.handler.attempts == 0


@pytest.mark.parametrize(
    ("step", "reply", "reason"),
    [("starttls_reply", "454 4.7.0 TLS not available due to temporary reason", "server answered 454"),
     ("auth_reply", "454 4.7.0 Temporary authentication failure", "authentication failed for now (454)")],
)
def test_a_454_is_temporary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], secure_sink: Sink, ca_file: Path,
    step: str, reply: str, reason: str,
) -> None:
    setattr(secure_sink.handler, step, reply)
    _configure(monkeypatch, secure_sink, ca_file, SMTP_USERNAME=USERNAME, SMTP_PASSWORD=PASSWORD)
    status, out, problems = _check(capsys)
    assert status == 1 and "configuration NOT OK" in out
    assert problems == [
        f"tipbox: TIPBOX_SMTP_HOST: 127.0.0.1:{secure_sink.port} (starttls): temporary: {reason}; "
        'tips get "not sent yet, send again" until it passes'
    ]
    assert PASSWORD not in out + "".join(problems)


def test_an_untrusted_certificate_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], secure_sink: Sink
) -> None:
    _configure(monkeypatch, secure_sink, SMTP_USERNAME=USERNAME, SMTP_PASSWORD=PASSWORD)  # no CA file
    status, _, problems = _check(capsys)
    assert status == 1 and len(problems) == 1 and "TLS failed: CERTIFICATE_VERIFY_FAILED" in problems[0]


def test_redis_not_listening_and_no_public_url_are_a_line_each(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sink: Sink
) -> None:
    port = free_port()  # nothing listens there
    _configure(monkeypatch, sink, LIMITS_STORAGE=f"redis://:hunter2-secret@127.0.0.1:{port}/0",
               REPLY_TO="answers@example.vn", ANSWERS_STORE=f"redis://127.0.0.1:{port}/1")
    monkeypatch.delenv("TIPBOX_PUBLIC_URL")
    status, _, problems = _check(capsys)
    assert status == 1
    assert problems == [
        "tipbox: TIPBOX_PUBLIC_URL: required outside development (posters print it), e.g. https://tip.example.vn",
        f"tipbox: TIPBOX_LIMITS_STORAGE: Redis at redis://127.0.0.1:{port}/0 does not answer (ConnectionError)",
        f"tipbox: TIPBOX_ANSWERS_STORE: Redis at redis://127.0.0.1:{port}/1 does not answer (ConnectionError)",
    ]  # the Redis password is not printed


def test_a_server_that_takes_smaller_emails_is_refused_naming_both_numbers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    small = Sink(size=10_240_000).start()
    try:
        _configure(monkeypatch, small)
        status, _, problems = _check(capsys)
    finally:
        small.stop()
    largest = sizes.largest_email(load_settings())
    assert status == 1 and len(problems) == 1
    assert "10,240,000" in problems[0] and f"{largest:,}" in problems[0]
    # Lowering the uploads until the email fits makes the same server fine.
    small = Sink(size=10_240_000).start()
    try:
        _configure(monkeypatch, small, MAX_UPLOAD_BYTES="7000000")
        assert _check(capsys)[0] == 0
    finally:
        small.stop()


def test_send_test_mails_each_post_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sink: Sink, tmp_path: Path
) -> None:
    posts = tmp_path / "posts.toml"
    posts.write_text(POSTS, encoding="utf-8")
    _configure(monkeypatch, sink, POSTS_FILE=str(posts))
    monkeypatch.delenv("TIPBOX_MAILBOX")
    status, out, problems = _check(capsys, "--send-test")
    assert (status, problems) == (0, [])
    assert "test email sent to nacosa@example.vn (post ncs)" in out
    received = {str(message["To"]): message for message in sink.handler.parsed()}
    assert sorted(received) == ["apachai@example.vn", "nacosa@example.vn"]
    message = received["nacosa@example.vn"]
    assert str(message["Subject"]) == "Thư thử nghiệm của tipbox cho Đồn Biên phòng Na Cô Sa"
    assert message["From"] == "tipbox@example.vn" and message["X-Tipbox-Kind"] == "test"
    assert "Đồn Biên phòng Na Cô Sa" in message.get_content()


def test_a_refused_test_email_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sink: Sink
) -> None:
    sink.handler.reply = "550 5.1.1 no such mailbox"
    _configure(monkeypatch, sink)
    status, _, problems = _check(capsys, "--send-test")
    assert status == 1
    assert problems == [
        f"tipbox: TIPBOX_SMTP_HOST: 127.0.0.1:{sink.port} (none): test email to post@example.vn (post post): "
        "server answered 550"
    ]


def test_a_posts_file_mistake_or_a_second_way_of_naming_posts_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sink: Sink, tmp_path: Path
) -> None:
    posts = tmp_path / "posts.toml"
    posts.write_text(POSTS.replace('mailbox = "nacosa@example.vn"', 'mailbx = "nacosa@example.vn"'), encoding="utf-8")
    _configure(monkeypatch, sink, POSTS_FILE=str(posts))
    monkeypatch.delenv("TIPBOX_MAILBOX")
    assert cli.main(["check"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("tipbox: configuration error: TIPBOX_POSTS_FILE: [posts.ncs]: unknown key 'mailbx'")
    posts.write_text(POSTS, encoding="utf-8")
    monkeypatch.setenv("TIPBOX_MAILBOX", "post@example.vn")  # silently ignored before: now refused
    assert cli.main(["check"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("tipbox: configuration error: TIPBOX_MAILBOX: set either TIPBOX_POSTS_FILE")


def test_answers_without_an_authserv_id_are_a_warning_not_a_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sink: Sink
) -> None:
    _configure(monkeypatch, sink, REPLY_TO="answers@example.vn")
    status, out, problems = _check(capsys)
    warnings = [line for line in out.splitlines() if "TIPBOX_ANSWERS_AUTHSERV_ID" in line]
    assert (status, problems) == (0, [])
    assert len(warnings) == 1 and "trusted as written" in warnings[0]
    monkeypatch.setenv("TIPBOX_ANSWERS_AUTHSERV_ID", "mx.google.com")
    status, out, _ = _check(capsys)
    assert status == 0 and "TIPBOX_ANSWERS_AUTHSERV_ID" not in out
    monkeypatch.delenv("TIPBOX_REPLY_TO")  # answers off: nothing to warn about
    monkeypatch.delenv("TIPBOX_ANSWERS_AUTHSERV_ID")
    assert "TIPBOX_ANSWERS_AUTHSERV_ID" not in _check(capsys)[1]
