"""Moving windows in this process's memory: how many hits each key had in its last window."""

from __future__ import annotations

import bisect
from collections.abc import Callable

import limits

_SWEEP_SECONDS = 60.0


class MemoryWindows:
    """Moving windows in this process's memory: for each key, the times of the hits still inside its window.

    The same decisions as the `limits` library's moving window, without its memory storage's expiry task (two
    worker-thread hops for every hit) and on the guard's clock. Keys whose window has emptied are dropped by the
    next hit, at most `_SWEEP_SECONDS` later.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._hits: dict[str, tuple[float, list[float]]] = {}  # key: (window seconds, hit times, oldest first)
        self._next_sweep = 0.0

    def hit(self, item: limits.RateLimitItem, *identifiers: str) -> bool:
        """Count a hit for `identifiers` unless `item.amount` hits already fall within the last `item` window."""
        key, now, window = item.key_for(*identifiers), self._clock(), float(item.get_expiry())
        times = self._hits.setdefault(key, (window, []))[1]
        del times[: bisect.bisect_left(times, now - window)]  # a hit exactly one window ago still counts
        if len(times) >= item.amount:
            return False
        times.append(now)
        if now >= self._next_sweep:
            self._hits = {k: (w, t) for k, (w, t) in self._hits.items() if t and t[-1] >= now - w}
            self._next_sweep = now + _SWEEP_SECONDS
        return True

    def test(self, item: limits.RateLimitItem, *identifiers: str) -> bool:
        """Whether a hit for `identifiers` would be counted now (nothing is counted)."""
        key, now, window = item.key_for(*identifiers), self._clock(), float(item.get_expiry())
        times = self._hits.get(key, (window, []))[1]
        return len(times) - bisect.bisect_left(times, now - window) < item.amount

    def keys(self) -> list[str]:
        return list(self._hits)

