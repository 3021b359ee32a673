"""app/attachments/boxes.py: ISO-BMFF boxes read within their parents, written with their sizes."""

from __future__ import annotations

import pytest

from app.attachments import boxes
from app.attachments._common import Unclean


def test_boxes_are_read_within_their_parent_and_written_back() -> None:
    data = boxes.box(b"moov", boxes.full(b"mvhd", 1, b"abcd", flags=3), boxes.box(b"trak", b"x"))
    (kind, start, end), *_ = boxes.boxes(data, 0, len(data))
    assert (kind, start, end) == (b"moov", 8, len(data))
    assert list(boxes.children(data, start, end)) == [b"mvhd", b"trak"]
    mvhd = boxes.children(data, start, end)[b"mvhd"]
    assert data[slice(*mvhd)] == b"\x01\x00\x00\x03abcd"


@pytest.mark.parametrize(
    "data",
    [b"\0\0\0\x10moov\0\0", b"\0\0\0\x04moov", b"\0\0\0\x01moov\0\0\0\0\0\0\0\x08", b"\0\0\0"],
    ids=["past-the-end", "smaller-than-its-header", "large-size-too-small", "truncated-header"],
)
def test_a_box_whose_size_does_not_fit_is_refused(data: bytes) -> None:
    with pytest.raises(Unclean):
        list(boxes.boxes(data, 0, len(data)))
