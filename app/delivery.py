"""Handing a message to the SMTP server: delivered means the server answered 250 to DATA, nothing less."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import aiosmtplib

logger = logging.getLogger(__name__)

Security = Literal["starttls", "tls", "none"]
RETRY_DELAY_SECONDS = 0.5


class DeliveryError(Exception):
    """The SMTP server did not accept the message; `reason` is safe to log (no content, no recipient).

    `transient`: trying again may work (4xx, a timeout, a dropped connection). `too_large`: refused for good for
    its size (552, or the enhanced codes 5.3.4 and 5.2.3), so the same message will never go.
    """

    def __init__(self, reason: str, *, transient: bool, too_large: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.too_large = too_large


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

    async def send(self, message: Wire) -> None:
        """Return once the server accepted `message` (250 after DATA); raise `DeliveryError` otherwise."""
        data, sender, recipients = message.data, message.sender, list(message.recipients)
        try:
            await self._send_once(data, sender, recipients)
        except DeliveryError as first:
            if not first.transient:
                raise
            logger.warning("delivery failed (%s); retrying once", first.reason)
            await asyncio.sleep(self._retry_delay)
            await self._send_once(data, sender, recipients)

    async def _send_once(self, data: bytes, sender: str, recipients: list[str]) -> None:
        server = self.server
        try:
            await aiosmtplib.send(
                data,
                sender=sender,
                recipients=recipients,
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
        except (aiosmtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
            raise _delivery_error(exc) from exc

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
        return DeliveryError(f"authentication refused ({exc.code})", transient=False)
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
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return DeliveryError(f"server lacks a required extension: {exc}", transient=False)
    if isinstance(exc, ssl.SSLError):
        return DeliveryError(f"TLS failed: {exc.reason}", transient=False)
    return DeliveryError(f"connection failed: {type(exc).__name__}", transient=True)
