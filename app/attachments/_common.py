"""What the cleaners share: the exception for a file that cannot be cleaned, and the last check on audio."""

from __future__ import annotations

import io
from collections.abc import Callable


class Unclean(Exception):
    """The file cannot be read or cleaned with certainty."""


def checked(data: bytes, reader: Callable[[io.BytesIO], object]) -> bytes:
    """`data` if mutagen reads it as audio with a duration and finds no tags in it; otherwise refuse."""
    audio = reader(io.BytesIO(data))
    tags = getattr(audio, "tags", None)
    length = getattr(getattr(audio, "info", None), "length", 0)
    if not length or length <= 0 or (tags is not None and len(tags) > 0):
        raise Unclean("cleaned audio does not check out")
    return data
