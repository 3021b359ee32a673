"""The store of claimed nonces: get-or-set, a swap for a form sent again, and claims kept among a bounded number."""

from __future__ import annotations

import asyncio

from app.guard.store import MemoryStore
from tests.test_guard import Clock


def test_claims_kept_among_a_bounded_number_forget_the_oldest_first() -> None:
    async def run() -> tuple[list[str | None], list[str]]:
        store = MemoryStore(Clock())
        assert await store.claim("seen:real", "pending d", 60) is None  # claimed without `keep`: never counted
        firsts = [await store.claim(f"seen:{n}", f"decoy {n}", 3600, keep=100) for n in range(250)]
        return [await store.claim(f"seen:{n}", "pending x", 60) for n in (0, 149, 150, 249)], firsts

    again, firsts = asyncio.run(run())
    assert firsts == [None] * 250
    # The 150 oldest were dropped (so claimed afresh now); the newest 100 still answer with their value.
    assert again == [None, None, "decoy 150", "decoy 249"]


def test_a_kept_claim_is_not_dropped_over_a_value_it_no_longer_holds() -> None:
    async def run() -> list[str]:
        clock = Clock()
        store = MemoryStore(clock)
        await store.claim("seen:a", "decoy a", 10, keep=1)
        clock.now += 11  # expired; the key is claimed again for a real tip
        assert await store.claim("seen:a", "pending a", 60) is None
        await store.claim("seen:b", "decoy b", 10, keep=1)  # pushes "seen:a" out of the kept ones
        return sorted(await store.keys())

    assert asyncio.run(run()) == ["seen:a", "seen:b"]


def test_swap_changes_a_value_only_from_the_one_expected() -> None:
    async def run() -> tuple[bool, bool, str | None]:
        store = MemoryStore(Clock())
        await store.put("seen:n", "unconfirmed d r", 60)
        first = await store.swap("seen:n", "unconfirmed d r", "pending d", 60)
        second = await store.swap("seen:n", "unconfirmed d r", "pending d", 60)  # a double tap loses the race
        return first, second, await store.claim("seen:n", "x", 60)

    assert asyncio.run(run()) == (True, False, "pending d")
