"""Ingestion: a real answer is sealed and stored once and confirmed; forged and stray mail leave no trace."""

from __future__ import annotations

import asyncio
import email.policy
import logging
import random
from email.message import EmailMessage
from pathlib import Path

import pytest

from app.answers import keys, threads
from app.answers.bound import DerivationBound
from app.answers.ingest import Dropped, Ingestion, Kept, officer_allowed, parse
from app.answers.lookup import answers_for
from app.answers.store import SqliteStore
from tests import replies
from tests.replies import CODE, SECRET

ANSWER = "Cảm ơn anh. Anh thấy họ lúc mấy giờ?"
PAIR = keys.derive(CODE, SECRET)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "answers.sqlite3", days=90)


def _ingestion(store: SqliteStore, officers: list[str] | None = None) -> Ingestion:
    return Ingestion(SECRET, {"ncs": officers or [replies.OFFICER]}, store, sender=replies.TIPBOX)


def _read(store: SqliteStore) -> list[str]:
    return [answer.text for answer in asyncio.run(answers_for(CODE, DerivationBound(SECRET), store))]


def test_an_officers_reply_is_stored_once_and_confirmed_in_its_thread(store: SqliteStore) -> None:
    raw = replies.outlook(replies.tip(PAIR.public), ANSWER, attach=b"\x89PNG\r\n\x1a\n")
    kept = asyncio.run(_ingestion(store).take(raw))
    assert isinstance(kept, Kept) and not kept.repeat and kept.files == 1
    assert _read(store) == [ANSWER]

    assert kept.confirmation is not None
    recipient, data = kept.confirmation
    note, answer = parse(data), parse(raw)
    assert recipient == replies.OFFICER == note["To"] and note["From"] == replies.TIPBOX
    assert note["In-Reply-To"] == answer["Message-ID"]
    references = str(note["References"])
    assert str(answer["Message-ID"]) in references and str(answer["In-Reply-To"]) in references
    assert note["Subject"] == answer["Subject"]  # "Re: …": Gmail and Outlook thread on the subject too
    assert note["Auto-Submitted"] == "auto-replied"
    body = note.get_body(("plain",))
    assert body is not None
    text = str(body.get_content())
    assert ANSWER not in text and "Có hai người lạ" not in text  # the note quotes nothing
    assert len([line for line in text.splitlines() if line.strip()]) == 2  # stored; the file not passed on

    # Collected again (a crash between storing and expunging): kept once, not confirmed twice.
    again = asyncio.run(_ingestion(store).take(raw))
    assert isinstance(again, Kept) and again.repeat and again.confirmation is None
    assert _read(store) == [ANSWER]


def test_a_wildcard_domain_of_officers(store: SqliteStore) -> None:
    raw = replies.gmail(replies.tip(PAIR.public), ANSWER, sender="Trung úy Lò Văn Hùng <hung@bienphong.example.vn>")
    kept = asyncio.run(_ingestion(store, ["nacosa@example.vn", "*@bienphong.example.vn"]).take(raw))
    assert isinstance(kept, Kept)
    assert officer_allowed("HUNG@BienPhong.Example.VN", ["*@bienphong.example.vn"])
    assert not officer_allowed("hung@evil-bienphong.example.vn", ["*@bienphong.example.vn"])
    assert not officer_allowed("nacosa@example.vn.evil", ["nacosa@example.vn"])


def _without(raw: bytes, *names: str) -> bytes:
    message = parse(raw)
    for name in names:
        del message[name]
    return message.as_bytes(policy=email.policy.SMTP)


def _from(raw: bytes, sender: bytes) -> bytes:
    """`raw` with its From line replaced by `sender` as written (the email package would refuse to write it)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [b"From: " + sender if line.startswith(b"From:") else line for line in head.split(b"\r\n")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _forged_cases() -> dict[str, bytes]:
    tip = replies.tip(PAIR.public)
    tampered = replies.tip(PAIR.public)
    value = str(tampered["Message-ID"])
    del tampered["Message-ID"]
    tampered["Message-ID"] = value[:-20] + ("a" if value[-20] != "a" else "b") + value[-19:]
    foreign = EmailMessage(policy=email.policy.SMTP)
    for name in ("From", "To", "Subject"):
        foreign[name] = tip[name]
    foreign["Message-ID"] = "<CAnewsletter123@mail.example.com>"
    foreign.set_content("Bản tin tuần")
    foreign.add_alternative("<p>Bản tin tuần</p>", subtype="html")
    other_key = replies.tip(PAIR.public, secret=b"another deployment's secret key 0123456789")
    automatic = parse(replies.gmail(tip, ANSWER))
    automatic["Auto-Submitted"] = "auto-replied"
    return {
        "no thread reference": _without(replies.gmail(tip, ANSWER), "In-Reply-To", "References"),
        "tampered MAC": replies.gmail(tampered, ANSWER),
        "another deployment's id": replies.gmail(other_key, ANSWER),
        "a non-officer From": replies.gmail(tip, ANSWER, sender="ke-gia-mao@gmail.com"),
        "two From addresses": replies.gmail(tip, ANSWER, sender=f"{replies.OFFICER}, x@evil.test"),
        "a reply to a non-tipbox message": replies.gmail(foreign, ANSWER),
        "an unknown post": replies.gmail(replies.tip(PAIR.public, slug="apc"), ANSWER),
        "an auto-reply": automatic.as_bytes(policy=email.policy.SMTP),
        "only the quote": replies.gmail(tip, ""),
        # From values on which the email package's own parser raises (found by fuzzing), behind a real thread id.
        "a From the parser chokes on (1)": _from(replies.gmail(tip, ANSWER), b".<officer@post.test>"),
        "a From the parser chokes on (2)": _from(replies.gmail(tip, ANSWER), "é@[;>".encode()),
        "garbage": b"\x00\xff" * 100,
        "empty": b"",
    }


@pytest.mark.parametrize("case", list(_forged_cases()))
def test_forged_and_stray_mail_is_dropped_with_one_line_and_no_trace(
    case: str, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _forged_cases()[case]
    with caplog.at_level(logging.INFO, logger="app.answers"):
        outcome = asyncio.run(_ingestion(store).take(raw))
    assert isinstance(outcome, Dropped), outcome
    assert _read(store) == []
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("answers: message dropped: ")
    for piece in (ANSWER, "ke-gia-mao", replies.OFFICER, CODE, "Có hai", "ncs", "apc", "CAnewsletter"):
        assert piece not in lines[0]


def test_the_thread_of_a_follow_up_is_recognised(store: SqliteStore) -> None:
    # Outlook may reference only the parent: a follow-up's own id carries the key too.
    follow_up = replies.tip(PAIR.public)
    del follow_up["Message-ID"]
    follow_up["Message-ID"] = threads.message_id("ncs", PAIR.public, SECRET, "bienphong.test", follow_up=True)
    raw = _without(replies.gmail(follow_up, ANSWER), "References")
    assert isinstance(asyncio.run(_ingestion(store).take(raw)), Kept)
    assert _read(store) == [ANSWER]


def test_crafted_headers_behind_a_real_thread_id_never_raise(store: SqliteStore) -> None:
    """Whoever holds one tip's Message-ID (a forwarded tip) can craft the rest: every message ends as an outcome,
    never as an exception that would stop the collector or make the MTA retry until it bounces."""
    thread = threads.message_id("ncs", PAIR.public, SECRET, "bienphong.test")
    pieces = ['"', "<", ">", "(", ")", "\\", ",", ";", ":", "@", ".", " ", "a", "=?utf-8?q?", "?=", "=0A", "[", "]",
              "\t", "bienphong.test", "é", "=?", "?", "\r\n "]  # fmt: skip
    chance = random.Random(1)

    def junk(most: int = 12) -> str:
        return "".join(chance.choice(pieces) for _ in range(chance.randint(0, most)))

    ingestion = _ingestion(store, ["*@bienphong.test"])
    for _ in range(400):
        sender = chance.choice([replies.OFFICER, junk(), junk() + " <o@bienphong.test>", "o@bienphong.test" + junk(4)])
        head = (
            f"From: {sender}\r\nTo: {junk()}answers@bienphong.test\r\nIn-Reply-To: {junk(4)}{thread}{junk(4)}\r\n"
            f"References: {junk()}\r\nMessage-ID: {junk()}\r\nSubject: {junk()}\r\n"
            f"Content-Type: text/plain; charset={chance.choice(['utf-8', junk(5)])}\r\n"
        )
        raw = (head + "\r\nCảm ơn " + junk() + "\r\n").encode("utf-8", "surrogateescape")
        assert isinstance(asyncio.run(ingestion.take(raw)), Kept | Dropped)


@pytest.mark.parametrize(
    "sender", [b"a@evil.test\r\nFrom: officer@post.test", b"<@post.test>", b"@post.test"],
    ids=["two From headers", "no local part", "bare domain"],
)
def test_a_whole_domain_of_officers_takes_one_real_address_only(store: SqliteStore, sender: bytes) -> None:
    """With `*@post.test` allowed, a From that is not one address with a local part is nobody's."""
    raw = _from(replies.gmail(replies.tip(PAIR.public), ANSWER), sender)
    assert isinstance(asyncio.run(_ingestion(store, ["*@post.test"]).take(raw)), Dropped)
    assert _read(store) == []


def test_two_answers_in_the_same_second_read_newest_first(store: SqliteStore) -> None:
    tip = replies.tip(PAIR.public)
    for at, text in ((1_800_000_000.2, "Anh thấy họ lúc mấy giờ?"), (1_800_000_000.7, "Thêm nữa: họ đi mấy người?")):
        ingestion = Ingestion(SECRET, {"ncs": [replies.OFFICER]}, store, sender=replies.TIPBOX, clock=lambda at=at: at)
        assert isinstance(asyncio.run(ingestion.take(replies.gmail(tip, text))), Kept)
    assert _read(store) == ["Thêm nữa: họ đi mấy người?", "Anh thấy họ lúc mấy giờ?"]
