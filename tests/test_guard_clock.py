"""app/guard/clock.py: without Redis the machine's clock; with Redis unreachable, the last offset stays.

(Replicas whose clocks differ, sharing a real Redis, are in tests/test_redis_shared.py.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
import redis.asyncio

from app.guard import HONEYPOT_FIELD, Guard
from app.guard.clock import SharedClock
from app.settings import Settings
from tests.mailsink import Sink, free_port
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


def test_until_redis_time_is_read_nobody_is_judged_too_fast(
    sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    """Another replica's clock may be ahead by any amount until the shared clock is read: a person who took longer
    than the minimum could look "too fast" and be silently given a decoy. A quick form then goes through; without
    Redis (one clock) it is still a bot's."""
    unread = make_settings(sink, limits_storage=f"redis://127.0.0.1:{free_port()}/0", min_fill_seconds=3)
    alone = make_settings(sink, min_fill_seconds=3)

    async def screen(settings: Settings) -> str:
        clock = Clock()
        guard = Guard(settings, clock)
        await guard.start()  # Redis unreachable: its time is not read
        post = next(iter(settings.load_posts().values()))
        name, token = guard.form_token(post)
        clock.now += 1  # a second later: quicker than the minimum
        status = guard.screen(post, {name: token, HONEYPOT_FIELD: ""}).status
        await guard.close()
        return status

    assert asyncio.run(screen(unread)) == "ok"
    assert asyncio.run(screen(alone)) == "decoy"
