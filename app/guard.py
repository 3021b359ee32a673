"""Keeping bots and floods out of a post's mailbox without knowing who anyone is (docs/abuse.md).

Checked in this order for every submitted tip:
1. the form token and the honeypot (`screen`, no storage): a missing or garbled token, a missing or filled
   honeypot, or a form sent sooner than `min_fill_seconds` after it was served is a bot, answered with the success
   page people see (a decoy receipt) while nothing is sent; a well-formed token that does not verify (another key,
   another post) or one older than `form_max_age` gives the form back with a fresh token;
2. the token's nonce (`admit`): claimed once; the same form sent again (a double tap, a reload) gets the receipt
   it got the first time, and nothing is sent again; the same token with other text gives the form back, to be
   sent as a new message;
3. rate limits per source (the privacy middleware's hourly key) and per post, for claimed nonces only.
What is kept (claimed nonces with a keyed digest of what was sent and its receipt, counters) is short-lived, holds
no address and no text, and lives in memory or, with `TIPBOX_LIMITS_STORAGE=redis://...`, in Redis shared by the
replicas.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import limits
from limits.errors import StorageError

from app import receipts
from app.attachments import Upload
from app.settings import Post, Settings

if TYPE_CHECKING:  # Redis is imported only when it is configured (TIPBOX_LIMITS_STORAGE=redis://...)
    import redis.asyncio
    from limits.aio.strategies import MovingWindowRateLimiter

logger = logging.getLogger(__name__)

TOKEN_FIELD = "t"  # noqa: S105 (a form field name, not a secret)
HONEYPOT_FIELD = "hp_extra"
PREFIX = "tipbox:"
_PENDING = "pending"  # a nonce's value while its tip is being sent: "pending <digest>"; then "<digest> <receipt>"
_POLL_SECONDS = 0.1
_CLOCK_SKEW = 120.0
_VERSION = 1
_NONCE_BYTES = 13
_MAC_BYTES = 16
_TOKEN_BYTES = 1 + 6 + _NONCE_BYTES + _MAC_BYTES  # 36 bytes: 48 URL-safe characters, no padding
_SWEEP_SECONDS = 60.0
_STORAGE_ERRORS: tuple[type[Exception], ...] = (StorageError, OSError, TimeoutError)  # and RedisError with Redis


@dataclass(frozen=True, slots=True)
class Token:
    """A verified form token: served for `post` at `issued` (seconds), with a random `nonce` (hex)."""

    post: str
    issued: float
    nonce: str


class Tokens:
    """Signs and reads form tokens: HMAC-SHA256 over the post, the time the form was served and a nonce."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"tipbox form token", hashlib.sha256).digest()

    def _mac(self, post: str, head: bytes) -> bytes:
        return hmac.new(self._key, post.encode() + b"\0" + head, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, post: str, issued: float) -> str:
        head = bytes([_VERSION]) + int(issued * 1000).to_bytes(6, "big") + secrets.token_bytes(_NONCE_BYTES)
        return base64.urlsafe_b64encode(head + self._mac(post, head)).decode("ascii")

    def read(self, text: str, post: str) -> Token | None:
        """The token if well formed and signed for `post`; None if missing, malformed, forged or another post's."""
        raw = _decode(text)
        if raw is None:
            return None
        head, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(post, head)):
            return None
        return Token(post, int.from_bytes(head[1:7], "big") / 1000, head[7:].hex())

    @staticmethod
    def well_formed(text: str) -> bool:
        """Shaped like a token of ours (whatever key signed it): what a form served by tipbox sends back."""
        return _decode(text) is not None


def _decode(text: str) -> bytes | None:
    """A token's bytes if it has a token's length, encoding and version; its MAC is not checked."""
    if len(text) != _TOKEN_BYTES * 4 // 3 or not text.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _TOKEN_BYTES and raw[0] == _VERSION else None


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

    def keys(self) -> list[str]:
        return list(self._hits)


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

    def keys(self) -> list[str]:
        """The memory windows' keys (Redis keys are listed with the store's)."""
        return self.memory.keys() if self.memory is not None else []


@dataclass(frozen=True, slots=True)
class Screening:
    """Token and honeypot checked: `ok`, `sent` (a bot: show the decoy `receipt`) or `expired` (too old, or signed
    with another key or for another post: the form comes back).

    `token` is what the form carries if it comes back (same serving time and a new nonce; for an expired or
    unverified form, a fresh one that can be sent at once).
    """

    status: Literal["ok", "sent", "expired"]
    token: str
    receipt: str = ""
    nonce: str = ""


@dataclass(frozen=True, slots=True)
class Ticket:
    """`send` (go on, then `settle`), `sent` (the form was sent before: its receipt), `changed` (the form was sent
    before with other content: give it back), `limited`, `failed`."""

    status: Literal["send", "sent", "changed", "limited", "failed"]
    receipt: str = ""
    digest: str = ""
    nonce: str = ""


class Guard:
    """The decisions: `screen` a submission, `admit` a valid tip, `settle` once the mail server answered."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.tokens = Tokens(settings.secret)
        self._digest_key = hmac.new(settings.secret, b"tipbox duplicate digest", hashlib.sha256).digest()
        self._min_fill = settings.min_fill_seconds
        self._max_age = settings.form_max_age
        # Long enough for one send with its retry; a crashed sender's claim expires by itself.
        self._pending_seconds = 3 * settings.smtp_timeout + 15
        self._pool = None
        self._storage_errors = _STORAGE_ERRORS
        if settings.limits_storage != "memory://":
            import redis.asyncio
            from redis.exceptions import RedisError

            self._pool = redis.asyncio.ConnectionPool.from_url(
                settings.limits_storage, socket_timeout=2.0, socket_connect_timeout=2.0
            )
            self._storage_errors = (RedisError, *_STORAGE_ERRORS)
        self.store: Store = RedisStore(self._pool) if self._pool is not None else MemoryStore(clock)
        self.limiter = Limiter(settings, self._pool, clock)
        self.counts: Counter[str] = Counter()

    def form_fields(self, post: Post) -> dict[str, str]:
        """The hidden fields of a freshly served form."""
        return dict([self.form_token(post)])

    def form_token(self, post: Post) -> tuple[str, str]:
        """A freshly served form's token field: (name, value)."""
        return TOKEN_FIELD, self.tokens.issue(post.slug, self._clock())

    def screen(self, post: Post, fields: Mapping[str, str]) -> Screening:
        """Check the token and the honeypot; needs no storage."""
        text = fields.get(TOKEN_FIELD, "")
        token = self.tokens.read(text, post.slug)
        honeypot = fields.get(HONEYPOT_FIELD)
        now = self._clock()
        reason = None
        if (token is None and not self.tokens.well_formed(text)) or (token and now - token.issued < -_CLOCK_SKEW):
            reason = "invalid token"
        elif honeypot is None:
            reason = "honeypot missing"
        elif honeypot:
            reason = "honeypot filled"
        elif token is None or now - token.issued > self._max_age:
            # A form served before the secret key changed (or by a dev process since restarted), or for another
            # post, is a person's as often as a bot's: it comes back like an expired one (a bot gets a fresh token,
            # no more; docs/abuse.md). Backdated so that pressing Send at once is not "too fast".
            if token is None:
                self._count("token not verified (another key or post), form given back")
            return Screening("expired", self.tokens.issue(post.slug, now - self._min_fill))
        elif now - token.issued < self._min_fill:
            reason = "too fast"
        if reason is not None:
            self._count(reason)
            return Screening("sent", "", receipt=receipts.new_code())
        assert token is not None
        return Screening("ok", self.tokens.issue(post.slug, token.issued), nonce=token.nonce)

    async def admit(
        self,
        post: Post,
        screening: Screening,
        values: Mapping[str, str],
        uploads: Sequence[Upload],
        source: str | None,
        receipt: str,
    ) -> Ticket:
        """Decide whether a screened, valid tip is sent now; with `send`, the caller must `settle` the ticket."""
        digest = self._digest(post, values, uploads)
        try:
            return await self._admit(post, screening.nonce, digest, source, receipt)
        except self._storage_errors as exc:
            logger.error("tip not sent: the guard's storage is unavailable (%s)", type(exc).__name__)
            return Ticket("failed")

    async def _admit(self, post: Post, nonce: str, digest: str, source: str | None, receipt: str) -> Ticket:
        # The nonce first: a form sent again is answered from its first sending and counts against no limit, and
        # the limits are counted before anything costly (the caller decodes files only after `send`).
        deadline = asyncio.get_running_loop().time() + self._pending_seconds
        key = f"seen:{nonce}"
        while (first := await self.store.claim(key, f"{_PENDING} {digest}", self._pending_seconds)) is not None:
            state, _, value = first.partition(" ")
            if state != _PENDING:
                if state == digest:
                    self._count("form sent again, answered with its receipt")
                    return Ticket("sent", value)
                self._count("form sent again with other content, given back")
                return Ticket("changed")
            if asyncio.get_running_loop().time() > deadline:
                return Ticket("failed")
            await asyncio.sleep(_POLL_SECONDS)  # the same form is being sent right now (a double tap)
        if not await self.limiter.hit(post.slug, source):
            await self.store.delete(key)
            self._count("over a rate limit")
            return Ticket("limited")
        return Ticket("send", receipt, digest, nonce)

    async def settle(self, ticket: Ticket, *, delivered: bool) -> None:
        """Remember a delivered form's digest and receipt for as long as its token lives; after a failure, free the
        token for a retry."""
        try:
            if delivered:
                ttl = self._max_age + 2 * _CLOCK_SKEW
                await self.store.put(f"seen:{ticket.nonce}", f"{ticket.digest} {ticket.receipt}", ttl)
            else:
                await self.store.delete(f"seen:{ticket.nonce}")
        except self._storage_errors as exc:
            logger.error("the guard's storage is unavailable (%s)", type(exc).__name__)

    async def stored_keys(self) -> list[str]:
        """Every key the guard and its limiter hold right now (in Redis, both are under `PREFIX`)."""
        return [*await self.store.keys(), *self.limiter.keys()]

    async def close(self) -> None:
        await self.store.close()
        if self._pool is not None:
            await self._pool.aclose()

    def _digest(self, post: Post, values: Mapping[str, str], uploads: Sequence[Upload]) -> str:
        """A keyed hash of the post and the normalised text (and files): equal for a reload, never the text."""
        text = {name: " ".join(value.split()).casefold() for name, value in values.items()}
        files = [(upload.field, hashlib.sha256(upload.data).hexdigest()) for upload in uploads]
        payload = json.dumps([post.slug, text, files], ensure_ascii=False, sort_keys=True)
        return hmac.new(self._digest_key, payload.encode(), hashlib.sha256).hexdigest()[:32]

    def _count(self, reason: str) -> None:
        """Log how many times, never what: at 1, 2, 4, 8... and every 1000th, so a flood cannot fill the disk."""
        self.counts[reason] += 1
        count = self.counts[reason]
        if count & (count - 1) == 0 or count % 1000 == 0:
            logger.info("guard: %s, %d since start; nothing sent for it", reason, count)
