"""The time form tokens are dated and judged by: this machine's clock, or with Redis, Redis's clock.

A token is dated by the replica that served the form and judged by the one that receives it. Their clocks differ
(by seconds, or more on a VPS whose NTP stopped): with the receiver 8 s behind, a person who took 5 s was "too
fast" by 3 s and silently got a decoy. Replicas that share Redis share its clock instead: each measures how far its
own clock is from Redis's (`TIME`) at start-up and every few minutes, and adds that. The measurement is as close as
half a round trip to Redis, far under the minimum fill time. `app.guard` also never takes a token from the future
for a bot's, in case the measurement could not be made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Redis is imported only when it is configured
    import redis.asyncio

logger = logging.getLogger(__name__)

RESYNC_SECONDS = 300.0


class SharedClock:
    """`local` plus its offset from Redis's clock, measured by `sync` (0 until then, and without Redis)."""

    def __init__(self, local: Callable[[], float], pool: redis.asyncio.ConnectionPool | None = None) -> None:
        self._local = local
        self.offset = 0.0
        self._redis: redis.asyncio.Redis | None = None
        self._errors: tuple[type[Exception], ...] = (OSError, TimeoutError)
        if pool is not None:
            import redis.asyncio
            from redis.exceptions import RedisError

            self._redis = redis.asyncio.Redis(connection_pool=pool)
            self._errors = (RedisError, OSError, TimeoutError)
        self._next_sync = float("-inf")  # on time.monotonic(), whatever `local` says
        self.known = pool is None  # whether the offset was ever measured (always, without Redis: there is none)

    def __call__(self) -> float:
        return self._local() + self.offset

    async def sync(self) -> None:
        """Measure the offset from Redis's clock now; on failure keep the last one (and try again next time)."""
        if self._redis is None:
            return
        try:
            before = self._local()
            seconds, microseconds = await self._redis.time()
            after = self._local()
        except self._errors as exc:
            logger.warning("clock: Redis's time not read (%s); the last offset (%.3f s) stays", type(exc).__name__,
                           self.offset)
            self._next_sync = time.monotonic() + 10.0
            return
        self.offset = seconds + microseconds / 1e6 - (before + after) / 2
        self.known = True
        self._next_sync = time.monotonic() + RESYNC_SECONDS

    async def refresh(self) -> None:
        """`sync` when the last measurement is old (a clock may be stepped by NTP while tipbox runs)."""
        if self._redis is not None and time.monotonic() >= self._next_sync:
            await self.sync()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
