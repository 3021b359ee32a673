"""The embedded development mailbox: an aiosmtpd server on loopback that files each message as an `.eml`.

It runs on the service's own event loop, and tipbox delivers to it through the same SMTP code as to a real
server, so a development run exercises the real relay. Mail for the reply address (an officer pressing Reply in a
mail client pointed at this port) goes to answers' ingestion instead, as `tipbox answer` would take it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

logger = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


# Takes one reply's bytes; returns a sysexits code (75: try again later), as `tipbox answer` does.
Ingest = Callable[[bytes], Awaitable[int]]
_TEMPFAIL = 75


class _FileHandler:
    def __init__(self, folder: Path, answers: tuple[str, Ingest] | None = None) -> None:
        self.folder = folder
        self.answers = answers

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if self.answers is not None:
            address, ingest = self.answers
            recipients = [str(rcpt).lower() for rcpt in envelope.rcpt_tos]
            if address.lower() in recipients:
                if await ingest(content) == _TEMPFAIL:
                    return "451 4.3.0 the answers store is unavailable, try again later"
                if all(rcpt == address.lower() for rcpt in recipients):
                    return "250 2.0.0 taken as an answer"
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = self.folder / f"{stamp}-{secrets.token_hex(4)}.eml"
        partial = path.with_suffix(".part")
        try:
            partial.write_bytes(content)
            partial.replace(path)
        except OSError as exc:
            logger.error("dev mailbox: cannot write %s: %s", path, exc.strerror)
            return "451 4.3.0 cannot store the message"
        logger.info("dev mailbox: message stored in %s", path)
        return "250 2.0.0 stored"


class DevMailbox:
    """An SMTP sink on 127.0.0.1 (a free port) writing into `folder`."""

    def __init__(self, folder: Path, answers: tuple[str, Ingest] | None = None) -> None:
        self.folder = folder
        self.answers = answers
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        """Start listening; return the port."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handler = _FileHandler(self.folder, self.answers)
        loop = asyncio.get_running_loop()

        def factory() -> Any:
            return SMTP(handler, hostname="tipbox-dev-mailbox", data_size_limit=MAX_MESSAGE_BYTES, loop=loop)

        self._server = await loop.create_server(factory, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("dev mailbox: listening on 127.0.0.1:%d, writing to %s", self.port, self.folder.resolve())
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
