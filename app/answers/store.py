"""The answers store: sealed answers filed under a hash of a public key, with the day they came; nothing else.

`sqlite:///path` (default, one file, stdlib sqlite3 in a worker thread) or `redis://…` (several replicas). Each
row is {lookup id, ciphertext, day}; a keyed hash of the answer's own Message-ID makes storing idempotent, so a
reply collected twice (a crash between storing and expunging) is kept once. Nothing in it says who, which post, or
what: tests/test_answers_store.py reads the raw bytes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing as _closing
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, cast
from urllib.parse import urlsplit

_DAY = 86400
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    lookup BLOB NOT NULL,
    sealed BLOB NOT NULL,
    day INTEGER NOT NULL,
    dedupe BLOB NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS answers_lookup ON answers (lookup);
CREATE INDEX IF NOT EXISTS answers_day ON answers (day);
"""
# Atomically: mark the answer seen and file it, or do neither (it was stored before).
_REDIS_PUT = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""


class StoreUnavailable(Exception):
    """The store cannot be read or written now (a temporary failure: retry later)."""


@dataclass(frozen=True, slots=True)
class Stored:
    """One sealed answer and the day (days since 1970, UTC) it was stored."""

    day: int
    sealed: bytes


class Store(Protocol):
    async def put(self, lookup: bytes, sealed: bytes, dedupe: bytes) -> bool:
        """File `sealed` under `lookup`; False if an answer with this `dedupe` key was stored before."""

    async def get(self, lookup: bytes) -> list[Stored]:
        """The answers filed under `lookup` and not yet expired, in any order."""

    async def purge(self) -> int:
        """Delete answers older than the retention; return how many went."""

    async def close(self) -> None: ...


_T = TypeVar("_T")


def _oldest(now: float, days: int) -> int:
    """The first day still kept: answers from before it are deleted (and never shown)."""
    return today(now) - days


async def _in_thread(function: Callable[..., _T], *args: object) -> _T:
    try:
        return await asyncio.to_thread(function, *args)
    except (sqlite3.Error, OSError) as exc:
        # A locked, full or unreadable file: the message names the kind of failure, never a row.
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


def today(now: float) -> int:
    """Days since 1970 (UTC): all the store knows of when an answer came."""
    return int(now // _DAY)


class SqliteStore:
    """One SQLite file; each call opens its own connection in a worker thread (the event loop never waits)."""

    def __init__(self, path: Path, days: int, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.days = days
        self.clock = clock
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        # Deleted rows are overwritten, not left in free pages of the file.
        connection.execute("PRAGMA secure_delete = ON")
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection.executescript(_SCHEMA)
            self.path.chmod(0o600)
            self._ready = True
        return connection

    def _put(self, lookup: bytes, sealed: bytes, dedupe: bytes) -> bool:
        with _closing(self._connect()) as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO answers (lookup, sealed, day, dedupe) VALUES (?, ?, ?, ?)",
                (lookup, sealed, today(self.clock()), dedupe),
            )
            return cursor.rowcount == 1

    def _get(self, lookup: bytes) -> list[Stored]:
        with _closing(self._connect()) as db:
            query = "SELECT day, sealed FROM answers WHERE lookup = ? AND day >= ?"
            rows = db.execute(query, (lookup, _oldest(self.clock(), self.days))).fetchall()
        return [Stored(int(day), bytes(sealed)) for day, sealed in rows]

    def _purge(self) -> int:
        with _closing(self._connect()) as db:
            return int(db.execute("DELETE FROM answers WHERE day < ?", (_oldest(self.clock(), self.days),)).rowcount)

    async def put(self, lookup: bytes, sealed: bytes, dedupe: bytes) -> bool:
        return await _in_thread(self._put, lookup, sealed, dedupe)

    async def get(self, lookup: bytes) -> list[Stored]:
        return await _in_thread(self._get, lookup)

    async def purge(self) -> int:
        return await _in_thread(self._purge)

    async def close(self) -> None:
        return None


class RedisStore:
    """A sorted set per lookup id (score: the day), each expiring `days` after its last answer."""

    def __init__(self, url: str, days: int, clock: Callable[[], float] = time.time) -> None:
        from redis.asyncio import Redis  # only a deployment with several replicas loads the client

        self.days = days
        self.clock = clock
        self._redis = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._put_script = self._redis.register_script(_REDIS_PUT)

    async def put(self, lookup: bytes, sealed: bytes, dedupe: bytes) -> bool:
        keys = [b"tipbox:answers:" + lookup.hex().encode(), b"tipbox:answer-seen:" + dedupe.hex().encode()]
        try:
            added = await self._put_script(keys=keys, args=[sealed, today(self.clock()), self.days * _DAY])
        except Exception as exc:  # redis-py's errors, OSError, timeouts: all mean "not now"
            raise StoreUnavailable(type(exc).__name__) from exc
        return bool(added)

    async def get(self, lookup: bytes) -> list[Stored]:
        key = b"tipbox:answers:" + lookup.hex().encode()
        try:
            rows = cast(
                "list[tuple[bytes, float]]",
                await self._redis.zrangebyscore(key, _oldest(self.clock(), self.days), "+inf", withscores=True),
            )
        except Exception as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return [Stored(int(score), bytes(member)) for member, score in rows]

    async def purge(self) -> int:
        removed = 0
        try:
            async for key in self._redis.scan_iter(match=b"tipbox:answers:*", count=500):
                removed += int(await self._redis.zremrangebyscore(key, "-inf", f"({_oldest(self.clock(), self.days)}"))
        except Exception as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return removed

    async def close(self) -> None:
        await self._redis.aclose()


def open_store(url: str, days: int, clock: Callable[[], float] = time.time) -> Store:
    """The store a `TIPBOX_ANSWERS_STORE` URL names: `sqlite:///relative.db`, `sqlite:////absolute.db`, `redis://`."""
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss"):
        return RedisStore(url, days, clock)
    if scheme == "sqlite" and url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return SqliteStore(Path(url[len("sqlite:///") :]), days, clock)
    raise ValueError(f"{url!r} is neither sqlite:///path nor redis://host:port/db")
