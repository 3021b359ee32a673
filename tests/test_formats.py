"""app/attachments/formats.py: a file's type comes from its bytes only."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from app import attachments
from app.attachments import AttachmentError, Upload, clean, sniff
from tests import media
from tests.cleaning import refusal


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (media.jpeg, "jpeg"), (media.png, "png"), (media.webp, "webp"), (media.heic, "heif"), (media.m4a, "m4a"),
        (media.three_gp, "3gp"), (media.amr, "amr"), (media.mp3, "mp3"), (media.ogg_opus, "ogg"),
        (media.ogg_vorbis, "ogg"), (media.webm, "webm"),
    ],
)  # fmt: skip
def test_sniff_reads_the_type_from_the_bytes(make: Callable[[], bytes], expected: str) -> None:
    assert sniff(make()) == expected


@pytest.mark.parametrize("brands", [b"cmfc\0\0\0\0iso6cmfc", b"abcd\0\0\0\0abcdiso6"], ids=["cmaf", "compatible"])
def test_sniff_takes_a_browsers_mp4_recording_by_its_brands(brands: bytes) -> None:
    """MediaRecorder's audio/mp4 may carry CMAF's brand, or one we do not know that is compatible with ISO's."""
    assert sniff((8 + len(brands)).to_bytes(4, "big") + b"ftyp" + brands) == "m4a"


@pytest.mark.parametrize(
    "data",
    [
        b"", b"<!doctype html><html><body><script>alert(1)</script></body></html>",
        b"%PDF-1.7\n", b"PK\x03\x04" + bytes(40), b"RIFF\x24\0\0\0WAVEfmt ", b"\xff\xd9", b"OggS" + bytes(60),
        b"\0\0\0\x18ftypavif\0\0\0\0avifmif1", b"ID3\x04\0\0\0\0\0\0", bytes(range(256)),
    ],
    ids=["empty", "html", "pdf", "zip", "wav", "jpeg-end", "ogg-empty", "avif", "id3-only", "noise"],
)  # fmt: skip
def test_sniff_knows_nothing_else(data: bytes) -> None:
    assert sniff(data) is None


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO", "PDF"])
def test_other_picture_formats_are_not_accepted(fmt: str) -> None:
    out = io.BytesIO()
    media.halves().save(out, fmt)
    assert sniff(out.getvalue()) is None
    assert refusal(out.getvalue()).reason == attachments.NOT_ACCEPTED


def test_a_jpg_that_holds_html_is_refused_by_position() -> None:
    html = b"<!DOCTYPE html>\n<html><head><title>photo.jpg</title></head><body>not a photo</body></html>"
    uploads = [Upload("photo", media.jpeg()), Upload("photo", html), Upload("voice", media.m4a())]
    with pytest.raises(AttachmentError) as caught:
        clean(uploads, max_files=5, max_bytes=20_000_000)
    assert (caught.value.position, caught.value.reason) == (2, attachments.NOT_ACCEPTED)
    assert "jpg" not in caught.value.reason
