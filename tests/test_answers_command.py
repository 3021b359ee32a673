"""`tipbox answer`'s exit codes as the MTA reads them: 0 stored or dropped (no bounce), 75 try again later."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from app.answers import keys
from app.answers.command import EX_OK, EX_TEMPFAIL, answer, read_message
from app.answers.ingest import MAX_MESSAGE_BYTES, Ingestion
from app.answers.store import SqliteStore
from tests import replies
from tests.replies import CODE, SECRET


def _ingestion(path: Path) -> Ingestion:
    return Ingestion(SECRET, {"ncs": [replies.OFFICER]}, SqliteStore(path, days=90), sender=replies.TIPBOX)


def test_stored_dropped_and_store_down(tmp_path: Path) -> None:
    raw = replies.thunderbird(replies.tip(keys.derive(CODE, SECRET).public), "Dạ, cảm ơn.")
    sent: list[tuple[str, bytes]] = []

    async def send(recipient: str, data: bytes) -> None:
        sent.append((recipient, data))

    ingestion = _ingestion(tmp_path / "a.sqlite3")
    assert asyncio.run(answer(raw, ingestion, send)) == EX_OK
    assert [recipient for recipient, _ in sent] == [replies.OFFICER]
    assert asyncio.run(answer(raw, ingestion, send)) == EX_OK and len(sent) == 1  # stored before: no second note
    assert asyncio.run(answer(replies.unrelated("answers@post.test"), ingestion, send)) == EX_OK and len(sent) == 1

    (tmp_path / "file").write_text("")
    assert asyncio.run(answer(raw, _ingestion(tmp_path / "file" / "a.sqlite3"), send)) == EX_TEMPFAIL


def test_a_lost_confirmation_does_not_make_the_mta_retry(tmp_path: Path) -> None:
    async def refuse(recipient: str, data: bytes) -> None:
        raise OSError("connection refused")

    raw = replies.gmail(replies.tip(keys.derive(CODE, SECRET).public), "Dạ.")
    assert asyncio.run(answer(raw, _ingestion(tmp_path / "a.sqlite3"), refuse)) == EX_OK


def test_standard_input_is_read_up_to_one_byte_past_the_limit() -> None:
    assert read_message(io.BytesIO(b"x" * (MAX_MESSAGE_BYTES + 10))) == b"x" * (MAX_MESSAGE_BYTES + 1)


def test_a_failure_that_would_repeat_is_dropped_and_one_of_the_system_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retrying what fails the same way every time ends in a bounce to the envelope's sender (backscatter)."""
    raw = replies.thunderbird(replies.tip(keys.derive(CODE, SECRET).public), "Dạ, cảm ơn.")
    ingestion = _ingestion(tmp_path / "a.sqlite3")
    failures: list[Exception] = [RuntimeError("a bug"), OSError("disk")]

    async def take(raw: bytes) -> None:
        raise failures.pop(0)

    monkeypatch.setattr(ingestion, "take", take)
    assert asyncio.run(answer(raw, ingestion, None)) == EX_OK
    assert asyncio.run(answer(raw, ingestion, None)) == EX_TEMPFAIL
