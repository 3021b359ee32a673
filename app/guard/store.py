"""Short-lived values the replicas share: a claimed form nonce, with a digest of what was sent and its receipt.

In this process's memory (`MemoryStore`), or in Redis (`RedisStore`, with `TIPBOX_LIMITS_STORAGE=redis://...`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # Redis is imported only when it is configured
    import redis.asyncio

PREFIX = "tipbox:"


class Store(Protocol):
    """Short-lived string values shared by the replicas: claimed nonces, with a digest and a receipt."""

    async def claim(self, key: str, value: str, ttl: float) -> str | None:
        """Set `key` if absent (None); otherwise leave it and return its value."""

    async def put(self, key: str, value: str, ttl: float) -> None: ...

    async def delete(self, *keys: str) -> None: ...

    async def keys(self) -> list[str]:
        """Every key held, for inspection (tests; what a memory dump would show)."""

    async def close(self) -> None: ...


class MemoryStore:
    """One process's store; expired entries are swept as new ones arrive."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._items: dict[str, tuple[str, float]] = {}
        self._writes = 0

    async def claim(self, key: str, value: str, ttl: float) -> str | None:
        now = self._clock()
        current = self._items.get(key)
        if current is not None and current[1] > now:
            return current[0]
        await self.put(key, value, ttl)
        return None

    async def put(self, key: str, value: str, ttl: float) -> None:
        now = self._clock()
        self._writes += 1
        if self._writes % 256 == 0:
            self._items = {k: v for k, v in self._items.items() if v[1] > now}
        self._items[key] = (value, now + ttl)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._items.pop(key, None)

    async def keys(self) -> list[str]:
        return list(self._items)

    async def close(self) -> None:
        self._items.clear()


# Get-or-set in one step, so two replicas cannot both claim the same key (any Redis version).
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""


class RedisStore:
    """The store in Redis, on the connection pool the rate limiter shares."""

    def __init__(self, pool: redis.asyncio.ConnectionPool) -> None:
        import redis.asyncio

        self._redis = redis.asyncio.Redis(connection_pool=pool)
        self._claim = self._redis.register_script(_CLAIM)

    async def claim(self, key: str, value: str, ttl: float) -> str | None:
        current = await self._claim(keys=[PREFIX + key], args=[value, max(1, int(ttl * 1000))])
        return current.decode() if isinstance(current, bytes) else None

    async def put(self, key: str, value: str, ttl: float) -> None:
        await self._redis.set(PREFIX + key, value, px=max(1, int(ttl * 1000)))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._redis.delete(*(PREFIX + key for key in keys))

    async def keys(self) -> list[str]:
        return [key.decode() async for key in self._redis.scan_iter(match=PREFIX + "*")]

    async def close(self) -> None:
        await self._redis.aclose()

