"""How much of the request bodies tipbox holds in memory at once, all requests together (`TIPBOX_UPLOAD_MEMORY_BYTES`).

Uploads are parsed in memory and never spooled to disk (an uncleaned photo in a temporary file is a leak), so
without a bound 200 phones each sending 20 MB would take 4 GB. Every request gets a small allowance of its own,
enough for any text tip, so a tip without files never waits on anyone's photos; past it, bytes are taken from the
shared budget as they arrive and given back when the request ends. A request that finds the budget full is not
refused outright: `app.forms` stops keeping its files and goes on reading the text, so the sender gets the form
back with their words and "busy, choose the files again" (503). A body of unknown length (chunked: browsers
always declare a form's length) gets its allowance only, and `app.forms` refuses it past that (413).

One source (the privacy layer's hourly key for the sender's address) has at most MAX_UPLOADS_PER_SOURCE requests
holding shared memory at once: a third upload from it is answered "busy", so a few connections cannot take the
budget from everyone else (docs/abuse.md, "Slow uploads").

The budget counts the bytes as received, and the memory each photo or recording takes while it is cleaned, reserved
before the decode starts (`reserve`; "busy" when it does not fit). On top of it come the emails being handed to the
SMTP server (about three times the email's size each while in flight); docs/benchmarks.md has the figures.
`tipbox serve` has glibc hand large freed buffers back to the system (`app.cli`), so the process shrinks back
after a burst.

Everything runs on the event loop's thread, so plain integers need no lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

ALLOWANCE = 64 * 1024
MAX_UPLOADS_PER_SOURCE = 2


class MemoryBudget:
    """`limit` bytes shared by every request held; each request has `allowance` bytes of its own first."""

    def __init__(self, limit: int, *, allowance: int = ALLOWANCE) -> None:
        self.limit = limit
        self.allowance = allowance
        self.used = 0  # bytes taken from the shared budget right now
        self.uploads: dict[str, int] = {}  # source key -> its requests holding shared memory now (none at 0)

    def reserve(self, size: int) -> bool:
        """Count `size` bytes a decode is about to take (`app.attachments`); False, nothing counted, when they do not
        fit."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        """The decode that reserved `size` bytes is done."""
        self.used -= size

    @contextmanager
    def hold(self, source: str | None = None) -> Iterator[Hold]:
        """A request's share of the budget, given back in full when the block ends, however it ends; `source` is
        who sent it (`MAX_UPLOADS_PER_SOURCE` of theirs may hold shared memory at once)."""
        hold = Hold(self, source)
        try:
            yield hold
        finally:
            hold.give_back(hold.held)
            hold.end()


class Hold:
    """One request's bytes in memory: `take` as they arrive, `give_back` those it lets go of."""

    def __init__(self, budget: MemoryBudget, source: str | None = None) -> None:
        self._budget = budget
        self._source = source
        self._uploading = False  # counted among its source's uploads
        self.held = 0  # bytes this request holds
        self._taken = 0  # of those, the part past the allowance, taken from the shared budget
        self.shared = True  # False: the allowance only (`app.forms` sets it for a body of unknown length)

    def take(self, size: int) -> bool:
        """Count `size` more bytes; False, and nothing counted, when the shared budget cannot hold them."""
        taken = max(0, self.held + size - self._budget.allowance)
        more = taken - self._taken
        if more > 0 and (not self.shared or self._budget.used + more > self._budget.limit or not self._upload()):
            return False
        self._budget.used += more
        self._taken = taken
        self.held += size
        return True

    def _upload(self) -> bool:
        """Count this request among its source's uploads, once; False if the source has its share in flight."""
        if self._uploading or self._source is None:
            return True
        uploads = self._budget.uploads
        if uploads.get(self._source, 0) >= MAX_UPLOADS_PER_SOURCE:
            return False
        uploads[self._source] = uploads.get(self._source, 0) + 1
        self._uploading = True
        return True

    def end(self) -> None:
        """The request is answered, or holds its files no more: it is no longer among its source's uploads."""
        if self._uploading and self._source is not None:
            left = self._budget.uploads[self._source] - 1
            if left:
                self._budget.uploads[self._source] = left
            else:
                del self._budget.uploads[self._source]
            self._uploading = False

    def give_back(self, size: int) -> None:
        """Stop counting `size` of the bytes held (they were dropped)."""
        self.held = max(0, self.held - size)
        taken = max(0, self.held - self._budget.allowance)
        self._budget.used -= self._taken - taken
        self._taken = taken
