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

    async def hit(self, post: str, source: str | None) -> bool:
        """Count one tip against the source's and the post's limits; False once either is reached."""
        checks = [(item, "source", source) for item in self._per_source] if source is not None else []
        checks += [(item, "post", post) for item in self._per_post]
        for item, kind, name in checks:
            if self.memory is not None:
                allowed = self.memory.hit(item, kind, name)
            else:
                assert self._redis is not None
                allowed = await self._redis.hit(item, kind, name)
            if not allowed:
                return False
        return True

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

