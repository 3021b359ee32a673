"""Handing a message to the SMTP server: delivered means the server answered 250 to DATA, nothing less.

A transaction has two halves. Until the message's final dot is sent nothing can have been delivered, so a failure
there (refused connection, 4xx, a dropped link) is retried once. Once the dot is sent the server may have taken
the message even if its answer never comes (a slow filter, a lost packet): a retry could deliver it twice, so
there is none, and the caller is told it was `handed_over`. The answer to the dot is waited for longer than any
other command's (`SmtpServer.data_timeout`): servers do their spam and virus checks before they answer it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import aiosmtplib
from aiosmtplib.typing import Default, SMTPStatus

logger = logging.getLogger(__name__)

Security = Literal["starttls", "tls", "none"]
RETRY_DELAY_SECONDS = 0.5


class DeliveryError(Exception):
    """The SMTP server did not accept the message; `reason` is safe to log (no content, no recipient).

    `transient`: trying again may work (4xx at any step, 454 at STARTTLS or AUTH too, a timeout, a dropped
    connection). `too_large`: refused for good for its size (552, or the enhanced codes 5.3.4 and 5.2.3), so the
    same message will never go. `login_refused`: the server refused the credentials for good (535...).
    `handed_over`: the whole message was sent and no answer came; the server may have taken it (never retried).
    """

    def __init__(
        self, reason: str, *, transient: bool, too_large: bool = False, handed_over: bool = False,
        login_refused: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.too_large = too_large
        self.handed_over = handed_over
        self.login_refused = login_refused


@dataclass(frozen=True, slots=True)
class Wire:
    """A message as it goes over SMTP (`data`: CRLF line ends, headers written), with its envelope."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how to submit mail."""

    host: str
    port: int
    security: Security = "starttls"
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    timeout: float = 20.0
    data_timeout: float = 120.0  # for the answer to the message's final dot


@cache
def local_hostname() -> str:
    """This host's name for EHLO, looked up once (aiosmtplib would look it up in a worker thread for every send)."""
    return socket.getfqdn()


class Mailer:
    """Sends one message per call over a fresh SMTP connection, with one bounded retry for transient failures."""

    def __init__(self, server: SmtpServer, *, retry_delay: float = RETRY_DELAY_SECONDS) -> None:
        self.server = server
        self._retry_delay = retry_delay
        self._tls_context = self._make_tls_context() if server.security != "none" else None
        self._local_hostname = local_hostname()

    def _make_tls_context(self) -> ssl.SSLContext:
        cafile = str(self.server.ca_file) if self.server.ca_file else None
        context = ssl.create_default_context(cafile=cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    async def send(self, message: Wire) -> str:
        """Return the server's answer once it accepted `message` (250 after DATA: a local Postfix's says "queued as
        <id>"); raise `DeliveryError` otherwise."""
        data, sender, recipients = message.data, message.sender, list(message.recipients)
        try:
            return await self._send_once(data, sender, recipients)
        except DeliveryError as first:
            if not first.transient:
                raise
            logger.warning("delivery failed (%s); retrying once", first.reason)
            await asyncio.sleep(self._retry_delay)
            return await self._send_once(data, sender, recipients)

    async def _send_once(self, data: bytes, sender: str, recipients: list[str]) -> str:
        server = self.server
        client = _Client(
            data_timeout=server.data_timeout,
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.security == "tls",
            start_tls=server.security == "starttls",
            tls_context=self._tls_context,
            local_hostname=self._local_hostname,
            timeout=server.timeout,
        )
        try:
            async with client:
                _, answer = await client.sendmail(sender, recipients, data)
        except (aiosmtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
            answered = isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0
            if client.handed_over and not answered:
                reason = "no answer after the message was sent" if isinstance(exc, TimeoutError) else (
                    "connection lost after the message was sent"
                )
                raise DeliveryError(reason, transient=False, handed_over=True) from exc
            raise _delivery_error(exc) from exc
        return answer

    async def probe(self) -> ServerReport:
        """Connect, say EHLO, secure the connection and log in exactly as a tip would, then quit: no mail is sent.

        `tipbox check` and start-up use it to catch a wrong password or certificate, and to read the server's SIZE,
        before a resident finds out. Raise `DeliveryError` as `send_wire` would.
        """
        server = self.server
        # Logged in as a step of its own: a refused login inside connect() would close the connection in the
        # background, and the check's event loop may end before it is closed.
        smtp = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            use_tls=server.security == "tls",
            start_tls=server.security == "starttls",
            tls_context=self._tls_context,
            local_hostname=self._local_hostname,
            timeout=server.timeout,
        )
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:  # after STARTTLS, the server's extensions are asked for again
                await smtp.ehlo()
            if server.username is not None and server.password is not None:
                await smtp.login(server.username, server.password)
            size = smtp.esmtp_extensions.get("size") if smtp.supports_extension("size") else None
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.execute_command(b"QUIT")
        except (aiosmtplib.SMTPException, OSError) as exc:
            if isinstance(exc, aiosmtplib.SMTPResponseException):  # a refused login: the connection is still up
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await smtp.execute_command(b"QUIT")
            raise _delivery_error(exc) from exc
        finally:
            await _close(smtp)
        return ServerReport(
            size=int(size) if size and size.strip().isdigit() else (0 if size is not None else None),
            secured=server.security != "none",
            authenticated=server.username is not None,
        )


async def _close(smtp: aiosmtplib.SMTP) -> None:
    """Close the connection at once: `tipbox check` ends its event loop next, and TLS's gentle close takes several
    turns of it (the socket would be left open). An abort closes the socket on the loop's next turn."""
    if isinstance(smtp.transport, asyncio.Transport):
        smtp.transport.abort()
    smtp.close()
    await asyncio.sleep(0)


@dataclass(frozen=True, slots=True)
class ServerReport:
    """What `Mailer.probe` found: the server's SIZE (None: not advertised; 0: no fixed limit), whether the
    connection was encrypted, and whether it logged in."""

    size: int | None
    secured: bool
    authenticated: bool


def _delivery_error(exc: BaseException) -> DeliveryError:
    """The `DeliveryError` for an exception from aiosmtplib or the socket: its reason, and whether a retry may help."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # 454 "temporary authentication failure" (the provider's password service is down): for now, like any 4xx.
        if 400 <= exc.code < 500:
            return DeliveryError(f"authentication failed for now ({exc.code})", transient=True)
        return DeliveryError(f"authentication refused ({exc.code})", transient=False, login_refused=True)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = sorted({r.code for r in exc.recipients})
        return DeliveryError(f"recipient refused ({codes})", transient=all(400 <= c < 500 for c in codes))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # 552 is also "mailbox full" (5.2.2): that is no reason to send fewer files.
        status = exc.message.strip()[:5]
        too_large = status in ("5.3.4", "5.2.3") or (exc.code == 552 and status != "5.2.2")
        reason = f"server answered {exc.code}" + (" (message too large)" if too_large else "")
        return DeliveryError(reason, transient=400 <= exc.code < 500, too_large=too_large)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return DeliveryError("server did not answer in time", transient=True)
    if isinstance(exc, aiosmtplib.SMTPNotSupported) or (
        type(exc) is aiosmtplib.SMTPException and "not supported" in str(exc)
    ):
        # No AUTH with a username set, or no STARTTLS with TIPBOX_SMTP_SECURITY=starttls: it will not change by
        # itself (aiosmtplib says so with a bare SMTPException and no reply code).
        return DeliveryError(f"server lacks a required extension: {exc}", transient=False)
    tls = exc if isinstance(exc, ssl.SSLError) else exc.__cause__  # port 465: wrapped in SMTPConnectError
    if isinstance(tls, _TLS_CUT_SHORT):  # the network or a busy server ended the handshake: the next try may pass
        return DeliveryError(f"TLS interrupted: {type(tls).__name__}", transient=True)
    if isinstance(tls, ssl.SSLError):  # the certificate, the protocol, TLS on a plain port: the settings' to fix
        return DeliveryError(f"TLS failed: {tls.reason}", transient=False)
    return DeliveryError(f"connection failed: {type(exc).__name__}", transient=True)


_TLS_CUT_SHORT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


_LEADING_DOT = re.compile(rb"(?m)^\.")


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client with its DATA command split where the message is handed over.

    aiosmtplib sends DATA, the message and its final dot under one timeout and raises the same error whether the
    server went quiet before the message or after it. Here DATA waits for its 354 under the command timeout; the
    message with its final dot is written and `handed_over` set; only then is the answer waited for, under
    `data_timeout`. `sendmail` (MAIL, RCPT, SIZE, RSET on a refusal) is aiosmtplib's own.
    """

    def __init__(self, *, data_timeout: float, **options: Any) -> None:
        super().__init__(**options)
        self.data_timeout = data_timeout
        self.handed_over = False

    async def data(
        self, message: str | bytes, /, *, timeout: Any = Default.token  # noqa: ASYNC109 - aiosmtplib's signature
    ) -> aiosmtplib.SMTPResponse:
        start = await self.execute_command(b"DATA", timeout=timeout)
        if start.code != SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        if self.protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        body = message.encode("ascii") if isinstance(message, str) else message
        body = _LEADING_DOT.sub(b"..", body if body.endswith(b"\r\n") else body + b"\r\n")  # lines are CRLF (Wire)
        self.protocol.write(body + b".\r\n")
        self.handed_over = True  # written with its final dot: from here the server may deliver it
        try:
            response = await self.protocol.read_response(timeout=self.data_timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.close()
            raise
        if response.code != SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        return response
