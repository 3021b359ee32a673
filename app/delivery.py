"""Handing a message to the SMTP server: delivered means the server answered 250 to DATA, nothing less."""

from __future__ import annotations

import asyncio
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
    """The SMTP server did not accept the message; `reason` is safe to log (no content, no recipient)."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


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
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"authentication refused ({exc.code})", transient=False) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({r.code for r in exc.recipients})
            raise DeliveryError(f"recipient refused ({codes})", transient=all(400 <= c < 500 for c in codes)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"server answered {exc.code}", transient=400 <= exc.code < 500) from exc
        except aiosmtplib.SMTPTimeoutError as exc:
            raise DeliveryError("server did not answer in time", transient=True) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            raise DeliveryError(f"server lacks a required extension: {exc}", transient=False) from exc
        except ssl.SSLError as exc:
            raise DeliveryError(f"TLS failed: {exc.reason}", transient=False) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"connection failed: {type(exc).__name__}", transient=True) from exc
