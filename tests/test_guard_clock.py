"""app/guard/clock.py: without Redis the machine's clock; with Redis unreachable, the last offset stays.

(Replicas whose clocks differ, sharing a real Redis, are in tests/test_redis_shared.py.)"""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio

from app.guard.clock import SharedClock
from tests.mailsink import free_port
from tests.test_guard import START, Clock


def test_without_redis_it_is_the_machines_clock() -> None:
    clock = SharedClock(Clock())
    asyncio.run(clock.sync())
    assert clock() == START and clock.offset == 0


def test_an_unreachable_redis_leaves_the_clock_as_it_was(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> float:
        pool = redis.asyncio.ConnectionPool.from_url(
            f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1.0, socket_connect_timeout=1.0
        )
        clock = SharedClock(Clock(), pool)
        await clock.sync()
        await clock.refresh()  # not due again yet: no second attempt, no second line
        await clock.close()
        await pool.aclose()
        return clock()

    caplog.set_level(logging.WARNING)
    assert asyncio.run(run()) == START
    assert [record.getMessage() for record in caplog.records] == [
        "clock: Redis's time not read (ConnectionError); the last offset (0.000 s) stays"
    ]
