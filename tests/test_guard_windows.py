"""app/guard/windows.py: moving windows in memory decide as the `limits` library does, on the guard's clock."""

from __future__ import annotations

import asyncio
import random
import time

import limits
import pytest

from app.guard.windows import MemoryWindows
from tests.test_guard import Clock


def test_the_memory_window_counts_a_moving_hour_and_forgets_emptied_keys() -> None:
    clock = Clock()
    windows = MemoryWindows(clock)
    three = limits.parse("3/hour")
    assert [windows.hit(three, "source", "k") for _ in range(4)] == [True, True, True, False]
    assert windows.hit(three, "source", "other")  # each key counts on its own
    clock.now += 3600
    assert not windows.hit(three, "source", "k")  # hits exactly an hour old still count
    clock.now += 0.001
    assert [windows.hit(three, "source", "k") for _ in range(4)] == [True, True, True, False]
    clock.now += 3 * 3600
    assert windows.hit(limits.parse("1/minute"), "post", "ncs")  # a later hit drops the emptied windows
    assert windows.keys() == ["LIMITER/post/ncs/1/1/minute"]


def test_the_memory_window_decides_as_the_limits_library_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from limits.aio.storage import MemoryStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    clock = Clock()
    monkeypatch.setattr(time, "time", clock)  # the library reads the wall clock
    ours, theirs = MemoryWindows(clock), MovingWindowRateLimiter(MemoryStorage())
    items = limits.parse_many("3/minute;5/hour")
    rng = random.Random(8)

    async def run() -> list[tuple[bool, bool]]:
        decisions = []
        for _ in range(600):
            clock.now += rng.choice([0.0, rng.uniform(0, 5), rng.uniform(0, 90), rng.uniform(0, 900)])
            item, name = rng.choice(items), rng.choice(["a", "b"])
            decisions.append((ours.hit(item, "source", name), await theirs.hit(item, "source", name)))
        return decisions

    decisions = asyncio.run(run())
    assert [mine for mine, _ in decisions] == [library for _, library in decisions]
    assert 0 < sum(mine for mine, _ in decisions) < len(decisions)
