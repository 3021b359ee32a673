"""app/attachments/mp4.py: M4A and 3GP rebuilt from their parsed fields; nothing else reaches the output."""

from __future__ import annotations

import io
import struct
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from mutagen import File as MutagenFile

from app import attachments
from app.attachments import mp4
from app.attachments._common import Unclean, settled
from tests import hostile, media
from tests.cleaning import clean_one, leaked, refusal


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


# --- Fragmented MP4: what MediaRecorder writes as audio/mp4 --------------------------------------------------------

MOOF = [b"moof", b"traf"]


@pytest.mark.parametrize(("codec", "base_moof"), [("aac", False), ("aac", True), ("libopus", True)])
def test_a_fragmented_recording_leaves_as_a_plain_m4a_of_the_same_length(codec: str, base_moof: bool) -> None:
    original = media.mp4_fragmented(codec, base_moof)
    assert original.count(b"moof") > 2 and len(leaked(original)) >= 3
    attachment = clean_one(original)
    cleaned = attachment.data
    assert (attachment.filename, attachment.content_type) == ("voice-1.m4a", "audio/mp4")
    assert [kind for kind, _ in top_level_boxes(cleaned)] == [b"ftyp", b"moov", b"mdat"]
    for kind in (b"mvex", b"trex", b"moof", b"traf", b"trun", b"tfdt", b"mfra", b"udta", b"meta"):
        assert kind not in cleaned
    assert leaked(cleaned) == []
    assert media.decoded_seconds(cleaned) == pytest.approx(media.decoded_seconds(original), abs=0.1)
    parsed = MutagenFile(io.BytesIO(cleaned))
    assert parsed is not None and parsed.info.length == pytest.approx(1.0, abs=0.1) and not parsed.tags
    assert mp4.remux(cleaned) == cleaned


def test_where_a_recorder_places_its_fragments_samples_makes_no_difference() -> None:
    from_start, from_moof = media.mp4_fragmented("aac", False), media.mp4_fragmented("aac", True)
    assert from_start != from_moof
    assert clean_one(from_start).data == clean_one(from_moof).data


def before_first_fragment(data: bytes, extra: bytes) -> bytes:
    moof = data.find(b"moof") - 4
    return data[:moof] + extra + data[moof:]


SMUGGLING_FRAGMENTS: dict[str, Callable[[bytes], bytes]] = {
    "trun": lambda data: hostile.fragment_grown(data, [*MOOF, b"trun"], hostile.MARKER),
    "tfhd": lambda data: hostile.fragment_grown(data, [*MOOF, b"tfhd"], hostile.MARKER),
    "tfdt": lambda data: hostile.fragment_grown(data, [*MOOF, b"tfdt"], hostile.MARKER),
    "udta-in-traf": lambda data: hostile.fragment_grown(data, MOOF, SMUGGLED),
    "udta-in-moof": lambda data: hostile.fragment_grown(data, [b"moof"], SMUGGLED),
    "trex": lambda data: hostile.mp4_grown(data, [b"moov", b"mvex", b"trex"], hostile.MARKER),
    "emsg": lambda data: before_first_fragment(data, hostile.box(b"emsg", bytes(4), hostile.MARKER)),
    "sidx": lambda data: before_first_fragment(data, hostile.box(b"sidx", bytes(4), hostile.MARKER)),
    "styp": lambda data: before_first_fragment(data, hostile.box(b"styp", b"msdh\0\0\0\0", hostile.MARKER)),
    "mfra": lambda data: data + hostile.box(b"mfra", hostile.box(b"tfra", bytes(4), hostile.MARKER)),
}


@pytest.mark.parametrize("smuggle", SMUGGLING_FRAGMENTS.values(), ids=SMUGGLING_FRAGMENTS.keys())
def test_bytes_hidden_in_a_fragmented_file_never_reach_the_output(smuggle: Callable[[bytes], bytes]) -> None:
    original = media.mp4_fragmented("aac", True)
    smuggling = smuggle(original)
    assert hostile.MARKER in smuggling
    cleaned = clean_one(smuggling).data
    assert hostile.MARKER not in cleaned and b"udta" not in cleaned
    assert cleaned == clean_one(original).data
    assert media.decoded_seconds(cleaned) == pytest.approx(media.decoded_seconds(original), abs=0.1)


def first_sample_size_grown(data: bytes, by: int) -> bytes:
    trun = data.find(b"trun", data.find(b"moof")) + 4
    assert data[trun + 3] == 0x01 and data[trun + 2] & 0x02  # a data offset, then each sample's size (FFmpeg)
    size = struct.unpack_from(">I", data, trun + 12)[0]
    return hostile.first_fragment_with(data, b"trun", 12, size + by)


def without_first_media_data(data: bytes) -> bytes:
    mdat = data.find(b"mdat", data.find(b"moof")) - 4
    return data[:mdat] + data[mdat + int.from_bytes(data[mdat : mdat + 4], "big") :]


# How an attacker (or a broken muxer) damages a fragmented file, and what the cleaner says when it refuses it.
BROKEN_FRAGMENTS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "run-outside-the-file": (lambda data: hostile.first_fragment_with(data, b"trun", 8, 0x7FFFFFF0), "outside"),
    "negative-data-offset": (lambda data: hostile.first_fragment_with(data, b"trun", 8, -8, signed=True), "before"),
    "run-inside-its-moof": (lambda data: hostile.first_fragment_with(data, b"trun", 8, 8), "outside the file, or"),
    "sizes-past-the-mdat": (lambda data: first_sample_size_grown(data, 200), "outside their fragment's media"),
    "sizes-past-the-file": (lambda data: first_sample_size_grown(data, 10_000_000), "outside the file"),
    "another-track": (lambda data: hostile.first_fragment_with(data, b"tfhd", 4, 2), "undeclared track"),
    "two-bases": (lambda data: hostile.first_fragment_with(data, b"tfhd", 0, 0x020001), "two bases"),
    "empty-duration-flag": (lambda data: hostile.first_fragment_with(data, b"tfhd", 0, 0x010000), "empty fragment"),
    "second-description": (
        lambda data: data.replace(
            b"trex" + bytes(7) + b"\1" + bytes(3) + b"\1", b"trex" + bytes(7) + b"\1" + bytes(3) + b"\2"
        ),
        "one sample description",
    ),
    "four-billion-samples": (
        lambda data: hostile.first_fragment_with(
            hostile.first_fragment_with(data, b"trun", 0, 1), b"trun", 4, 2**32 - 1
        ),
        "more samples than the file holds",
    ),
    "three-hours-and-more": (lambda data: hostile.first_fragment_with(data, b"tfhd", 8, 2**32 - 1), "too long"),
    "fragment-without-its-mdat": (without_first_media_data, "without its media data"),
    "no-trex": (lambda data: data.replace(b"trex", b"free"), "no fragment defaults"),
    "samples-in-the-moov-too": (
        lambda data: data.replace(b"stsz" + bytes(12), b"stsz" + bytes(11) + b"\1"),
        "samples in the moov",
    ),
}


@pytest.mark.parametrize(("damage", "reason"), BROKEN_FRAGMENTS.values(), ids=BROKEN_FRAGMENTS.keys())
def test_a_fragmented_file_that_lies_about_its_samples_is_refused(
    damage: Callable[[bytes], bytes], reason: str
) -> None:
    original = media.mp4_fragmented("aac", True)
    damaged = damage(original)
    assert damaged != original
    with pytest.raises(Unclean, match=reason):
        mp4.remux(damaged)
    assert refusal(damaged).reason == attachments.VOICE_UNREADABLE


def test_a_fragmented_file_built_to_blow_up_its_tables_stays_near_its_size() -> None:
    data = hostile.m4a_fragmented_samples(200_000)  # one run of 200 000 four-byte samples, durations alternating
    tracemalloc.start()
    cleaned = clean_one(data).data
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < attachments.audio_cost("m4a", len(data)) - attachments.audio_cost("m4a", 0)  # what M4A reserves
    assert len(cleaned) < 1.5 * len(data)  # each sample's duration (in stts) and size (stsz): 16 bytes for 12
    # A run that declares more samples than its file could hold is refused before any table is made.
    many = hostile.first_fragment_with(hostile.m4a_fragmented_samples(100, sample_size=100), b"trun", 4, 1000)
    with pytest.raises(Unclean, match="more samples than the file holds"):
        mp4.remux(many)


def test_a_fragmented_files_encoder_delay_is_kept_to_the_end_of_its_samples() -> None:
    original = media.mp4_fragmented("aac", True)
    elst = hostile.box(b"elst", bytes(4), struct.pack(">IIiI", 1, 0, 1024, 0x10000))  # "to the end", after 1024
    delayed = hostile.mp4_grown(original, [b"moov", b"trak"], hostile.box(b"edts", elst))
    cleaned = clean_one(delayed).data
    mvhd = cleaned.find(b"mvhd") + 4
    timescale, movie_duration = struct.unpack_from(">II", cleaned, mvhd + 12)
    mdhd = cleaned.find(b"mdhd") + 4
    rate, samples = struct.unpack_from(">II", cleaned, mdhd + 12)
    edit = cleaned.find(b"elst") + 4
    assert struct.unpack_from(">IIiI", cleaned, edit + 4) == (
        1,
        movie_duration - 1024 * timescale // rate,
        1024,
        0x10000,
    )
    assert movie_duration == samples * timescale // rate
    assert media.decoded_seconds(cleaned) == pytest.approx(media.decoded_seconds(original) - 1024 / rate, abs=0.01)
