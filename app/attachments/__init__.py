"""Photos and voice notes, cleaned in memory so that nothing in them can point back to the sender.

The type comes from the bytes only, never from the name or the declared content type (`formats`). Photos are
decoded and re-encoded as a plain JPEG: upright, long side capped, sRGB, with no EXIF, GPS, maker note, XMP, IPTC,
ICC profile, comment or thumbnail (`images`). Voice notes are re-muxed through a whitelist: each kept structure is
written from its parsed fields (`configs` for the codec configurations) and only the audio frames are copied, so
every tag, box or element not on the list, and every byte hidden in one that is, is gone (`mp4`, `mp3` with AMR,
`ogg`, `webm`); a cleaned recording must be its own cleaning. A file that cannot be read or cleaned is refused,
never forwarded as it came. Nothing is written to disk.

The memory each file's cleaning takes is known before it starts (from a photo's header, from a recording's size)
and reserved in the upload budget (`Cleaner`), so hostile files cannot take memory that nobody counts.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate
from typing import Protocol

import anyio
import anyio.from_thread
import anyio.to_thread

from app.attachments import mp3, mp4, ogg, webm
from app.attachments._common import (
    JPEG_QUALITY,
    MAX_DECODE_BYTES,
    MAX_PIXELS,
    MAX_SIDE,
    MB,
    Busy,
    Reserve,
    TooManyPixels,
    unbounded,
)  # fmt: skip
from app.attachments.formats import FORMATS, sniff
from app.i18n import N_
from app.mail import Attachment, Kind

__all__ = [
    "FORMATS",
    "JPEG_QUALITY",
    "MAX_PIXELS",
    "MAX_SIDE",
    "NOT_ACCEPTED",
    "PHOTO_TOO_LARGE",
    "PHOTO_UNREADABLE",
    "TOO_LARGE",
    "TOO_MANY_FILES",
    "VOICE_UNREADABLE",
    "Attachment",
    "AttachmentError",
    "Busy",
    "Cleaner",
    "Upload",
    "check",
    "clean",
    "sniff",
]  # fmt: skip

logger = logging.getLogger(__name__)

TOO_MANY_FILES = N_("Too many files: at most %(max)d.")
TOO_LARGE = N_("The files are too big: at most %(max)d MB in all.")
NOT_ACCEPTED = N_("This file is not a photo or a voice recording.")
PHOTO_TOO_LARGE = N_("This photo is too big.")
PHOTO_UNREADABLE = N_("This photo cannot be opened.")
VOICE_UNREADABLE = N_("This recording cannot be opened or cleaned, so it was not sent.")

# Submissions whose files are cleaned at once, in a worker thread. A 12 MP photo takes about 0.3 s of one core:
# one at a time, and under 20 uploads at once it was about as fast as two, the event loop (parsing, base64, SMTP)
# using the other core (benchmarks/attachments.py, docs/benchmarks.md). Its memory is reserved in the upload budget
# before it is decoded (`Cleaner`).
CLEANING_CONCURRENCY = 1

_AUDIO: dict[str, Callable[[bytes], bytes]] = {
    "m4a": mp4.clean_m4a,
    "3gp": mp4.clean_m4a,
    "mp3": mp3.clean_mp3,
    "amr": mp3.clean_amr,
    "ogg": ogg.clean_ogg,
    "webm": webm.clean_webm,
}
# The most memory cleaning a recording takes, per byte of the file: the rebuilt file, built twice (the check cleans
# it again), and the parsed tables and frame lists, which the files' own sizes bound (a sample needs at least its
# 4-byte size entry, a page its 27-byte header). Measured on hostile files in benchmarks/attachments.py.
_AUDIO_BYTES_PER_BYTE = {"m4a": 6, "3gp": 6, "mp3": 4, "amr": 3, "ogg": 4, "webm": 5}
_AUDIO_SLACK = 8 * MB


@dataclass(frozen=True, slots=True)
class Upload:
    """One uploaded file as received: which form input it came from and its bytes. The phone's file name is never
    kept."""

    field: str
    data: bytes


class AttachmentError(Exception):
    """File number `position` (1-based, in the order sent) is refused; `reason` is a msgid, `params` its values."""

    def __init__(self, position: int, reason: str, params: Mapping[str, int] | None = None) -> None:
        super().__init__(f"file {position}: {reason}")
        self.position = position
        self.reason = reason
        self.params: Mapping[str, int] = params or {}


def check(uploads: Sequence[Upload], *, max_files: int, max_bytes: int) -> list[str]:
    """Each upload's type, after the checks that decode nothing (how many files, how many bytes, what each is).

    Quick enough to run on every submission; `AttachmentError` names the first file refused (or the limit passed).
    """
    if len(uploads) > max_files:
        raise AttachmentError(max_files + 1, TOO_MANY_FILES, {"max": max_files})
    for position, total in enumerate(accumulate(len(upload.data) for upload in uploads), start=1):
        if total > max_bytes:
            raise AttachmentError(position, TOO_LARGE, _too_large(max_bytes))
    detected = [sniff(upload.data) for upload in uploads]
    for position, found in enumerate(detected, start=1):
        if found is None:
            raise AttachmentError(position, NOT_ACCEPTED)
    return [found for found in detected if found is not None]


def clean(
    uploads: Sequence[Upload],
    *,
    max_files: int,
    max_bytes: int,
    max_pixels: int = MAX_PIXELS,
    max_side: int = MAX_SIDE,
    reserve: Reserve = unbounded,
    max_decode: int = MAX_DECODE_BYTES,
) -> list[Attachment]:
    """The uploads cleaned, in order; `AttachmentError` names the first file refused (or the limit passed).

    CPU-bound and synchronous: run it in a worker thread, a bounded number at a time. Before each file is decoded,
    the memory that takes (known from its header, or bounded by its size) is asked of `reserve`, which raises
    `Busy` when it is not free; a file that would need more than `max_decode` is refused as too big.
    """
    detected = check(uploads, max_files=max_files, max_bytes=max_bytes)
    attachments: list[Attachment] = []
    counts: dict[Kind, int] = {"photo": 0, "voice": 0}
    total = 0
    for position, (upload, found) in enumerate(zip(uploads, detected, strict=True), start=1):
        kind, extension, content_type = FORMATS[found]
        limits = {"max_pixels": max_pixels, "max_side": max_side, "max_decode": max_decode}
        data = _clean_one(position, found, upload.data, reserve=reserve, **limits)
        total += len(data)
        if total > max_bytes:
            raise AttachmentError(position, TOO_LARGE, _too_large(max_bytes))
        counts[kind] += 1
        index = counts[kind]
        attachments.append(Attachment(kind, index, f"{kind}-{index}.{extension}", content_type, data))
    return attachments


def megabytes(size: int) -> int:
    """A limit in whole megabytes as the sender reads it ("at most 20 MB"): never 0."""
    return max(1, round(size / 1_000_000))


def _too_large(max_bytes: int) -> dict[str, int]:
    return {"max": megabytes(max_bytes)}


def _clean_one(
    position: int, detected: str, data: bytes, *, max_pixels: int, max_side: int, max_decode: int, reserve: Reserve
) -> bytes:
    photo = FORMATS[detected][0] == "photo"
    if not photo and audio_cost(detected, len(data)) > max_decode:
        # Only where the upload budget was set below what a recording at the upload limit needs.
        largest = (max_decode - _AUDIO_SLACK) // _AUDIO_BYTES_PER_BYTE[detected]
        raise AttachmentError(position, TOO_LARGE, _too_large(largest))
    try:
        if photo:
            # Pillow and libheif (~10 MB) load with the first photo, not with every process.
            from app.attachments import images

            limits = {"max_pixels": max_pixels, "max_side": max_side, "max_decode": max_decode}
            return images.clean_photo(data, detected, reserve=reserve, **limits)
        with reserve(audio_cost(detected, len(data))):
            return _AUDIO[detected](data)
    except Busy:
        raise
    except TooManyPixels:
        logger.info("attachment %d (%s) refused: too many pixels", position, detected)
        raise AttachmentError(position, PHOTO_TOO_LARGE) from None
    except Exception as exc:  # hostile input may break a decoder anywhere: refuse it, never crash
        # The exception's class only: its message could quote the file's contents.
        logger.info("attachment %d (%s) refused: %s", position, detected, type(exc).__name__)
        raise AttachmentError(position, PHOTO_UNREADABLE if photo else VOICE_UNREADABLE) from None


def audio_cost(detected: str, size: int) -> int:
    """The most memory cleaning a recording of `size` bytes takes (its own bytes are counted with the upload)."""
    return _AUDIO_BYTES_PER_BYTE[detected] * size + _AUDIO_SLACK


class Budget(Protocol):
    """Where decodes reserve their memory (`app.budget.MemoryBudget`, shared with the uploads' bytes)."""

    limit: int

    def reserve(self, size: int) -> bool: ...

    def release(self, size: int) -> None: ...


class Cleaner:
    """The service's cleaner: its limits, a cap on how many submissions are cleaned at once, off the event loop,
    and the budget each decode's memory is reserved in before it starts."""

    def __init__(
        self, *, max_files: int, max_bytes: int, budget: Budget | None = None, concurrency: int = CLEANING_CONCURRENCY
    ) -> None:
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._budget = budget
        self._limiter = anyio.CapacityLimiter(concurrency)

    def check(self, uploads: Sequence[Upload]) -> None:
        """Raise `AttachmentError` for what can be refused without decoding anything (see `check`)."""
        check(uploads, max_files=self.max_files, max_bytes=self.max_bytes)

    def too_large_params(self) -> dict[str, int]:
        """The values of TOO_LARGE's message for this cleaner's limit (whole megabytes)."""
        return _too_large(self.max_bytes)

    async def clean(self, uploads: Sequence[Upload]) -> list[Attachment]:
        """`clean` in a worker thread, once one of the `concurrency` places is free; the event loop keeps serving.

        `Busy` when a file's decode does not fit in the budget now (the sender is asked to send again later)."""
        if not uploads:
            return []
        reserve, largest = unbounded, MAX_DECODE_BYTES
        if self._budget is not None:  # a decode larger than the whole budget would be "busy" for ever: too big
            reserve, largest = self._reserve, min(largest, self._budget.limit)
        limits = {"max_files": self.max_files, "max_bytes": self.max_bytes, "max_decode": largest}
        work = functools.partial(clean, uploads, reserve=reserve, **limits)
        return await anyio.to_thread.run_sync(work, limiter=self._limiter)

    @contextmanager
    def _reserve(self, size: int) -> Iterator[None]:
        """Called in the worker thread: the budget is the event loop's, so it is counted there."""
        assert self._budget is not None
        if not anyio.from_thread.run_sync(self._budget.reserve, size):
            raise Busy
        try:
            yield
        finally:
            anyio.from_thread.run_sync(self._budget.release, size)
