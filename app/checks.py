"""What `tipbox check` (and `tipbox serve` as it starts) verify, so that the operator finds a problem before a resident.

Each check gives lines to report and problems, one line each (the setting first where one is to blame). The SMTP
check logs in as a tip would (EHLO, STARTTLS or TLS, AUTH) and sends nothing; it reads the server's SIZE and
compares it with the largest email the settings allow (`app.sizes`). `--send-test` sends one short email to each
post's mailbox, so the officers can see their mail arrives.
"""

from __future__ import annotations

import email.utils
import re
import secrets
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from app import i18n, mime, sizes
from app.delivery import DeliveryError, Mailer, ServerReport, SmtpServer, Wire
from app.i18n import N_
from app.main import smtp_server
from app.settings import Post, Settings

TEST_SUBJECT = N_("tipbox test email for %(post)s")
TEST_BODY = N_(
    "This is a test email sent by `tipbox check --send-test`. Tips sent to %(post)s will arrive at this "
    "address like this one. Nothing needs to be done."
)
_REDIS_SECONDS = 3.0
_QUEUED = re.compile(r"\bqueued as ([0-9A-Za-z]{5,20})\b")
AUTHSERV_WARNING = (
    "  warning: answers: officers' addresses are trusted as written (anyone who saw a tip can forge From); set "
    "TIPBOX_ANSWERS_AUTHSERV_ID to the reply mailbox's server (docs/answers.md)"
)


@dataclass
class Report:
    """What the checks found: `lines` to show, `problems` that make the configuration unfit (one line each)."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def run(settings: Settings, *, send_test: bool = False) -> Report:
    """Every check for `settings`: the public address, the SMTP server (and a test email), Redis."""
    report = Report()
    if not settings.dev_mode and settings.public_url is None:
        report.problems.append(
            "TIPBOX_PUBLIC_URL: required outside development (posters print it), e.g. https://tip.example.vn"
        )
    for name, value in sizes.figures(settings).items():
        report.lines.append(f"  {name}: {value}")
    server = smtp_server(settings)
    if server is not None:
        await _check_smtp(settings, server, report, send_test=send_test)
    if settings.limits_storage.startswith(("redis://", "rediss://")):
        await _check_redis(settings.limits_storage, "TIPBOX_LIMITS_STORAGE", report)
    if settings.answers_on and settings.answers_store_url.startswith(("redis://", "rediss://")):
        await _check_redis(settings.answers_store_url, "TIPBOX_ANSWERS_STORE", report)
    if settings.answers_on and settings.answers_authserv_id is None:
        report.lines.append(AUTHSERV_WARNING)
    return report


async def _check_smtp(settings: Settings, server: SmtpServer, report: Report, *, send_test: bool) -> None:
    where = f"TIPBOX_SMTP_HOST: {server.host}:{server.port} ({server.security})"
    mailer = Mailer(server)
    try:
        found = await mailer.probe()
    except DeliveryError as exc:
        report.problems.append(smtp_problem(server, exc))
        return
    report.lines.append(f"  {where}: {describe(found)}")
    too_large = sizes.too_large_for(settings, found.size)
    if too_large is not None:
        report.problems.append(f"TIPBOX_MAX_UPLOAD_BYTES: {too_large}")
    if send_test:
        for post in settings.load_posts().values():
            try:
                answer = await mailer.send(test_email(settings, post))
            except DeliveryError as exc:
                report.problems.append(f"{where}: test email to {post.mailbox} (post {post.slug}): {exc.reason}")
            else:
                report.lines.append(f"  test email sent to {post.mailbox} (post {post.slug})")
                # A local Postfix answers once the email is in its queue; whether the provider took it is in the
                # mail log under this id, where a wrong provider password or a refused recipient shows.
                queued = _QUEUED.search(answer)
                if queued is not None:
                    report.lines.append(
                        f"    {server.host} queued it as {queued[1]}: see where it went with "
                        f"`journalctl -g {queued[1]}` (Debian's Postfix logs to the journal under postfix@-, not "
                        f"postfix; or grep {queued[1]} /var/log/mail.log where rsyslog runs)"
                    )


def smtp_problem(server: SmtpServer, exc: DeliveryError) -> str:
    """One line for a failed login or connection: a refused login names the username (never the password); a
    failure for now (4xx, 454 at STARTTLS or AUTH, no connection) says it is temporary, as residents are told."""
    address = f"{server.host}:{server.port} ({server.security})"
    if exc.login_refused:
        return (
            f"TIPBOX_SMTP_USERNAME: {address} refused the login of {server.username!r}: {exc.reason}; "
            "check TIPBOX_SMTP_USERNAME and TIPBOX_SMTP_PASSWORD"
        )
    where = f"TIPBOX_SMTP_HOST: {address}"
    if exc.transient:
        return f"{where}: temporary: {exc.reason}; tips get \"not sent yet, send again\" until it passes"
    return f"{where}: {exc.reason}"


def describe(found: ServerReport) -> str:
    """What the server showed, in one line: "EHLO, STARTTLS/TLS, AUTH accepted; SIZE 28000000"."""
    steps = ["EHLO", *(["TLS"] if found.secured else []), *(["AUTH"] if found.authenticated else [])]
    size = "no SIZE limit stated" if not found.size else f"SIZE {found.size:,} bytes"
    return f"{', '.join(steps)} accepted; {size}"


def test_email(settings: Settings, post: Post) -> Wire:
    """A short plain-text email to `post`'s mailbox from the configured sender, in the officers' language."""
    gettext = i18n.translations(i18n.OFFICER_LANGUAGE, settings.locales_dir).gettext
    domain = settings.sender.rpartition("@")[2] or "localhost"
    headers = [
        mime.header("From", settings.sender),
        mime.header("To", post.mailbox),
        mime.header("Date", email.utils.formatdate(localtime=False)),
        mime.header("Subject", gettext(TEST_SUBJECT) % {"post": post.name}, text=True),
        mime.header("Message-ID", f"<{secrets.token_hex(16)}@{domain}>"),
        mime.header("Auto-Submitted", "auto-generated"),
        mime.header("X-Tipbox-Kind", "test"),
    ]
    data = mime.message(headers, mime.text_part("plain", gettext(TEST_BODY) % {"post": post.name}))
    return Wire(settings.sender, (post.mailbox,), data)


async def _check_redis(url: str, setting: str, report: Report) -> None:
    import redis.asyncio
    from redis.exceptions import RedisError

    where = f"{setting}: Redis at {_without_password(url)}"
    client = redis.asyncio.Redis.from_url(url, socket_timeout=_REDIS_SECONDS, socket_connect_timeout=_REDIS_SECONDS)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        report.problems.append(f"{where} does not answer ({type(exc).__name__})")
    else:
        report.lines.append(f"  {where}: PING answered")
    finally:
        await client.aclose()


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def startup(settings: Settings) -> tuple[str | None, str | None]:
    """Before serving: (a problem that must stop the service, a warning to log). The SMTP server's SIZE must take
    the largest email; a server that cannot be reached yet is a warning (it may be starting too), not a stop."""
    server = smtp_server(settings)
    if server is None:
        return None, None
    try:
        found = await Mailer(server).probe()
    except DeliveryError as exc:
        if exc.transient:
            return None, f"the SMTP server {server.host}:{server.port} cannot be reached yet (temporary: {exc.reason})"
        return smtp_problem(server, exc), None
    too_large = sizes.too_large_for(settings, found.size)
    return (f"TIPBOX_MAX_UPLOAD_BYTES: {too_large}" if too_large else None), None


def local(settings: Settings, host: str, port: int) -> str | None:
    """Before serving: what on this machine the settings name and cannot be had (the address to listen on, the
    metrics address, the dev mailbox's folder), as one line naming the setting, or None. Found here rather than
    inside uvicorn's start-up, which would end in a traceback and an exit status a supervisor restarts on."""
    if not 0 < port < 65536:
        return f"--port (TIPBOX_PORT): {port} is not a port number (1-65535)"
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"--host (TIPBOX_HOST): {host!r} is not an address of this machine ({exc.strerror or exc})"
    if settings.metrics_bind is not None:
        metrics_host, metrics_port = settings.metrics_bind
        problem = _bindable(metrics_host, metrics_port)
        if problem is not None:
            return f"TIPBOX_METRICS_ADDRESS: cannot listen on {settings.metrics_address!r} ({problem})"
    if settings.dev_mode:
        try:
            settings.dev_mailbox.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"TIPBOX_DEV_MAILBOX: cannot make the folder {str(settings.dev_mailbox)!r} ({exc.strerror or exc})"
    return None


def _bindable(host: str, port: int) -> str | None:
    """Why a listening socket cannot be opened on `host`:`port` now, or None (it is closed again at once)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
