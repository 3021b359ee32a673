"""At most a few key derivations at once, in worker threads: lookups can never starve tips, nor stall the pages.

Each derivation takes tens of milliseconds and 32 MiB (app.answers.keys). Tips wait for a slot (they are already
past the guard's limits); a lookup that finds no free slot is told "busy, try again in a minute" at once, and
lookups together never take the last slot, which stays for tips. Lookups derive in threads of their own at the
lowest CPU priority (nice 19, per thread on Linux): while lookups are hammered, the event loop serving the form
(and everything else on a small VPS) still gets the CPU first, and lookups use what is left. Tips, already past
the guard's limits, derive at normal priority, so a loaded machine does not hold up a resident's Send.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from app.answers import keys

_NICE = 19


class Busy(Exception):
    """Every derivation slot a lookup may use is taken."""


def default_slots() -> int:
    """One slot per core, two to four: a small VPS runs a few 32 MiB derivations at once beside the service."""
    return max(2, min(4, os.cpu_count() or 2))


class DerivationBound:
    """`slots` derivations at once; lookups get at most `slots - 1` of them and never queue."""

    def __init__(self, secret: bytes, slots: int | None = None) -> None:
        self.secret = secret
        self.slots = slots or default_slots()
        if self.slots < 2:
            raise ValueError("the derivation bound needs two slots: one is kept for tips")
        self._all = asyncio.Semaphore(self.slots)
        self._lookups = asyncio.Semaphore(self.slots - 1)
        self._tips = ThreadPoolExecutor(self.slots, thread_name_prefix="tipbox-kdf-tip")
        self._lookup_threads = ThreadPoolExecutor(
            self.slots - 1, thread_name_prefix="tipbox-kdf-lookup", initializer=_lowest_priority
        )

    async def _derive(self, code: str, threads: ThreadPoolExecutor) -> keys.KeyPair:
        return await asyncio.get_running_loop().run_in_executor(threads, keys.derive, code, self.secret)

    async def for_tip(self, code: str) -> keys.KeyPair:
        """The key pair for a tip being sent: waits for a slot."""
        async with self._all:
            return await self._derive(code, self._tips)

    async def for_lookup(self, code: str) -> keys.KeyPair:
        """The key pair for a resident reading answers; raises `Busy` at once when no lookup slot is free."""
        if self._lookups.locked() or self._all.locked():
            raise Busy
        async with self._lookups, self._all:
            return await self._derive(code, self._lookup_threads)

    def close(self) -> None:
        self._tips.shutdown(wait=False)
        self._lookup_threads.shutdown(wait=False)


def _lowest_priority() -> None:
    """Linux applies a nice value to one thread when given its thread id; elsewhere this is a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICE)
