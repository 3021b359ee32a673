"""Reading answers with a code: newest first, the time each came, and nothing for another code."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.answers import keys
from app.answers.bound import DerivationBound
from app.answers.lookup import answers_for
from app.answers.store import SqliteStore
from tests.replies import CODE, SECRET


def _seal(pair: keys.KeyPair, at: int, text: str) -> bytes:
    return keys.seal(pair.public, json.dumps({"at": at, "text": text}).encode())


def test_answers_come_newest_first_with_their_time(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteStore(tmp_path / "a.sqlite3", days=90)
    pair, other = keys.derive(CODE, SECRET), keys.derive("4821 0937 5512 9647", SECRET)
    lookup = keys.lookup_id(pair.public)

    async def scenario() -> None:
        now = int(datetime.now(UTC).timestamp())
        await store.put(lookup, _seal(pair, now - 7200, "Nhà nào?"), b"1")
        await store.put(lookup, _seal(pair, now - 60, "Cảm ơn, đã xử lý."), b"2")
        await store.put(lookup, _seal(other, now, "sealed to another code"), b"3")  # misfiled: cannot be opened
        await store.put(keys.lookup_id(other.public), _seal(other, now, "another code's answer"), b"4")
        answers = await answers_for(CODE, DerivationBound(SECRET), store)
        assert [answer.text for answer in answers] == ["Cảm ơn, đã xử lý.", "Nhà nào?"]
        assert answers[0].at == datetime.fromtimestamp(now - 60, UTC)
        assert await answers_for("1111 1111 1111 1118", DerivationBound(SECRET), store) == []

    asyncio.run(scenario())
    assert [record.getMessage() for record in caplog.records] == ["answers: a stored answer could not be opened"]
