"""The derivation bound: lookups past it are told "busy" at once; a slot always stays for tips."""

from __future__ import annotations

import asyncio
import threading

import pytest
from nacl.public import PrivateKey

from app.answers import bound as bound_module
from app.answers import keys
from app.answers.bound import Busy, DerivationBound, default_slots
from tests.replies import CODE, SECRET


def test_it_derives_the_same_pair_as_the_kdf() -> None:
    bound = DerivationBound(SECRET, slots=2)
    pair = asyncio.run(bound.for_lookup(CODE))
    assert pair.public == keys.derive(CODE, SECRET).public
    assert asyncio.run(bound.for_tip(CODE)).public == pair.public


def test_past_the_bound_lookups_are_busy_and_tips_still_get_their_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    started = threading.Semaphore(0)
    real = keys.derive

    def held(code: str, secret: bytes) -> keys.KeyPair:
        started.release()
        release.wait(30)  # a derivation in progress, as long as the test needs
        return real(code, secret)

    monkeypatch.setattr(bound_module.keys, "derive", held)

    async def scenario() -> None:
        bound = DerivationBound(SECRET, slots=3)
        lookups = [asyncio.create_task(bound.for_lookup(CODE)) for _ in range(2)]
        for _ in range(2):
            await asyncio.to_thread(started.acquire)
        with pytest.raises(Busy):  # two lookups running: the third slot is the tips'
            await bound.for_lookup(CODE)
        tip = asyncio.create_task(bound.for_tip(CODE))
        await asyncio.to_thread(started.acquire)  # the tip runs while lookups hold theirs
        with pytest.raises(Busy):
            await bound.for_lookup(CODE)
        release.set()
        pairs = await asyncio.gather(tip, *lookups)
        assert {pair.public for pair in pairs} == {real(CODE, SECRET).public}
        assert (await bound.for_lookup(CODE)).public == pairs[0].public  # free again

    asyncio.run(scenario())


def test_slots() -> None:
    assert 2 <= default_slots() <= 4
    with pytest.raises(ValueError, match="two slots"):
        DerivationBound(SECRET, slots=1)


def test_lookups_derive_at_the_lowest_cpu_priority_and_tips_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    seen: dict[str, int] = {}

    def record(code: str, secret: bytes) -> keys.KeyPair:
        seen[code] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return keys.KeyPair(PrivateKey.generate())

    monkeypatch.setattr(bound_module.keys, "derive", record)

    async def scenario() -> None:
        bound = DerivationBound(SECRET, slots=2)
        await bound.for_lookup("lookup")
        await bound.for_tip("tip")
        bound.close()

    base = os.getpriority(os.PRIO_PROCESS, 0)
    asyncio.run(scenario())
    assert seen == {"lookup": 19, "tip": base}
