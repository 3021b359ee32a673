"""app/attachments/ogg.py: Ogg Opus and Vorbis rebuilt: headers from their fields, no comments, one serial."""

from __future__ import annotations

import io

import pytest
from mutagen import File as MutagenFile

from app.attachments import ogg
from tests import hostile, media
from tests.cleaning import clean_one, leaked


@pytest.mark.parametrize("make", [media.ogg_opus, media.ogg_vorbis], ids=["opus", "vorbis"])
def test_bytes_after_the_identification_header_never_reach_the_output(make: object) -> None:
    assert callable(make)
    smuggling = hostile.ogg_first_page_with(make(), hostile.MARKER)
    cleaned = clean_one(smuggling).data
    assert hostile.MARKER not in cleaned and leaked(cleaned) == []
    assert media.decoded_seconds(cleaned) == pytest.approx(1.0, abs=0.1)
    parsed = MutagenFile(io.BytesIO(cleaned))
    assert parsed is not None and parsed.info.length > 0 and not parsed.tags


def test_the_output_is_its_own_cleaning_with_one_fixed_serial() -> None:
    cleaned = clean_one(media.ogg_opus()).data
    assert ogg.clean_ogg(cleaned) == cleaned
    serials = {cleaned[pos + 14 : pos + 18] for pos in range(len(cleaned)) if cleaned.startswith(b"OggS", pos)}
    assert serials == {b"bpit"}  # 0x74697062, little-endian, in every page
