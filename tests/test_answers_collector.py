"""The IMAP collector against the real Dovecot of tests/mta.py: only the reply address's mail is touched."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

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
    """A collector running on its own event loop in a thread, as the service's lifespan runs it."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task[None] | None = None

    def __enter__(self) -> Running:
        import threading

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.task = self.loop.create_task(self.collector.run())
            with contextlib.suppress(asyncio.CancelledError):
                self.loop.run_until_complete(self.task)

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


def _setup(tmp_path: Path, system: MailSystem, sink: Sink, **account: object) -> tuple[Collector, SqliteStore]:
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
    collector = Collector(ImapAccount(**values), ANSWERS, ingestion, send, min_backoff=0.05, max_backoff=0.2)  # type: ignore[arg-type]
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
