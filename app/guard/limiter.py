"""Rate limits per source and per post: moving windows in memory (`windows`) or in Redis (the `limits` library)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import limits

from app.guard.store import PREFIX
from app.guard.windows import MemoryWindows
from app.settings import Settings

if TYPE_CHECKING:  # Redis is imported only when it is configured
    import redis.asyncio
    from limits.aio.strategies import MovingWindowRateLimiter


class Limiter:
    """Moving-window limits per source and per post, in this process's memory or in Redis (`limits` library)."""

    def __init__(
        self, settings: Settings, pool: redis.asyncio.ConnectionPool | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.memory: MemoryWindows | None = None
        self._redis: MovingWindowRateLimiter | None = None
        if pool is None:
            self.memory = MemoryWindows(clock)
        else:
            from limits.aio.storage import RedisStorage
            from limits.aio.strategies import MovingWindowRateLimiter

            options: dict[str, Any] = {"connection_pool": pool}
            storage = RedisStorage(
                "async+" + settings.limits_storage, implementation="redispy", key_prefix=PREFIX + "limits",
                wrap_exceptions=True, **options,
            )
            self._redis = MovingWindowRateLimiter(storage)
        self._per_post = limits.parse_many(settings.post_rate)
        self._per_source = limits.parse_many(settings.source_rate) if settings.source_rate else []

    async def admit(self, post: str, source: str | None) -> bool:
        """Count an attempt against the source's limits, and check (without counting) that the post's limits have
        room; False once either is reached. A tip that is then refused (a file that cannot be cleaned, the mail
        server) has spent the source's count, not the post's: the post counts when it `spend`s."""
        for item in self._per_source if source is not None else []:
            if not await self._hit(item, "source", source or ""):
                return False
        for item in self._per_post:
            allowed = self.memory.test(item, "post", post) if self.memory is not None else (
                await self._moving().test(item, "post", post)
            )
            if not allowed:
                return False
        return True

    async def spend(self, post: str) -> bool:
        """Count a tip about to be handed to the mail server against the post's limits; False if one was reached
        since `admit` (other tips were sent meanwhile)."""
        for item in self._per_post:
            if not await self._hit(item, "post", post):
                return False
        return True

    async def _hit(self, item: limits.RateLimitItem, kind: str, name: str) -> bool:
        if self.memory is not None:
            return self.memory.hit(item, kind, name)
        return await self._moving().hit(item, kind, name)

    def _moving(self) -> MovingWindowRateLimiter:
        assert self._redis is not None
        return self._redis

    async def hit_lookup(self, source: str | None) -> bool:
        """Count one answers lookup against the source's limit (its own count, the tips' rate); False once reached."""
        for item in self._per_source if source is not None else []:
            if self.memory is not None:
                allowed = self.memory.hit(item, "lookup", str(source))
            else:
                assert self._redis is not None
                allowed = await self._redis.hit(item, "lookup", str(source))
            if not allowed:
                return False
        return True

    def keys(self) -> list[str]:
        """The memory windows' keys (Redis keys are listed with the store's)."""
        return self.memory.keys() if self.memory is not None else []

