"""The IMAP collector against the real Dovecot of tests/mta.py: only the reply address's mail is touched."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import imaplib
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from app import logs
from app.answers import keys
from app.answers.bound import DerivationBound
from app.answers.collector import Collector, ImapAccount
from app.answers.ingest import Ingestion, parse
from app.answers.lookup import answers_for
from app.answers.store import SqliteStore
from app.delivery import Mailer, SmtpServer, Wire
from tests import replies
from tests.mailsink import Sink, free_port
from tests.mta import ANSWERS, PASSWORD, MailSystem, mail_system
from tests.replies import CODE, SECRET

pytestmark = pytest.mark.e2e
__all__ = ["mail_system"]  # the session fixture, collected from here

PAIR = keys.derive(CODE, SECRET)


@contextmanager
def _imap(system: MailSystem) -> Iterator[imaplib.IMAP4]:
    with imaplib.IMAP4("127.0.0.1", system.imap_port, timeout=10) as imap:
        imap.login(ANSWERS, PASSWORD)
        imap.select("INBOX")
        yield imap


def _append(system: MailSystem, raw: bytes, flags: str = "") -> None:
    with _imap(system) as imap:
        status, _ = imap.append("INBOX", f"({flags})" if flags else None, None, raw)
        assert status == "OK"


def _mailbox(system: MailSystem) -> dict[str, str]:
    """Message-ID → flags, for every message in the reply mailbox (read without changing anything)."""
    found = {}
    with _imap(system) as imap:
        _, exists = imap.select("INBOX", readonly=True)
        if exists == [b"0"]:
            return found
        _, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        for item in data:
            if isinstance(item, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                message_id = parse(item[1])["Message-ID"]
                found[str(message_id)] = flags.group(1).decode() if flags else ""
    return found


@pytest.fixture
def mailbox(mail_system: MailSystem) -> Iterator[MailSystem]:
    """The reply mailbox, emptied after the test (the Dovecot instance is shared by the whole session)."""
    yield mail_system
    with _imap(mail_system) as imap:
        _, exists = imap.select("INBOX")
        if exists != [b"0"]:
            imap.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
            imap.expunge()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Running:
    """A collector running on its own event loop in a thread, as the service's lifespan runs it; `lag` is the longest
    the loop was kept from a 10 ms ticker (what a page would wait)."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task[None] | None = None
        self.lag = 0.0

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            self.lag, last = max(self.lag, now - last - 0.01), now

    def __enter__(self) -> Running:
        import threading

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            ticker = self.loop.create_task(self._tick())
            self.task = self.loop.create_task(self.collector.run())
            try:
                with contextlib.suppress(asyncio.CancelledError):
                    self.loop.run_until_complete(self.task)
            finally:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    self.loop.run_until_complete(ticker)

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        _wait(lambda: self.task is not None, "the collector to start")
        assert self.task is not None
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the collector did not stop"
        self.loop.close()


class Watched:
    """The collector's real IMAPClient connection, with some capabilities hidden and every FETCH counted by UID."""

    def __init__(self, imap: Any, hidden: frozenset[str], fetches: collections.Counter[tuple[int, bytes]]) -> None:
        self.imap, self.hidden, self.fetches = imap, hidden, fetches

    def __getattr__(self, name: str) -> Any:
        return getattr(self.imap, name)

    def has_capability(self, capability: str) -> bool:
        return capability.upper() not in self.hidden and bool(self.imap.has_capability(capability))

    def fetch(self, uids: list[int], items: list[bytes]) -> Any:
        for uid in uids:  # one count per FETCH command, keyed by what it asked for
            self.fetches[(int(uid), b" ".join(items))] += 1
        return self.imap.fetch(uids, items)


class WatchedCollector(Collector):
    hidden: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetches: collections.Counter[tuple[int, bytes]] = collections.Counter()

    def _connect(self) -> Any:
        return Watched(super()._connect(), self.hidden, self.fetches)


def _setup(
    tmp_path: Path, system: MailSystem, sink: Sink, hide: tuple[str, ...] = (), **account: object
) -> tuple[WatchedCollector, SqliteStore]:
    store = SqliteStore(tmp_path / "answers.sqlite3", days=90)
    ingestion = Ingestion(SECRET, {"ncs": [replies.OFFICER]}, store, sender=replies.TIPBOX)
    mailer = Mailer(SmtpServer("127.0.0.1", sink.port, "none", timeout=5))

    async def send(recipient: str, data: bytes) -> None:
        await mailer.send(Wire(replies.TIPBOX, (recipient,), data))

    values: dict[str, object] = {
        "host": "127.0.0.1", "port": system.imap_port, "security": "none", "username": ANSWERS,
        "password": PASSWORD, "poll_seconds": 600.0,
    }
    values.update(account)
    collector = WatchedCollector(ImapAccount(**values), ANSWERS, ingestion, send, min_backoff=0.05, max_backoff=0.2)  # type: ignore[arg-type]
    collector.hidden = frozenset(hide)
    return collector, store


def _answers(store: SqliteStore) -> list[str]:
    return [answer.text for answer in asyncio.run(answers_for(CODE, DerivationBound(SECRET), store))]


def _message_id(raw: bytes) -> str:
    return str(parse(raw)["Message-ID"])


def test_it_takes_only_answers_and_leaves_everything_else_exactly_as_it_was(
    mailbox: MailSystem, sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tip = replies.tip(PAIR.public)
    answer = replies.gmail(tip, "Cảm ơn anh. Anh thấy họ ở nhà nào?")
    others = {
        "unread, for someone else": (replies.unrelated("chi-huy@post.test"), ""),
        "read, for someone else": (replies.unrelated("doi-truong@post.test"), "\\Seen"),
        "deleted by someone else, not yet expunged": (replies.unrelated("chi-huy@post.test"), "\\Deleted"),
        "a longer address containing ours": (replies.unrelated("x" + ANSWERS), ""),
        "stray mail to the reply address": (replies.unrelated(ANSWERS, sender="spam@example.com"), ""),
        "a forged answer (not an officer)": (replies.gmail(tip, "Giả mạo", sender="ke-gia-mao@example.com"), ""),
    }
    for raw, flags in others.values():
        _append(mailbox, raw, flags)
    _append(mailbox, answer)
    before = _mailbox(mailbox)
    assert len(before) == len(others) + 1

    collector, store = _setup(tmp_path, mailbox, sink)
    logs.quiet_libraries()  # as create_app does: imapclient would log every IMAP line, answers included
    with caplog.at_level(logging.DEBUG), Running(collector):
        _wait(lambda: _message_id(answer) not in _mailbox(mailbox), "the answer to be expunged")
        _wait(lambda: collector.sweeps >= 1 and len(sink.handler.messages) == 1, "the confirmation")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Cảm ơn" not in logged and "Giả mạo" not in logged and replies.OFFICER not in logged
    assert "answers: message dropped: From is not one of the post's officers" in logged

    assert _answers(store) == ["Cảm ơn anh. Anh thấy họ ở nhà nào?"]
    after = _mailbox(mailbox)
    assert after == {key: value for key, value in before.items() if key != _message_id(answer)}
    # The officer's confirmation, in the answer's thread.
    (note,) = sink.handler.parsed()
    assert note["To"] == replies.OFFICER and note["In-Reply-To"] == _message_id(answer)
    assert sink.handler.envelopes == [(replies.TIPBOX, [replies.OFFICER])]


def test_an_answer_arriving_later_is_taken_at_once_through_idle(
    mailbox: MailSystem, sink: Sink, tmp_path: Path
) -> None:
    collector, store = _setup(tmp_path, mailbox, sink)  # polls only every ten minutes: IDLE must wake it
    with Running(collector):
        _wait(lambda: collector.sweeps >= 1, "the first sweep")
        answer = replies.outlook(replies.tip(PAIR.public), "Đã nhận, cảm ơn.")
        _append(mailbox, answer)
        _wait(lambda: _message_id(answer) not in _mailbox(mailbox), "the answer to be expunged")
    assert _answers(store) == ["Đã nhận, cảm ơn."]
    assert collector.sweeps == 2


@pytest.mark.parametrize("failure", ["server down", "login refused"])
def test_imap_failures_are_retried_with_backoff_one_line_each(
    failure: str, mail_system: MailSystem, sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    account = {"port": free_port()} if failure == "server down" else {"password": "wrong password"}
    collector, _ = _setup(tmp_path, mail_system, sink, **account)
    with caplog.at_level(logging.WARNING, logger="app.answers"), Running(collector):
        _wait(lambda: collector.failures >= 3, "three failures")
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("app.answers")]
    assert len(lines) >= 3
    shape = re.compile(r"answers: IMAP 127\.0\.0\.1:\d+ failed \(\w+: .*\); retrying in [\d.]+ s$")
    assert all(shape.match(line) for line in lines)
    assert ("LoginError" if failure == "login refused" else "ConnectionRefusedError") in lines[0]
    assert PASSWORD not in " ".join(lines) and "wrong password" not in " ".join(lines)
    delays = [float(line.rsplit(" ", 2)[1]) for line in lines]
    assert delays[:3] == [0.05, 0.1, 0.2] and set(delays[3:]) <= {0.2}  # doubling, up to the ceiling


def _uid(system: MailSystem, raw: bytes) -> int:
    with _imap(system) as imap:
        _, found = imap.uid("SEARCH", "HEADER", "Message-ID", _message_id(raw))
    (uid,) = found[0].split()
    return int(uid)


def _big_stray(to: str, size: int) -> bytes:
    message = parse(replies.unrelated(to, sender="spam@example.com"))
    message.add_attachment(b"\x00" * size, "application", "octet-stream", filename="big.bin")
    return message.as_bytes()


def test_a_big_stray_message_is_fetched_once_and_a_big_answer_does_not_stall_the_loop(
    mailbox: MailSystem, sink: Sink, tmp_path: Path
) -> None:
    stray = _big_stray("x" + ANSWERS, 15_000_000)  # 20 MB on the wire; the search's substring match finds it
    assert len(stray) > 20_000_000
    answer = replies.outlook(replies.tip(PAIR.public), "Đã nhận ảnh, cảm ơn.", attach=b"\x89PNG" * 3_000_000)
    _append(mailbox, stray)
    stray_uid = _uid(mailbox, stray)
    collector, store = _setup(tmp_path, mailbox, sink, poll_seconds=0.3)
    with Running(collector) as running:
        _append(mailbox, answer)
        _wait(lambda: _message_id(answer) not in _mailbox(mailbox), "the answer to be expunged")
        first = collector.sweeps
        _wait(lambda: collector.sweeps >= first + 3, "three more sweeps")
    assert _answers(store) == ["Đã nhận ảnh, cảm ơn."]
    touching = {item: count for (uid, item), count in collector.fetches.items() if uid == stray_uid}
    # Its size and at most its header's first 64 KiB (a message with no blank line is all header), once each: not on
    # later sweeps, and never the whole message.
    assert set(touching) <= {b"RFC822.SIZE", b"BODY.PEEK[HEADER]<0.65536>"} and set(touching.values()) == {1}, touching
    assert running.lag < 0.5, f"the event loop stalled for {running.lag:.2f} s"
    assert _mailbox(mailbox) == {_message_id(stray): ""}  # left exactly as it was


def test_a_poison_message_is_left_in_place_and_the_next_answer_is_still_taken(
    mailbox: MailSystem, sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    tip = replies.tip(PAIR.public)
    # A real thread id and a From that the email package's header parser fails on (AttributeError): ingestion now
    # drops it, so the failure is made to happen anyway, for whatever ingestion may miss next time.
    poison = re.sub(rb"(?m)^From: .*$", b"From: .<officer@post.test>", replies.gmail(tip, "Độc"), count=1)
    answer = replies.gmail(tip, "Vẫn nhận được.")
    _append(mailbox, poison)
    _append(mailbox, answer)
    collector, store = _setup(tmp_path, mailbox, sink, poll_seconds=0.3)
    read = collector.ingestion.read

    def choke(raw: bytes) -> object:
        if b".<officer@post.test>" in raw:
            raise AttributeError("'str' object has no attribute 'token_type'")
        return read(raw)

    monkeypatch.setattr(collector.ingestion, "read", choke)
    with caplog.at_level(logging.INFO, logger="app.answers"), Running(collector) as running:
        _wait(lambda: _message_id(answer) not in _mailbox(mailbox), "the answer to be expunged", timeout=15)
        first = collector.sweeps
        _wait(lambda: collector.sweeps >= first + 2, "two more sweeps")
        assert running.task is not None and not running.task.done()
    assert _answers(store) == ["Vẫn nhận được."]
    assert _mailbox(mailbox) == {_message_id(poison): ""}
    lines = [record.getMessage() for record in caplog.records if "AttributeError" in record.getMessage()]
    assert lines == ["answers: message left in the mailbox: cannot be read (AttributeError)"]


@contextmanager
def _trash(system: MailSystem) -> Iterator[None]:
    with _imap(system) as imap:
        imap.create("Trash")
    try:
        yield
    finally:
        with _imap(system) as imap:
            imap.delete("Trash")


def _folder(system: MailSystem, name: str) -> list[str]:
    with _imap(system) as imap:
        imap.select(name, readonly=True)
        _, found = imap.search(None, "ALL")
        ids = []
        for number in found[0].split():
            _, data = imap.fetch(number.decode(), "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            item = data[0]
            assert isinstance(item, tuple)
            ids.append(str(parse(item[1])["Message-ID"]))
    return ids


def test_without_uidplus_an_answer_is_moved_to_the_trash(mailbox: MailSystem, sink: Sink, tmp_path: Path) -> None:
    tip = replies.tip(PAIR.public)
    answer = replies.gmail(tip, "Chuyển vào thùng rác.")
    deleted = replies.gmail(tip, "Ai đó đã xoá thư này.")  # flagged \Deleted by another client: not taken
    with _trash(mailbox):
        _append(mailbox, deleted, "\\Deleted")
        _append(mailbox, answer)
        collector, store = _setup(tmp_path, mailbox, sink, hide=("UIDPLUS",), poll_seconds=0.3)
        with Running(collector):
            _wait(lambda: _message_id(answer) not in _mailbox(mailbox), "the answer to leave the INBOX", timeout=15)
        assert _folder(mailbox, "Trash") == [_message_id(answer)]
    assert _answers(store) == ["Chuyển vào thùng rác."]
    assert _mailbox(mailbox) == {_message_id(deleted): "\\Deleted"}


def test_without_uidplus_or_move_only_our_deleted_messages_are_expunged(
    mailbox: MailSystem, sink: Sink, tmp_path: Path
) -> None:
    tip = replies.tip(PAIR.public)
    answer = replies.gmail(tip, "Không có UIDPLUS.")
    others = replies.unrelated(ANSWERS)
    _append(mailbox, others, "\\Deleted")  # someone else's, waiting for their own expunge
    _append(mailbox, answer)
    answer_uid = _uid(mailbox, answer)
    collector, store = _setup(tmp_path, mailbox, sink, hide=("UIDPLUS", "MOVE"), poll_seconds=0.3)
    with Running(collector):
        _wait(lambda: _mailbox(mailbox).get(_message_id(answer)) == "\\Deleted", "the answer to be flagged")
        first = collector.sweeps
        _wait(lambda: collector.sweeps >= first + 3, "three more sweeps")
        # Not expunged while that would take someone else's message too; not taken again either.
        assert _mailbox(mailbox) == {_message_id(others): "\\Deleted", _message_id(answer): "\\Deleted"}
        assert collector.fetches[(answer_uid, b"BODY.PEEK[]")] == 1
        with _imap(mailbox) as imap:  # their client expunges (ours goes with theirs)
            imap.expunge()
        second = replies.gmail(tip, "Giờ thì xoá được.")
        _append(mailbox, second)  # no \\Deleted message but ours now: EXPUNGE removes only ours
        _wait(lambda: _mailbox(mailbox) == {}, "the second answer to be expunged", timeout=15)
    assert sorted(_answers(store)) == sorted(["Không có UIDPLUS.", "Giờ thì xoá được."])
