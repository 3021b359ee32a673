"""The IMAP collector: fetches officers' replies from the reply mailbox and hands each to ingestion.

It touches only messages addressed to the reply address (in a mailbox shared with other mail, everything else is
left exactly as it was: fetched with BODY.PEEK, never flagged). Each new message is judged from its header first
(addressed to us, a tipbox thread, an officer's From); only a candidate is fetched whole. Parsing and ingestion run
in worker threads, so a big or hostile message never stalls the event loop (and the tips it serves). A message that
is not an answer, or that cannot be read at all, is left where it is and remembered by UID, so it is fetched and
logged once per process. A stored reply is expunged by UID (UIDPLUS); without UIDPLUS it is moved to the Trash
(MOVE), or else flagged \\Deleted and expunged only while no one else's \\Deleted message would go with it.
IMAPClient is blocking: its calls run one by one in a thread of their own. When the server is down, refuses the
login, or anything else goes wrong in a session, the collector logs one line and retries with backoff; tips never
wait on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import imaplib
import logging
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from app.answers.ingest import MAX_MESSAGE_BYTES, Dropped, Ingestion, Kept, Send, parse
from app.answers.offload import take_in_thread
from app.answers.store import StoreUnavailable

logger = logging.getLogger(__name__)

Security = Literal["tls", "starttls", "none"]
_FAILURES = (IMAPClientError, imaplib.IMAP4.error, OSError, ssl.SSLError, EOFError)
_T = TypeVar("_T")
_REMEMBERED = 10_000  # messages left in place, remembered (by UID) so that each is fetched and logged once
_BATCH = 100  # messages per FETCH command
# The whole header (every field ingestion may look at, not just the ones it does now), but no more than its first
# 64 KiB: a message with no blank line is all header, and a batch of them must not bring gigabytes into the process.
_HEADER_BYTES = 64 * 1024
_HEADER = b"BODY.PEEK[HEADER]<0.%d>" % _HEADER_BYTES
_NOT_OURS = "not addressed to the reply address"  # the search's substring match found a longer address: not logged


@dataclass(frozen=True, slots=True)
class ImapAccount:
    host: str
    username: str
    password: str = field(repr=False)
    port: int = 993
    security: Security = "tls"
    folder: str = "INBOX"
    poll_seconds: float = 60.0
    ca_file: Path | None = None  # trusted besides the system's CAs
    timeout: float = 30.0


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's CAs, plus `ca_file` (a private CA) when given; TLS 1.2 at least."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


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
        self._left: dict[tuple[int, int], None] = {}  # (UIDVALIDITY, UID) → left in place; oldest first
        self._flagged: set[tuple[int, int]] = set()  # ours, flagged \\Deleted, waiting for a safe EXPUNGE
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
            except Exception as exc:  # anything at all: the collector must outlive it (one line, then again)
                self.failures += 1
                delay = min(self.max_backoff, self.min_backoff * 2 ** min(self.failures - 1, 16))
                # The server's own words for a connection failure; only the type for anything else (it could
                # quote a message).
                said = f": {str(exc)[:120]}" if isinstance(exc, _FAILURES) else ""
                logger.warning(
                    "answers: IMAP %s:%d failed (%s%s); retrying in %g s",
                    self.account.host, self.account.port, type(exc).__name__, said, delay,
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
        context = tls_context(account.ca_file) if account.security != "none" else None
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
        uids = await self._call(imap.search, ["UNDELETED", "OR", "TO", self.reply_to, "CC", self.reply_to])
        new = [int(uid) for uid in sorted(uids) if (validity, int(uid)) not in self._left]
        stored = 0
        for start in range(0, len(new), _BATCH):
            batch = new[start:start + _BATCH]
            sizes = await self._call(imap.fetch, batch, [b"RFC822.SIZE"])
            small = [uid for uid in batch if int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0)) <= MAX_MESSAGE_BYTES]
            for uid in batch:
                if uid in sizes and uid not in small:  # read no byte of it: not even its header
                    logger.info("answers: message dropped: too large")
                    self._remember(validity, uid)
            batch = small
            heads = await self._call(imap.fetch, batch, [_HEADER]) if batch else {}
            for uid in batch:
                try:
                    outcome = await self._one(imap, uid, heads.get(uid, {}))
                except _FAILURES:
                    raise  # the connection: the session starts again
                except Exception as exc:  # this message only: leave it, remember it, carry on with the others
                    logger.warning("answers: message left in the mailbox: cannot be read (%s)", type(exc).__name__)
                    outcome = Dropped("unreadable")
                if outcome is None:
                    continue
                if isinstance(outcome, Kept):
                    stored += not outcome.repeat
                    await self._delete(imap, validity, uid)
                else:
                    self._remember(validity, uid)
        await self._expunge_ours(imap, validity)
        return stored

    def _remember(self, validity: int, uid: int) -> None:
        if len(self._left) >= _REMEMBERED:
            del self._left[next(iter(self._left))]
        self._left[(validity, uid)] = None

    async def _one(self, imap: Any, uid: int, head: dict[bytes, Any]) -> Kept | Dropped | None:
        header = head.get(b"BODY[HEADER]<0>", head.get(b"BODY[HEADER]"))
        if not isinstance(header, bytes):
            return None  # expunged by someone else meanwhile
        verdict = await asyncio.to_thread(self._screen, header)
        if verdict is not None:
            if verdict.reason != _NOT_OURS:
                logger.info("answers: message dropped: %s", verdict.reason)
            return verdict
        fetched = await self._call(imap.fetch, [uid], [b"BODY.PEEK[]"])
        raw = fetched.get(uid, {}).get(b"BODY[]")
        if not isinstance(raw, bytes):
            return None
        try:
            outcome = await take_in_thread(self.ingestion, raw)
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

    def _screen(self, header: bytes) -> Dropped | None:
        """Why a message is not an answer, judged from its header alone; None for a candidate (in a worker thread)."""
        message = parse(header)
        values = [str(value) for name in ("To", "Cc") for value in (message.get_all(name) or [])]
        if not any(address.lower() == self.reply_to for _, address in email.utils.getaddresses(values)):
            return Dropped(_NOT_OURS)
        read = self.ingestion.read(header)
        return read if isinstance(read, Dropped) else None

    async def _delete(self, imap: Any, validity: int, uid: int) -> None:
        if imap.has_capability("UIDPLUS"):
            await self._call(imap.add_flags, [uid], [b"\\Deleted"], True)
            await self._call(imap.uid_expunge, [uid])
            return
        trash = await self._call(_trash, imap) if imap.has_capability("MOVE") else None
        if trash is not None and trash != self.account.folder:
            await self._call(imap.move, [uid], trash)
            return
        await self._call(imap.add_flags, [uid], [b"\\Deleted"], True)
        self._flagged.add((validity, uid))

    async def _expunge_ours(self, imap: Any, validity: int) -> None:
        """A plain EXPUNGE, only when every \\Deleted message in the folder is one of ours (it would take them all)."""
        self._flagged = {key for key in self._flagged if key[0] == validity}
        if not self._flagged:
            return
        deleted = {(validity, int(uid)) for uid in await self._call(imap.search, ["DELETED"])}
        if deleted <= self._flagged:
            await self._call(imap.expunge)
            self._flagged -= deleted

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


def _trash(imap: Any) -> str | None:
    """The Trash folder: the one marked \\Trash (RFC 6154), else one of the usual names; None if there is none."""
    found = imap.find_special_folder(b"\\Trash")
    return str(found) if found else None


def _logout(imap: Any) -> None:
    try:
        imap.logout()
    except Exception:  # already gone: close the socket, whatever state it is in
        with contextlib.suppress(Exception):
            imap.shutdown()
