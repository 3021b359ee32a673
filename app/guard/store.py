"""Short-lived values the replicas share: a claimed form nonce, with a digest of what was sent and its receipt.

In this process's memory (`MemoryStore`), or in Redis (`RedisStore`, with `TIPBOX_LIMITS_STORAGE=redis://...`).
A claim may be `kept` among a bounded number of its kind (a decoy's, which a bot can make as fast as it likes):
past that number the oldest is forgotten first, so what a flood can make the store hold has a ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # Redis is imported only when it is configured
    import redis.asyncio

PREFIX = "tipbox:"
BOUNDED = "bounded"  # the key of the list of claims kept among a bounded number, oldest first


class Store(Protocol):
    """Short-lived string values shared by the replicas: claimed nonces, with a digest and a receipt."""

    async def claim(self, key: str, value: str, ttl: float, *, keep: int | None = None) -> str | None:
        """Set `key` if absent (None); otherwise leave it and return its value. With `keep`, at most that many keys
        claimed with it are held: the oldest is dropped first (if it still holds the value it was claimed with)."""

    async def swap(self, key: str, old: str, new: str, ttl: float) -> bool:
        """Set `key` to `new` if it holds `old`; False, and nothing changed, otherwise."""

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
        self._kept: dict[str, str] = {}  # claimed with `keep`, oldest first: key -> the value it was claimed with
        self._writes = 0

    async def claim(self, key: str, value: str, ttl: float, *, keep: int | None = None) -> str | None:
        now = self._clock()
        current = self._items.get(key)
        if current is not None and current[1] > now:
            return current[0]
        await self.put(key, value, ttl)
        if keep is not None:
            self._kept.pop(key, None)
            self._kept[key] = value
            while len(self._kept) > keep:
                oldest = next(iter(self._kept))
                if self._items.get(oldest, ("",))[0] == self._kept.pop(oldest):
                    del self._items[oldest]
        return None

    async def swap(self, key: str, old: str, new: str, ttl: float) -> bool:
        current = self._items.get(key)
        if current is None or current[1] <= self._clock() or current[0] != old:
            return False
        await self.put(key, new, ttl)
        return True

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
        self._kept.clear()


# Get-or-set in one step, so two replicas cannot both claim the same key (any Redis version).
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
# The same, and the key noted in a list (KEYS[2]) of at most ARGV[3] claims, the oldest dropped first.
_CLAIM_KEPT = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('RPUSH', KEYS[2], KEYS[1] .. '\\n' .. ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
while redis.call('LLEN', KEYS[2]) > tonumber(ARGV[3]) do
  local oldest = redis.call('LPOP', KEYS[2])
  local cut = string.find(oldest, '\\n', 1, true)
  local key = string.sub(oldest, 1, cut - 1)
  if redis.call('GET', key) == string.sub(oldest, cut + 1) then redis.call('DEL', key) end
end
return false
"""
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


class RedisStore:
    """The store in Redis, on the connection pool the rate limiter shares."""

    def __init__(self, pool: redis.asyncio.ConnectionPool) -> None:
        import redis.asyncio

        self._redis = redis.asyncio.Redis(connection_pool=pool)
        self._claim = self._redis.register_script(_CLAIM)
        self._claim_kept = self._redis.register_script(_CLAIM_KEPT)
        self._swap = self._redis.register_script(_SWAP)

    async def claim(self, key: str, value: str, ttl: float, *, keep: int | None = None) -> str | None:
        milliseconds = max(1, int(ttl * 1000))
        if keep is None:
            current = await self._claim(keys=[PREFIX + key], args=[value, milliseconds])
        else:
            current = await self._claim_kept(keys=[PREFIX + key, PREFIX + BOUNDED], args=[value, milliseconds, keep])
        return current.decode() if isinstance(current, bytes) else None

    async def swap(self, key: str, old: str, new: str, ttl: float) -> bool:
        return bool(await self._swap(keys=[PREFIX + key], args=[old, new, max(1, int(ttl * 1000))]))

    async def put(self, key: str, value: str, ttl: float) -> None:
        await self._redis.set(PREFIX + key, value, px=max(1, int(ttl * 1000)))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._redis.delete(*(PREFIX + key for key in keys))

    async def keys(self) -> list[str]:
        return [key.decode() async for key in self._redis.scan_iter(match=PREFIX + "*")]

    async def close(self) -> None:
        await self._redis.aclose()

