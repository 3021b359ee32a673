"""What the cleaners share: the photo limits, the exceptions for a file that cannot be cleaned (or not now), how a
cleaner asks for the memory it is about to use, and the last check on audio."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Literal

MAX_PIXELS = 50_000_000  # 48 and 50 MP phone photos pass; Pillow's own bomb warning starts at 89 MP
MAX_SIDE = 2560
JPEG_QUALITY = 85
MB = 1_000_000
# The most one file's cleaning may take: a file that would need more is refused as too big. With the file itself
# it fits the default 200 MB upload budget (docs/benchmarks.md); a smaller budget lowers it to the budget's size.
MAX_DECODE_BYTES = 190 * MB
MAX_SECONDS = 3 * 3600  # the longest recording accepted: a voice note is minutes long (CPU and memory per file)

# A cleaner calls `reserve(size)` with the bytes a decode will take before it starts, and holds the context while
# it runs; `reserve` raises `Busy` when the memory is not free (app.budget counts it with the uploads).
Reserve = Callable[[int], AbstractContextManager[None]]


class Unclean(Exception):
    """The file cannot be read or cleaned with certainty."""


class TooManyPixels(Exception):
    """The image declares more pixels than allowed."""


class Busy(Exception):
    """The memory that cleaning a file needs is not free right now (the upload budget is full): try again later."""


@contextmanager
def unbounded(size: int) -> Iterator[None]:
    """A `Reserve` that counts nothing (a cleaner called outside the service: tests, benchmarks, tools)."""
    yield


def settled(rebuild: Callable[[bytes], bytes], data: bytes) -> bytes:
    """`rebuild(data)`, proven to hold nothing but what `rebuild` parses: rebuilding it again gives the same bytes.

    Every cleaner writes each kept structure from its parsed fields and copies nothing but audio frames, so a byte
    its reader does not account for (appended to a box, left between frames, nested where no child is read) would
    be dropped by the second pass and the two would differ.
    """
    out = rebuild(data)
    if rebuild(out) != out:
        raise Unclean("the cleaned file is not its own cleaning")
    return out


def checked(data: bytes, container: Literal["mp3", "mp4", "opus", "vorbis"]) -> bytes:
    """`data` if mutagen reads it as audio with a duration and finds no tags in it; otherwise refuse."""
    audio = _reader(container)(io.BytesIO(data))
    tags = getattr(audio, "tags", None)
    length = getattr(getattr(audio, "info", None), "length", 0)
    if not length or length <= 0 or (tags is not None and len(tags) > 0):
        raise Unclean("cleaned audio does not check out")
    return data


def _reader(container: str) -> Callable[[io.BytesIO], object]:
    """mutagen's reader for `container`; mutagen loads with the first voice note, not with every process (memory)."""
    if container == "mp3":
        from mutagen.mp3 import MP3

        return MP3
    if container == "mp4":
        from mutagen.mp4 import MP4

        return MP4
    if container == "opus":
        from mutagen.oggopus import OggOpus

        return OggOpus
    from mutagen.oggvorbis import OggVorbis

    return OggVorbis
