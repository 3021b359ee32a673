"""How much of the request bodies tipbox holds in memory at once, all requests together (`TIPBOX_UPLOAD_MEMORY_BYTES`).

Uploads are parsed in memory and never spooled to disk (an uncleaned photo in a temporary file is a leak), so
without a bound 200 phones each sending 20 MB would take 4 GB. Every request gets a small allowance of its own,
enough for any text tip, so a tip without files never waits on anyone's photos; past it, bytes are taken from the
shared budget as they arrive and given back when the request ends. A request that finds the budget full is not
refused outright: `app.forms` stops keeping its files and goes on reading the text, so the sender gets the form
back with their words and "busy, choose the files again" (503). A body of unknown length (chunked: browsers
always declare a form's length) gets its allowance only, and `app.forms` refuses it past that (413).

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


class MemoryBudget:
    """`limit` bytes shared by every request held; each request has `allowance` bytes of its own first."""

    def __init__(self, limit: int, *, allowance: int = ALLOWANCE) -> None:
        self.limit = limit
        self.allowance = allowance
        self.used = 0  # bytes taken from the shared budget right now

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
    def hold(self) -> Iterator[Hold]:
        """A request's share of the budget, given back in full when the block ends, however it ends."""
        hold = Hold(self)
        try:
            yield hold
        finally:
            hold.give_back(hold.held)


class Hold:
    """One request's bytes in memory: `take` as they arrive, `give_back` those it lets go of."""

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self.held = 0  # bytes this request holds
        self._taken = 0  # of those, the part past the allowance, taken from the shared budget
        self.shared = True  # False: the allowance only (`app.forms` sets it for a body of unknown length)

    def take(self, size: int) -> bool:
        """Count `size` more bytes; False, and nothing counted, when the shared budget cannot hold them."""
        taken = max(0, self.held + size - self._budget.allowance)
        more = taken - self._taken
        if more > 0 and (not self.shared or self._budget.used + more > self._budget.limit):
            return False
        self._budget.used += more
        self._taken = taken
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        """Stop counting `size` of the bytes held (they were dropped)."""
        self.held = max(0, self.held - size)
        taken = max(0, self.held - self._budget.allowance)
        self._budget.used -= self._taken - taken
        self._taken = taken
