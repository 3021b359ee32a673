"""ISO-BMFF boxes (MP4, M4A, 3GP, HEIF), read and written: sizes checked against their parents, nothing copied."""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator

from app.attachments._common import Unclean


def boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) for each box in data[start:end]."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise Unclean("truncated box header")
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if end - pos < 16:
                raise Unclean("truncated box header")
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if kind == b"uuid":
            header += 16
        if size < header or pos + size > end:
            raise Unclean("box size out of range")
        yield kind, pos + header, pos + size
        pos += size


def children(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """(payload start, end) of the first box of each type among data[start:end]'s boxes."""
    found: dict[bytes, tuple[int, int]] = {}
    for kind, payload, box_end in boxes(data, start, end):
        found.setdefault(kind, (payload, box_end))
    return found


def u32s(data: bytes, start: int, count: int, end: int) -> array[int]:
    """`count` big-endian 32-bit values at data[start:], within `end`, as an array (4 bytes each, no Python ints)."""
    if count < 0 or start + 4 * count > end:
        raise Unclean("short table")
    values = array("I")
    values.frombytes(memoryview(data)[start : start + 4 * count])
    if sys.byteorder == "little":
        values.byteswap()
    return values


def box(kind: bytes, *payload: bytes | bytearray) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full(kind: bytes, version: int, *fields: bytes, flags: int = 0) -> bytes:
    """A full box: its version and flags, then `fields`."""
    return box(kind, bytes([version]), flags.to_bytes(3, "big"), *fields)
