"""app/attachments/mp4.py: M4A and 3GP rebuilt from their parsed fields; nothing else reaches the output."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator

import pytest
from mutagen import File as MutagenFile

from app import attachments
from app.attachments import mp4
from app.attachments._common import Unclean, settled
from tests import hostile, media
from tests.cleaning import clean_one, refusal


def top_level_boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, data[pos + 8 : pos + size]
        pos += size


def test_m4a_leaves_as_ftyp_moov_mdat_with_zero_times_and_one_sound_track() -> None:
    for original in (media.m4a(), media.mp4_with_video()):
        mvhd = original.find(b"mvhd") + 4
        assert original[mvhd + 4 : mvhd + 12] != bytes(8)  # the fixture has its creation time
        cleaned = clean_one(original).data
        assert [kind for kind, _ in top_level_boxes(cleaned)] == [b"ftyp", b"moov", b"mdat"]
        for box in (b"mvhd", b"tkhd", b"mdhd"):
            start = cleaned.find(box) + 4
            assert cleaned[start + 4 : start + 12] == bytes(8)  # creation and modification time
        assert cleaned.count(b"trak") == 1 and b"vide" not in cleaned
        assert cleaned.find(b"moov") < cleaned.find(b"mdat")  # ready to stream as soon as it arrives


def test_bytes_in_mdat_that_no_sample_uses_are_left_behind() -> None:
    original = media.m4a()
    assert media.UNREFERENCED in original
    cleaned = clean_one(original).data
    assert media.UNREFERENCED not in cleaned
    assert len(dict(top_level_boxes(cleaned))[b"mdat"]) < len(dict(top_level_boxes(original))[b"mdat"])


def with_chunk_offset(data: bytes, offset: int) -> bytes:
    """The file with its first chunk offset pointing at `offset` (e.g. into the moov box and its tags)."""
    stco = data.find(b"stco")
    return data[: stco + 12] + struct.pack(">I", offset) + data[stco + 16 :]


def rewritten_table(data: bytes, box: bytes, header: int, value: Callable[[int], int]) -> bytes:
    """The file with each 32-bit entry of the first `box` table (after `header` bytes) replaced by value(entry)."""
    out = bytearray(data)
    start = data.find(box) + 4 + header
    count = struct.unpack_from(">I", data, start - 4)[0]
    for n in range(count):
        struct.pack_into(">I", out, start + 4 * n, value(struct.unpack_from(">I", data, start + 4 * n)[0]))
    return bytes(out)


def test_sample_tables_that_would_blow_up_are_refused() -> None:
    base = hostile.m4a_chunks(100, sample_size=1000)
    assert len(mp4.remux(base)) > 100_000  # the hand-made file itself is fine
    # 100 chunks, each the whole of a 1000-byte mdat: the output would be 100 times the input.
    amplified = base.replace(hostile.box(b"mdat", bytes(100_000)), hostile.box(b"mdat", bytes(1000)))
    amplified = rewritten_table(amplified, b"stco", 8, lambda _: amplified.find(b"mdat") + 4)
    with pytest.raises(Unclean, match="overlap"):
        mp4.remux(amplified)
    # One size for all samples, and four billion of them.
    original = media.m4a()
    stsz = original.find(b"stsz") + 4
    huge = original[: stsz + 4] + struct.pack(">II", 1, 0xFFFFFFFF) + original[stsz + 12 :]
    for data in (amplified, huge):
        assert refusal(data).reason == attachments.VOICE_UNREADABLE


SMUGGLED = hostile.box(b"udta", hostile.box(b"\xa9xyz", hostile.MARKER))
STBL = [b"moov", b"trak", b"mdia", b"minf", b"stbl"]


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ([*STBL, b"stsd", b"mp4a"], SMUGGLED),  # a location box nested in the sample entry
        ([b"moov", b"mvhd"], hostile.MARKER),
        ([b"moov", b"trak", b"tkhd"], hostile.MARKER),
        ([b"moov", b"trak", b"mdia", b"mdhd"], hostile.MARKER),
        ([*STBL, b"stts"], hostile.MARKER),
        ([b"moov", b"trak", b"edts", b"elst"], hostile.MARKER),
        ([*STBL, b"stsd", b"mp4a", b"esds"], hostile.MARKER),  # after the decoder configuration
        ([*STBL, b"sgpd"], hostile.MARKER),  # the encoder's own roll group, grown
        (STBL, hostile.box(b"sgpd", bytes(4), b"roll", hostile.MARKER)),
        (STBL, hostile.box(b"sdtp", bytes(4), hostile.MARKER)),
    ],
    ids=["udta-in-mp4a", "mvhd", "tkhd", "mdhd", "stts", "elst", "esds", "sgpd", "sgpd-added", "sdtp"],
)
def test_bytes_hidden_in_kept_boxes_never_reach_the_output(path: list[bytes], extra: bytes) -> None:
    smuggling = hostile.mp4_grown(media.m4a(), path, extra)
    assert hostile.MARKER in smuggling
    cleaned = clean_one(smuggling).data
    assert hostile.MARKER not in cleaned and b"udta" not in cleaned
    assert media.decoded_seconds(cleaned) == pytest.approx(1.0, abs=0.1)
    parsed = MutagenFile(io.BytesIO(cleaned))
    assert parsed is not None and parsed.info.length > 0 and not parsed.tags


def test_every_byte_of_the_output_is_a_parsed_field_or_a_frame() -> None:
    cleaned = clean_one(media.m4a()).data
    assert mp4.remux(cleaned) == cleaned  # the check the cleaner runs: nothing its reader would leave behind
    # A byte the reader does not account for fails that check.
    with pytest.raises(Unclean, match="its own cleaning"):
        settled(lambda data: data + b"!", b"x")  # a writer that adds a byte on every pass


def test_a_3gp_keeps_its_amr_configuration_without_the_vendor() -> None:
    original = media.three_gp()
    cleaned = clean_one(original).data
    damr = cleaned.find(b"damr")
    assert damr > 0 and cleaned[damr + 4 : damr + 8] == bytes(4)
    assert media.decoded_seconds(cleaned) == pytest.approx(1.0, abs=0.1)
