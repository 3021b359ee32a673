"""The answers store (SQLite file, Redis): idempotent, expiring, and nothing in it says who, which post or what."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from app.answers import keys
from app.answers.bound import DerivationBound
from app.answers.ingest import Ingestion, Kept
from app.answers.lookup import answers_for
from app.answers.store import RedisStore, SqliteStore, Store, StoreUnavailable, open_store
from tests import replies
from tests.replies import CODE, SECRET
from tests.test_redis_shared import redis_url

__all__ = ["redis_url"]  # the module fixture, collected from here

T = TypeVar("T")
DAY = 86400.0
SLUG = "nacosa-bienphong"  # long enough that random ciphertext cannot contain it by chance
ANSWER = "Cảm ơn anh Pờ Sào Mìn. Nhà số 17 cạnh trường học?"


class Clock:
    def __init__(self, now: float = 1_715_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def test_sqlite_put_get_repeat_and_expiry(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteStore(tmp_path / "answers.sqlite3", days=90, clock=clock)
    assert run(store.put(b"L" * 16, b"sealed-1", b"D1")) is True
    assert run(store.put(b"L" * 16, b"sealed-1-again", b"D1")) is False  # the same answer collected twice
    clock.now += 30 * DAY
    assert run(store.put(b"L" * 16, b"sealed-2", b"D2")) is True
    assert run(store.put(b"M" * 16, b"other", b"D3")) is True
    assert sorted(row.sealed for row in run(store.get(b"L" * 16))) == [b"sealed-1", b"sealed-2"]
    clock.now += 70 * DAY  # the first is 100 days old, the second 70
    assert [row.sealed for row in run(store.get(b"L" * 16))] == [b"sealed-2"]
    assert run(store.purge()) == 1
    assert (tmp_path / "answers.sqlite3").stat().st_mode & 0o777 == 0o600


def test_an_unwritable_store_is_a_temporary_failure(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = SqliteStore(tmp_path / "file" / "answers.sqlite3", days=90)
    with pytest.raises(StoreUnavailable):
        run(store.put(b"L" * 16, b"x", b"D"))


def test_store_urls() -> None:
    assert isinstance(open_store("sqlite:///./answers.sqlite3", 90), SqliteStore)
    assert open_store("sqlite:////var/lib/tipbox/a.db", 90).path == Path("/var/lib/tipbox/a.db")  # type: ignore[attr-defined]
    assert isinstance(open_store("redis://127.0.0.1:6379/0", 90), RedisStore)
    for bad in ("sqlite://", "postgres://x", "answers.db"):
        with pytest.raises(ValueError, match="neither"):
            open_store(bad, 90)


async def _answer_through(store: Store) -> Kept:
    pair = keys.derive(CODE, SECRET)
    ingestion = Ingestion(SECRET, {SLUG: [replies.OFFICER]}, store, sender=replies.TIPBOX)
    raw = replies.gmail(replies.tip(pair.public, slug=SLUG), ANSWER)
    kept = await ingestion.take(raw)
    assert isinstance(kept, Kept)
    assert [answer.text for answer in await answers_for(CODE, DerivationBound(SECRET), store)] == [ANSWER]
    return kept


def _assert_says_nothing(blob: bytes) -> None:
    secrets_in_it = {
        "answer": ANSWER.encode(), "answer (a word)": "Pờ Sào Mìn".encode(),
        "answer (utf-16)": ANSWER.encode("utf-16-le"),
        "code": CODE.encode(), "code digits": CODE.replace(" ", "").encode(), "slug": SLUG.encode(),
        "officer": replies.OFFICER.encode(), "tip": "Có hai người lạ".encode(), "gmail id": b"mail.gmail.com",
    }
    assert [name for name, value in secrets_in_it.items() if value in blob] == []


def test_the_sqlite_files_raw_bytes_say_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "answers.sqlite3", days=90)
    run(_answer_through(store))
    files = sorted(tmp_path.iterdir())
    assert files and all(path.name.startswith("answers.sqlite3") for path in files)
    for path in files:
        _assert_says_nothing(path.read_bytes())


def test_the_redis_dump_of_every_key_says_nothing(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()

    async def scenario() -> None:
        store = RedisStore(redis_url, days=90)
        try:
            await _answer_through(store)
            assert await store.put(b"L" * 16, b"x", keys.keyed_hash(SECRET, "answer-dedupe", b"<a@b>")) is True
            assert await store.put(b"L" * 16, b"y", keys.keyed_hash(SECRET, "answer-dedupe", b"<a@b>")) is False
        finally:
            await store.close()

    run(scenario())
    names = list(client.scan_iter("*"))
    assert len(names) == 4  # two answers' sets, two "seen" marks
    for name in names:
        _assert_says_nothing(name)
        dumped = client.dump(name)
        assert isinstance(dumped, bytes)
        _assert_says_nothing(dumped)
        assert 0 < client.ttl(name) <= 90 * 86400  # Redis deletes them itself after the retention
    client.close()


def test_redis_down_is_a_temporary_failure() -> None:
    from tests.mailsink import free_port

    async def scenario() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", days=90)
        try:
            with pytest.raises(StoreUnavailable):
                await store.put(b"L" * 16, b"x", b"D")
            with pytest.raises(StoreUnavailable):
                await store.get(b"L" * 16)
        finally:
            await store.close()

    run(scenario())


def test_redis_expiry(redis_url: str) -> None:
    clock = Clock()

    async def scenario() -> None:
        store = RedisStore(redis_url, days=90, clock=clock)
        try:
            await store.put(b"E" * 16, b"old", os.urandom(16))
            clock.now += 50 * DAY
            await store.put(b"E" * 16, b"new", os.urandom(16))
            clock.now += 50 * DAY
            assert [row.sealed for row in await store.get(b"E" * 16)] == [b"new"]
            assert await store.purge() == 1
        finally:
            await store.close()

    run(scenario())
