"""The IMAP collector: fetches officers' replies from the reply mailbox and hands each to ingestion.

It touches only messages addressed to the reply address (in a mailbox shared with other mail, everything else is
left exactly as it was: fetched with BODY.PEEK, never flagged). A reply that was stored is deleted and expunged by
UID (UIDPLUS), so nobody else's deleted-but-kept mail goes with it; one that is not an answer is left where it is
and remembered, so it is logged once. IMAPClient is blocking: its calls run one by one in a thread of their own.
When the server is down or refuses the login, the collector logs one line per failure and retries with backoff;
tips never wait on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import imaplib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from app.answers.ingest import MAX_MESSAGE_BYTES, Dropped, Ingestion, Kept, parse
from app.answers.store import StoreUnavailable

logger = logging.getLogger(__name__)

Security = Literal["tls", "starttls", "none"]
# What a confirmation is handed to: (recipient, wire bytes) → returns once the SMTP server accepted it.
Send = Callable[[str, bytes], Awaitable[None]]
_FAILURES = (IMAPClientError, imaplib.IMAP4.error, OSError, ssl.SSLError, EOFError)
_T = TypeVar("_T")
_REMEMBERED = 10_000  # non-answers remembered (by UID) so that each is logged once per process


@dataclass(frozen=True, slots=True)
class ImapAccount:
    host: str
    username: str
    password: str = field(repr=False)
    port: int = 993
    security: Security = "tls"
    folder: str = "INBOX"
    poll_seconds: float = 60.0
    ca_file: Path | None = None
    timeout: float = 30.0


class Collector:
    """Runs until cancelled: connect, sweep, wait (IDLE where the server has it, else poll), and again."""

    def __init__(
        self,
        account: ImapAccount,
        reply_to: str,
        ingestion: Ingestion,
        send: Send | None,
        *,
        min_backoff: float = 5.0,
        max_backoff: float = 300.0,
    ) -> None:
        self.account = account
        self.reply_to = reply_to.lower()
        self.ingestion = ingestion
        self.send = send
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.failures = 0  # consecutive; reset by a successful login
        self.sweeps = 0
        self._left: set[tuple[int, int]] = set()
        # One thread for every IMAP call: a connection is one conversation, and a call abandoned by a cancelled
        # task (an IDLE check) must finish before the next one (IDLE DONE, LOGOUT) starts.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tipbox-imap")

    async def _call(self, function: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self._thread.shutdown(wait=False)

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except _FAILURES as exc:
                self.failures += 1
                delay = min(self.max_backoff, self.min_backoff * 2 ** min(self.failures - 1, 16))
                logger.warning(
                    "answers: IMAP %s:%d failed (%s: %s); retrying in %g s",
                    self.account.host, self.account.port, type(exc).__name__, str(exc)[:120], delay,
                )
                await asyncio.sleep(delay)

    async def _session(self) -> None:
        imap = await self._call(self._connect)
        try:
            self.failures = 0
            while True:
                await self.sweep(imap)
                await self._wait(imap)
        finally:
            await asyncio.shield(self._call(_logout, imap))

    def _connect(self) -> Any:
        account = self.account
        context = None
        if account.security != "none":
            context = ssl.create_default_context(cafile=str(account.ca_file) if account.ca_file else None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        imap = IMAPClient(
            account.host, port=account.port, ssl=account.security == "tls", ssl_context=context,
            timeout=account.timeout,
        )
        try:
            if account.security == "starttls":
                imap.starttls(context)
            imap.login(account.username, account.password)
            imap.select_folder(account.folder)
        except BaseException:
            _logout(imap)
            raise
        return imap

    async def sweep(self, imap: Any) -> int:
        """Ingest every new message addressed to the reply address; return how many answers were stored."""
        self.sweeps += 1
        validity = int((await self._call(imap.folder_status, self.account.folder, [b"UIDVALIDITY"]))
                       .get(b"UIDVALIDITY", 0))
        uids = await self._call(imap.search, ["OR", "TO", self.reply_to, "CC", self.reply_to])
        stored = 0
        for uid in sorted(uids):
            if (validity, uid) in self._left:
                continue
            outcome = await self._one(imap, int(uid))
            if outcome is None:
                continue
            if isinstance(outcome, Kept):
                stored += not outcome.repeat
                await self._delete(imap, uid)
            else:
                if len(self._left) >= _REMEMBERED:
                    self._left.clear()
                self._left.add((validity, uid))
        return stored

    async def _one(self, imap: Any, uid: int) -> Kept | Dropped | None:
        sizes = await self._call(imap.fetch, [uid], [b"RFC822.SIZE"])
        size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
        if size > MAX_MESSAGE_BYTES:
            logger.info("answers: message dropped: too large")
            return Dropped("too large")
        fetched = await self._call(imap.fetch, [uid], [b"BODY.PEEK[]"])
        raw = fetched.get(uid, {}).get(b"BODY[]")
        if not isinstance(raw, bytes):
            return None  # expunged by someone else meanwhile
        if not self._addressed_to_us(raw):
            return None  # the search matched a longer address ("x" + ours): not ours, not touched
        try:
            outcome = await self.ingestion.take(raw)
        except StoreUnavailable as exc:
            logger.warning("answers: store unavailable (%s); the reply stays in the mailbox for the next try", exc)
            return None
        if isinstance(outcome, Kept) and outcome.confirmation is not None and self.send is not None:
            recipient, data = outcome.confirmation
            try:
                await self.send(recipient, data)
            except Exception as exc:  # the answer is stored; a lost confirmation must not bring it back
                logger.warning("answers: confirmation not sent (%s)", getattr(exc, "reason", type(exc).__name__))
        return outcome

    def _addressed_to_us(self, raw: bytes) -> bool:
        try:
            message = parse(raw)
            values = [str(value) for name in ("To", "Cc") for value in (message.get_all(name) or [])]
        except Exception:
            return False
        return any(address.lower() == self.reply_to for _, address in email.utils.getaddresses(values))

    async def _delete(self, imap: Any, uid: int) -> None:
        await self._call(imap.add_flags, [uid], [b"\\Deleted"], True)
        if imap.has_capability("UIDPLUS"):
            await self._call(imap.uid_expunge, [uid])
        # Without UIDPLUS a plain EXPUNGE would also remove what others marked deleted: the flag is left for them.

    async def _wait(self, imap: Any) -> None:
        if not imap.has_capability("IDLE"):
            await asyncio.sleep(self.account.poll_seconds)
            return
        await self._call(imap.idle)
        try:
            deadline = time.monotonic() + self.account.poll_seconds
            while time.monotonic() < deadline:
                # Short checks, so that stopping the service never waits on the server.
                if await self._call(imap.idle_check, 1.0):
                    break
        finally:
            await self._call(imap.idle_done)


def _logout(imap: Any) -> None:
    try:
        imap.logout()
    except Exception:  # already gone: close the socket, whatever state it is in
        with contextlib.suppress(Exception):
            imap.shutdown()
