"""What the cleaners share: the photo limits, the exceptions for a file that cannot be cleaned, and the last
check on audio."""

from __future__ import annotations

import io
from collections.abc import Callable

MAX_PIXELS = 50_000_000  # 48 and 50 MP phone photos pass; Pillow's own bomb warning starts at 89 MP
MAX_SIDE = 2560
JPEG_QUALITY = 85


class Unclean(Exception):
    """The file cannot be read or cleaned with certainty."""


class TooManyPixels(Exception):
    """The image declares more pixels than allowed."""


def checked(data: bytes, reader: Callable[[io.BytesIO], object]) -> bytes:
    """`data` if mutagen reads it as audio with a duration and finds no tags in it; otherwise refuse."""
    audio = reader(io.BytesIO(data))
    tags = getattr(audio, "tags", None)
    length = getattr(getattr(audio, "info", None), "length", 0)
    if not length or length <= 0 or (tags is not None and len(tags) > 0):
        raise Unclean("cleaned audio does not check out")
    return data
