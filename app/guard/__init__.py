"""Keeping bots and floods out of a post's mailbox without knowing who anyone is (docs/abuse.md).

Checked in this order for every submitted tip:
1. the form token and the honeypot (`screen`, no storage): a missing or garbled token, a missing or filled
   honeypot, or a form sent sooner than `min_fill_seconds` after it was served is a bot, answered with the success
   page people see (a decoy receipt) while nothing is sent; a well-formed token that does not verify (another key,
   another post), one older than `form_max_age` or one dated in the future beyond the clocks' tolerance gives the
   form back with a fresh token;
2. the token's nonce (`admit`): the first sending of a form decides, and every later one is answered from it.
   The same form sent again (a double tap, a reload) gets the receipt it got the first time and nothing is sent
   again, or, if the mail server never confirmed the first, it is sent again under that receipt (the same
   Message-ID); the same token with other text gives the form back, to be sent as a new message. A bot's form is
   remembered the same way (a bounded number of them), so a form sent again tells no bot which its first was;
3. rate limits per source (the privacy middleware's hourly key), counting attempts, and per post, counting tips
   handed to the mail server (`spend`, after the files were cleaned).
What is kept (a keyed hash of each claimed nonce with a keyed digest of what was sent, counters) is short-lived,
holds no address, no text and no receipt code, and lives in memory or, with `TIPBOX_LIMITS_STORAGE=redis://...`,
in Redis shared by the replicas, whose clocks it then also shares (`app.guard.clock`).
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
from app.guard.clock import SharedClock
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
# A nonce's value: "pending <digest>" while its tip is being sent; "<digest>" once delivered; "unconfirmed <digest>
# <text digest>" when the mail server took the message but never answered; "decoy <digest>" for a bot's form. No
# receipt: a new report's is made from its nonce under the secret, a follow-up's comes back in the form.
_PENDING, _UNCONFIRMED, _DECOY = "pending", "unconfirmed", "decoy"
_POLL_SECONDS = 0.1
# How far apart the replicas' clocks may be: a token dated up to this far in the future is taken as it is (its fill
# time cannot be judged); further, the form comes back with a fresh token. Never a decoy either way.
_CLOCK_SKEW = 120.0
# A token dated up to this far ahead counts as served this instant: replicas sharing Redis's clock agree to a few
# milliseconds, and a bot posting the instant it got a form from another replica is still "too fast".
_SAME_INSTANT = 0.5
# Bots' forms remembered at once, at most (in the store, the oldest forgotten first): 3.1 MB (benchmarks/decoys.py).
DECOY_RECORDS = 10_000
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
    nonce: str = ""  # of a token that verified (ok, or a decoy with a token of ours)
    sent: str = ""  # that token as sent: the form carries it back when its tip may have been delivered


@dataclass(frozen=True, slots=True)
class Ticket:
    """`send` (go on, `spend`, then `settle`), `repeat` (this form was sent before with the same content: answer
    with its `receipt`, send nothing), `decoy` (a bot's form: answer with its decoy `receipt`), `changed` (the
    form was sent before with other content: give it back), `limited`, `failed`.

    `again`: this form was handed to the mail server before without a confirmation; it is sent again under its
    first `receipt` (so its first Message-ID), counts against no limit, and stays "unconfirmed" if this fails too.
    """

    status: Literal["send", "repeat", "decoy", "changed", "limited", "failed"]
    receipt: str = ""
    digest: str = ""
    nonce: str = ""
    again: bool = False
    text: str = ""  # the digest of the text alone: an unconfirmed form sent again without its files is the same


class Guard:
    """The decisions: `screen` a submission, `admit` a valid tip, `settle` once the mail server answered."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.tokens = Tokens(settings.secret)
        self._digest_key = hmac.new(settings.secret, b"tipbox duplicate digest", hashlib.sha256).digest()
        self._decoy_key = hmac.new(settings.secret, b"tipbox decoy receipt", hashlib.sha256).digest()
        self._min_fill = settings.min_fill_seconds
        self._max_age = settings.form_max_age
        # Long enough for one send with its retry before the message, and the wait for the answer to it; a crashed
        # sender's claim expires by itself.
        self._pending_seconds = 4 * settings.smtp_timeout + settings.smtp_data_timeout + 15
        self._pool = None
        self._storage_errors = _STORAGE_ERRORS
        if settings.limits_storage != "memory://":
            import redis.asyncio
            from redis.exceptions import RedisError

            self._pool = redis.asyncio.ConnectionPool.from_url(
                settings.limits_storage, socket_timeout=2.0, socket_connect_timeout=2.0
            )
            self._storage_errors = (RedisError, *_STORAGE_ERRORS)
        self.clock = SharedClock(clock, self._pool)  # what tokens are dated and judged by
        self.store: Store = RedisStore(self._pool) if self._pool is not None else MemoryStore(clock)
        self.limiter = Limiter(settings, self._pool, clock)
        self.counts: Counter[str] = Counter()

    async def start(self) -> None:
        """Set the clock by Redis's, when replicas share one (before the first form is served)."""
        await self.clock.sync()

    def form_token(self, post: Post) -> tuple[str, str]:
        """A freshly served form's token field: (name, value)."""
        return TOKEN_FIELD, self.tokens.issue(post.slug, self.clock())

    def screen(self, post: Post, fields: Mapping[str, str]) -> Screening:
        """Check the token and the honeypot; needs no storage."""
        text = fields.get(TOKEN_FIELD, "")
        token = self.tokens.read(text, post.slug)
        honeypot = fields.get(HONEYPOT_FIELD)
        now = self.clock()
        reason = None
        if token is None and not self.tokens.well_formed(text):
            reason = "invalid token"
        elif honeypot is None:
            reason = "honeypot missing"
        elif honeypot:
            reason = "honeypot filled"
        elif token is None or now - token.issued > self._max_age or token.issued - now > _CLOCK_SKEW:
            # A form served before the secret key changed (or by a dev process since restarted), or for another
            # post, is a person's as often as a bot's: it comes back like an expired one (a bot gets a fresh token,
            # no more; docs/abuse.md). So does one dated in the future by a replica whose clock is far off.
            # Backdated so that pressing Send at once is not "too fast".
            if token is None:
                self._count("token not verified (another key or post), form given back")
            elif token.issued > now:
                self._count("token from the future (a replica's clock is off), form given back")
            return Screening("expired", self.tokens.issue(post.slug, now - self._min_fill))
        elif -_SAME_INSTANT <= now - token.issued < self._min_fill:
            # (A token from further in the future says the clocks differ, not a bot's speed.) Until Redis's clock
            # was read, another replica's clock may be ahead of this one by any amount: a person who took longer
            # than the minimum would be judged too fast and silently decoyed, so no one is judged on speed then.
            if self.clock.known:
                reason = "too fast"
            else:
                self._count("form sent quickly, not judged: the replicas' shared clock is not read yet")
        if reason is not None:
            self._count(reason)
            if token is None:  # nothing of ours to remember: the same text always gets the same receipt
                return Screening("decoy", "", receipt=self._decoy_receipt("text:" + text))
            return Screening("decoy", self.tokens.issue(post.slug, token.issued), nonce=token.nonce, sent=text)
        assert token is not None
        return Screening("ok", self.tokens.issue(post.slug, token.issued), nonce=token.nonce, sent=text)

    def token_verifies(self, post: Post, text: str) -> bool:
        """Whether `text` is a token this service signed for `post`, whatever its age: a form that may carry files."""
        return self.tokens.read(text, post.slug) is not None

    async def admit(
        self,
        post: Post,
        screening: Screening,
        values: Mapping[str, str],
        uploads: Sequence[Upload],
        source: str | None,
        receipt: str = "",
    ) -> Ticket:
        """Decide what becomes of a screened form (valid, or a bot's with a token of ours); with `send`, the caller
        must `settle` the ticket."""
        digest, text = self._digest(post, values, uploads), self._digest(post, values, ())
        try:
            await self.clock.refresh()
            return await self._admit(post, screening, digest, text, source, receipt)
        except self._storage_errors as exc:
            logger.error("tip not sent: the guard's storage is unavailable (%s)", type(exc).__name__)
            return Ticket("failed")

    async def _admit(
        self, post: Post, screening: Screening, digest: str, text: str, source: str | None, receipt: str
    ) -> Ticket:
        # The nonce first: a form sent again is answered from its first sending and counts against no limit, and
        # the limits are counted before anything costly (the caller decodes files only after `send`).
        nonce, decoy = screening.nonce, screening.status == "decoy"
        deadline = asyncio.get_running_loop().time() + self._pending_seconds
        key = self._seen_key(nonce)
        if decoy:  # a bot's form is remembered like a delivered one, among DECOY_RECORDS at most
            mine, ttl, keep = f"{_DECOY} {digest}", self._kept_seconds, DECOY_RECORDS
        else:
            mine, ttl, keep = f"{_PENDING} {digest}", self._pending_seconds, None
        while (first := await self.store.claim(key, mine, ttl, keep=keep)) is not None:
            state, first_digest, first_text = _parse(first)
            if state == _PENDING:
                if asyncio.get_running_loop().time() > deadline:
                    return Ticket("failed")
                await asyncio.sleep(_POLL_SECONDS)  # the same form is being sent right now (a double tap)
                continue
            if state == _UNCONFIRMED and not decoy and first_text == text:
                # Handed to the mail server before, never confirmed: sent again under its first receipt, so its
                # first Message-ID (a mailbox that drops a repeated Message-ID shows the tip once). The same
                # text and nonce make the same `receipt` (`receipts.new_code`): no code is stored. Only the text
                # must match: the page cannot keep the files, and a recording made on it cannot be chosen again.
                if await self.store.swap(key, first, f"{_PENDING} {digest}", self._pending_seconds):
                    self._count("form sent again after an unconfirmed hand-off, under its first receipt")
                    return Ticket("send", receipt, digest, nonce, again=True, text=text)
                continue
            if first_digest != digest:
                self._count("form sent again with other content, given back")
                return Ticket("changed")
            self._count("form sent again, answered with its receipt")
            # A bot's form gets its decoy receipt, whatever came first (a real sending's code is not for a bot).
            return Ticket("repeat", self._decoy_receipt(nonce) if decoy or state == _DECOY else receipt)
        if decoy:
            return Ticket("decoy", self._decoy_receipt(nonce))
        if not await self.limiter.admit(post.slug, source):
            await self.store.delete(key)
            self._count("over a rate limit")
            return Ticket("limited")
        return Ticket("send", receipt, digest, nonce, text=text)

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

    async def spend(self, post: Post, ticket: Ticket) -> Literal["send", "limited", "failed"]:
        """Count a tip about to be handed to the mail server against the post's limit: refused files, or text, never
        spend it. A form sent again after an unconfirmed hand-off counted the first time."""
        if ticket.again:
            return "send"
        try:
            if await self.limiter.spend(post.slug):
                return "send"
        except self._storage_errors as exc:
            logger.error("tip not sent: the guard's storage is unavailable (%s)", type(exc).__name__)
            return "failed"
        self._count("over the post's limit")
        return "limited"

    async def settle(self, ticket: Ticket, result: Literal["delivered", "unconfirmed", "failed"]) -> None:
        """Remember a delivered form's digest for as long as its token lives, or an unconfirmed one's (to send it
        again under the same receipt); after a failure, free the token for a retry. Never the receipt: whoever
        copies the store (a Redis shared with the answers) must not learn the codes that open the answers."""
        key = self._seen_key(ticket.nonce)
        try:
            if result == "delivered":
                await self.store.put(key, ticket.digest, self._kept_seconds)
            elif result == "unconfirmed" or ticket.again:  # it may have arrived the first time
                await self.store.put(key, f"{_UNCONFIRMED} {ticket.digest} {ticket.text}", self._kept_seconds)
            else:
                await self.store.delete(key)
        except self._storage_errors as exc:
            logger.error("the guard's storage is unavailable (%s)", type(exc).__name__)

    @property
    def _kept_seconds(self) -> float:
        return self._max_age + 2 * _CLOCK_SKEW

    def receipt_seed(self, post: Post, values: Mapping[str, str], nonce: str) -> bytes:
        """What a new report's code is made from (`receipts.new_code`): its token's nonce and a keyed digest of its
        text. The same form sent again gets the same code; another text on the same page never does, even if the
        record of the first sending was lost (a restart of the memory store, an evicted Redis key)."""
        return f"{nonce} {self._digest(post, values, ())}".encode()

    def _seen_key(self, nonce: str) -> str:
        """A sent form's key: a keyed hash of its nonce, so that the key says nothing from which its code is made."""
        return "seen:" + hmac.new(self._digest_key, b"seen:" + nonce.encode(), hashlib.sha256).hexdigest()[:32]

    def _decoy_receipt(self, seed: str) -> str:
        """A bot's receipt, the same every time for the same form: nothing to store, nothing to tell it apart."""
        return receipts.code_from(hmac.new(self._decoy_key, seed.encode(), hashlib.sha256).digest())

    async def stored_keys(self) -> list[str]:
        """Every key the guard and its limiter hold right now (in Redis, both are under `PREFIX`)."""
        return [*await self.store.keys(), *self.limiter.keys()]

    async def close(self) -> None:
        await self.store.close()
        await self.clock.close()
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


def _parse(value: str) -> tuple[str, str, str]:
    """A nonce's value as (state, digest, text digest); a delivered one's state is "delivered"; the text digest is
    kept for an unconfirmed one only."""
    state, _, rest = value.partition(" ")
    if state in (_PENDING, _UNCONFIRMED, _DECOY):
        digest, _, text = rest.partition(" ")
        return state, digest, text if state == _UNCONFIRMED else ""
    return "delivered", state, ""
