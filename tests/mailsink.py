"""A real aiosmtpd SMTP server for tests: plain, STARTTLS or implicit TLS, optional AUTH, scripted failures."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax

USERNAME = "post@example.vn"
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SinkHandler:
    """Accepts messages, or answers `reply` (e.g. "451 4.3.0 try later"), or hangs, or drops the connection."""

    messages: list[bytes] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    greetings: list[str] = field(default_factory=list)  # the name each accepted client gave in EHLO/HELO
    reply: str | None = None
    mode: str = "accept"  # accept | hang | drop
    attempts: int = 0
    # Replies for the next attempts, consumed first (e.g. ["451 busy"] then accept).
    script: list[str] = field(default_factory=list)
    # Seconds between taking a message (it is kept) and answering 250: a server slow after the final dot.
    delay: float = 0.0
    # Connections to drop at RCPT, before any message is sent.
    drop_at_rcpt: int = 0
    # The answer to STARTTLS, or to a correct login, instead of going on (e.g. "454 4.7.0 TLS not available").
    starttls_reply: str | None = None
    auth_reply: str | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.drop_at_rcpt > 0:
            self.drop_at_rcpt -= 1
            server.transport.close()
            return "421 4.4.2 dropped"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "drop":
            server.transport.close()
            return "421 4.4.2 dropped"
        if self.script:
            return self.script.pop(0)
        if self.reply is not None:
            return self.reply
        self.messages.append(bytes(envelope.original_content))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.greetings.append(session.host_name)
        if self.delay:
            await asyncio.sleep(self.delay)  # taken; the answer is late (or never read: the client gave up)
        return "250 2.0.0 accepted"

    def parsed(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
            for raw in self.messages
        ]


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode() == USERNAME and auth_data.password.decode() == PASSWORD
    )
    reply = server.event_handler.auth_reply
    if ok and reply is not None:  # the right password, and the provider cannot check it now
        return AuthResult(success=False, handled=False, message=reply)
    return AuthResult(success=ok, handled=False)


class _Server(SMTP):
    """aiosmtpd's server, answering STARTTLS as its handler says (a provider's "454 TLS not available")."""

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.event_handler.starttls_reply is not None:
            await self.push(self.event_handler.starttls_reply)
            return
        await super().smtp_STARTTLS(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Server(self.handler, **self.SMTP_kwargs)


class Sink:
    """One running SMTP server on 127.0.0.1 with its handler."""

    def __init__(
        self, security: str = "none", tls: ssl.SSLContext | None = None, auth: bool = False, size: int | None = None
    ) -> None:
        self.handler = SinkHandler()
        self.port = free_port()
        self.security = security
        kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": self.port, "server_hostname": "sink.test"}
        if security == "starttls":
            kwargs.update(tls_context=tls, require_starttls=True)
        elif security == "tls":
            kwargs.update(ssl_context=tls)
        if auth:
            # aiosmtpd only knows about STARTTLS; on implicit TLS the whole connection is already encrypted.
            kwargs.update(auth_required=True, auth_require_tls=security == "starttls", authenticator=_authenticator)
        if size is not None:  # the SIZE it advertises and enforces (aiosmtpd's default: 32 MiB)
            kwargs["data_size_limit"] = size
        self.controller = _Controller(self.handler, **kwargs)

    def start(self) -> Sink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
