"""Ingestion off the event loop: `take` runs in a worker thread, on an event loop of its own.

Parsing a message of up to 30 MB, removing the quoted tip and sealing the answer are CPU work: on the service's
event loop they would hold up every page (and every tip) for a second or more. The store stays where its
connections live: the worker's calls to it are run on the service's loop and awaited from the thread.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Coroutine
from typing import Any, TypeVar

from app.answers.ingest import Dropped, Ingestion, Kept
from app.answers.store import Store, Stored, StoreUnavailable

_T = TypeVar("_T")
_STORE_SECONDS = 60.0  # a worker never waits longer than this on the service's loop (stopping, or stuck)


async def take_in_thread(ingestion: Ingestion, raw: bytes) -> Kept | Dropped:
    """`ingestion.take(raw)` in a worker thread; raises what it raises (`StoreUnavailable`: retry later)."""
    worker = copy.copy(ingestion)
    worker.store = _OnLoop(ingestion.store, asyncio.get_running_loop())
    return await asyncio.to_thread(_take, worker, raw)


def _take(worker: Ingestion, raw: bytes) -> Kept | Dropped:
    return asyncio.run(worker.take(raw))


class _OnLoop:
    """The store as a worker thread sees it: every call runs on `loop`, the loop that owns the store."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop

    async def _there(self, call: Coroutine[Any, Any, _T]) -> _T:
        try:
            future = asyncio.run_coroutine_threadsafe(call, self.loop)
        except RuntimeError as exc:  # the service's loop is closed: the service is stopping
            call.close()
            raise StoreUnavailable("the service is stopping") from exc
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), _STORE_SECONDS)
        except TimeoutError as exc:
            future.cancel()
            raise StoreUnavailable("the store did not answer in time") from exc

    async def put(self, lookup: bytes, sealed: bytes, dedupe: bytes) -> bool:
        return await self._there(self.store.put(lookup, sealed, dedupe))

    async def get(self, lookup: bytes) -> list[Stored]:
        return await self._there(self.store.get(lookup))

    async def purge(self) -> int:
        return await self._there(self.store.purge())

    async def close(self) -> None:
        """The store belongs to the service, which closes it."""
