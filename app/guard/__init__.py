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
import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from limits.errors import StorageError

from app import receipts
from app.attachments import Upload
from app.guard.limiter import Limiter
from app.guard.store import MemoryStore, RedisStore, Store
from app.guard.tokens import Tokens
from app.settings import Post, Settings

logger = logging.getLogger(__name__)

TOKEN_FIELD = "t"  # noqa: S105 (a form field name, not a secret)
HONEYPOT_FIELD = "hp_extra"
# Where the privacy layer leaves a submission's source key in the ASGI scope (an hourly HMAC of the address, never
# the address); the limiter counts per source with it.
SOURCE_KEY = "tipbox.source"
_PENDING = "pending"  # a nonce's value while its tip is being sent: "pending <digest>"; then "<digest> <receipt>"
_POLL_SECONDS = 0.1
_CLOCK_SKEW = 120.0
_STORAGE_ERRORS: tuple[type[Exception], ...] = (StorageError, OSError, TimeoutError)  # and RedisError with Redis


@dataclass(frozen=True, slots=True)
class Screening:
    """Token and honeypot checked: `ok`, `decoy` (a bot: show the success page with the decoy `receipt`, send
    nothing) or `expired` (too old, or signed with another key or for another post: the form comes back).

    `token` is what the form carries if it comes back (same serving time and a new nonce; for an expired or
    unverified form, a fresh one that can be sent at once).
    """

    status: Literal["ok", "decoy", "expired"]
    token: str
    receipt: str = ""
    nonce: str = ""


@dataclass(frozen=True, slots=True)
class Ticket:
    """`send` (go on, then `settle`), `repeat` (this form was delivered before with the same content: answer with
    its `receipt`, send nothing), `changed` (the form was sent before with other content: give it back),
    `limited`, `failed`."""

    status: Literal["send", "repeat", "changed", "limited", "failed"]
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
            return Screening("decoy", "", receipt=receipts.new_code())
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
                    return Ticket("repeat", value)
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

    async def admit_lookup(self, source: str | None) -> bool:
        """Whether a resident may look up answers now: limited per source like tips (a key derivation each)."""
        try:
            allowed = await self.limiter.hit_lookup(source)
        except self._storage_errors as exc:
            logger.error("answers lookup refused: the guard's storage is unavailable (%s)", type(exc).__name__)
            return False
        if not allowed:
            self._count("answers lookups over the source's limit")
        return allowed

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
