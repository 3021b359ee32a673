"""MP4 / M4A / 3GP voice notes: a whitelist re-muxer that writes every kept box from its parsed fields.

The first sound track is read: its timescales and durations, its edit list, its sample entry (`configs`) and its
sample tables (a fragmented file's, as MediaRecorder writes it, from its fragments: `fragments`); the chunks they
point at are copied into a new ftyp + moov + mdat file. Nothing is copied as a block of bytes but the audio frames:
udta (©xyz location, ©too, ©mak...), meta, uuid, sgpd/sdtp, children nested in a sample entry, bytes appended to a
box, other tracks, creation times and everything between the chunks are left behind. The after-cleaning check
cleans the output again and requires the same bytes.

Memory: the tables are held as arrays of 32-bit values (never one Python object per sample or chunk), so a file's
tables take about what they take in the file (`app.attachments.audio_cost`).
"""

from __future__ import annotations

import itertools
import operator
import struct
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from app.attachments import configs, fragments
from app.attachments._common import MAX_SECONDS, Unclean, checked, settled
from app.attachments.boxes import box, boxes, children, full, u32s

_MAX_BOXES = 64  # mdat boxes or tracks: a recorder writes one or two; a hostile file millions (memory)
_MAX_RATE = 400  # samples a second at most: Opus's shortest frame is 2.5 ms (AAC's are 21 ms, AMR's 20 ms)
_UNITY = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@dataclass
class _Track:
    timescale: int  # the media's (mdhd)
    duration: int  # in the media's timescale
    movie_duration: int  # in the movie's timescale (tkhd)
    edits: list[tuple[int, int, int]]  # (segment duration, media time, rate)
    entry: bytes  # the sample entry, rebuilt
    stts: array[int]
    stsc: array[int]
    constant: int  # one size for every sample, or 0
    sizes: array[int] | int  # each sample's size, or the sample count when `constant`
    offsets: array[int]  # each chunk's offset in the original file
    lengths: array[int]  # and its length


def remux(data: bytes) -> bytes:
    """The sound of an MP4 file, rebuilt from its parsed fields and its audio frames."""
    return _write(data, *_read(data))


def clean_m4a(data: bytes) -> bytes:
    """M4A or 3GP (the output keeps the family of the input's brand), proven clean, read back by mutagen."""
    return checked(settled(remux, data), "mp4")


def _table(data: bytes, where: tuple[int, int], width: int, header: int = 8) -> array[int]:
    """A full box's table: its count (the 32 bits before `header`) times `width` 32-bit values."""
    start, end = where
    if end - start < header:
        raise Unclean("short table")
    count = int.from_bytes(data[start + header - 4 : start + header], "big")
    return u32s(data, start + header, count * width, end)


def _be(values: array[int]) -> bytes:
    out = array(values.typecode, values)
    if sys.byteorder == "little":
        out.byteswap()
    return out.tobytes()


def _times(payload: bytes, need: tuple[int, int]) -> tuple[int, int, int]:
    """(version, where the timescale (or track ID) is, the duration after it) of an mvhd/tkhd/mdhd payload."""
    version = payload[0] if payload else 255
    if version > 1 or len(payload) < need[version]:
        raise Unclean("bad header box")
    at = 20 if version == 1 else 12
    return version, at, int.from_bytes(payload[at + 4 : at + (12 if version else 8)], "big")


def _read(data: bytes) -> tuple[bytes, tuple[int, int], _Track]:
    moov: tuple[int, int] | None = None
    mdats: list[tuple[int, int]] = []
    fragmented = False
    for kind, start, end in boxes(data, 0, len(data)):
        if kind == b"moov":
            if moov is not None:
                raise Unclean("two moov boxes")
            moov = (start, end)
        elif kind == b"mdat" and len(mdats) <= _MAX_BOXES:
            mdats.append((start, end))
        fragmented = fragmented or kind == b"moof"
    if moov is None:
        raise Unclean("no moov")
    found = children(data, *moov)
    mvex = found.get(b"mvex")
    if b"mvhd" not in found or (fragmented and mvex is None) or (not fragmented and len(mdats) > _MAX_BOXES):
        raise Unclean("no movie header, fragments without their defaults, or too many mdat boxes")
    mvhd = data[slice(*found[b"mvhd"])]
    _, at, duration = _times(mvhd, (100, 112))
    timescale = int.from_bytes(mvhd[at : at + 4], "big")
    traks = ((start, end) for kind, start, end in boxes(data, *moov) if kind == b"trak")
    heads = [children(data, *trak) for trak in itertools.islice(traks, _MAX_BOXES)]
    reader: _Fragments | None = None
    if fragmented and mvex is not None:  # the samples are in movie fragments (MediaRecorder's MP4): `fragments`
        ids = {_track_id(data, trak) for trak in heads}
        reader = lambda track, scale: fragments.read(data, mvex, track, ids - {track}, scale)  # noqa: E731
    tracks = (_read_track(data, trak, mdats, timescale, reader) for trak in heads)
    track = next((track for track in tracks if track is not None), None)
    if track is None or not timescale:
        raise Unclean("no audio track")
    if reader is not None:
        duration = track.movie_duration
    return b"3gp4" if data[8:11] == b"3gp" else b"M4A ", (timescale, duration), track


_Fragments = Callable[[int, int], fragments.Samples]  # (track ID, media timescale) -> its samples


def _track_id(data: bytes, trak: dict[bytes, tuple[int, int]]) -> int:
    if b"tkhd" not in trak:
        raise Unclean("no track header")
    tkhd = data[slice(*trak[b"tkhd"])]
    _, at, _ = _times(tkhd, (84, 96))
    return int.from_bytes(tkhd[at : at + 4], "big")


def _read_track(
    data: bytes, trak: dict[bytes, tuple[int, int]], mdats: list[tuple[int, int]], movie: int, read: _Fragments | None
) -> _Track | None:
    """A sound track's fields, tables and chunks; None for any other track (video, text, timed metadata)."""
    mdia = children(data, *trak[b"mdia"]) if b"mdia" in trak else {}
    if b"hdlr" not in mdia or data[mdia[b"hdlr"][0] + 8 : mdia[b"hdlr"][0] + 12] != b"soun":
        return None
    if b"tkhd" not in trak or b"mdhd" not in mdia or b"minf" not in mdia:
        raise Unclean("incomplete sound track")
    tkhd = data[slice(*trak[b"tkhd"])]
    version, at, _ = _times(tkhd, (84, 96))  # a track header's duration follows its ID and a reserved field
    movie_duration = int.from_bytes(tkhd[at + 8 : at + (16 if version else 12)], "big")
    mdhd = data[slice(*mdia[b"mdhd"])]
    _, at, duration = _times(mdhd, (24, 36))
    timescale = int.from_bytes(mdhd[at : at + 4], "big")
    if not timescale or duration > MAX_SECONDS * timescale:
        raise Unclean("no timescale, or too long")
    minf = children(data, *mdia[b"minf"])
    _check_dref(data, minf.get(b"dinf"))
    stbl = children(data, *minf[b"stbl"]) if b"stbl" in minf else {}
    if b"stz2" in stbl or (b"stco" in stbl) == (b"co64" in stbl):
        raise Unclean("compact sample sizes, or not one chunk offset table")
    if not {b"stsd", b"stts", b"stsc", b"stsz"} <= set(stbl) or stbl[b"stsz"][1] - stbl[b"stsz"][0] < 12:
        raise Unclean("incomplete sample table")
    entry = configs.sample_entry(data[slice(*stbl[b"stsd"])])
    constant, count = struct.unpack_from(">II", data, stbl[b"stsz"][0] + 4)
    edits = _edits(data, trak.get(b"edts"))
    if read is not None:
        if count:
            raise Unclean("samples in the moov of a fragmented file")
        found = read(_track_id(data, trak), timescale)
        _check_rate(len(found.sizes), found.duration, timescale)
        movie_duration = found.duration * movie // timescale
        edits = _fragment_edits(edits, found.duration, movie_duration, timescale, movie)
        tables = (found.stts, found.stsc, 0, found.sizes, found.offsets, found.lengths)
        return _Track(timescale, found.duration, movie_duration, edits, entry, *tables)
    _check_rate(count, duration, timescale)
    sizes: array[int] | int = count if constant else u32s(data, stbl[b"stsz"][0] + 12, count, stbl[b"stsz"][1])
    if b"stco" in stbl:
        offsets = _table(data, stbl[b"stco"], 1)
    else:
        pairs = _table(data, stbl[b"co64"], 2)
        if any(pairs[::2]):
            raise Unclean("chunk offsets past 4 GB")
        offsets = pairs[1::2]
    stsc = _table(data, stbl[b"stsc"], 3)
    lengths = _lengths(len(offsets), stsc, constant, sizes)
    _check_chunks(offsets, lengths, mdats)
    stts = _table(data, stbl[b"stts"], 2)
    return _Track(timescale, duration, movie_duration, edits, entry, stts, stsc, constant, sizes, offsets, lengths)


def _check_rate(count: int, duration: int, timescale: int) -> None:
    if count > _MAX_RATE * (duration // timescale + 1):
        raise Unclean("more samples than the duration holds")


def _fragment_edits(
    edits: list[tuple[int, int, int]], duration: int, movie_duration: int, timescale: int, movie: int
) -> list[tuple[int, int, int]]:
    """A fragmented file's edit list, for the plain file: its one edit that skips the encoder's delay, lasting to
    the end of the samples now known (a fragmented file's own may say 0, "to the end"); any other is dropped."""
    if len(edits) != 1 or not 0 <= edits[0][1] < duration or edits[0][2] != 0x10000:
        return []
    return [(movie_duration - edits[0][1] * movie // timescale, edits[0][1], 0x10000)]


def _edits(data: bytes, edts: tuple[int, int] | None) -> list[tuple[int, int, int]]:
    """The edit list's entries (encoder delay, a late start): (segment duration, media time, rate)."""
    elst = children(data, *edts).get(b"elst") if edts else None
    if elst is None:
        return []
    payload = data[slice(*elst)]
    if len(payload) < 8 or payload[0] > 1:
        raise Unclean("bad edit list")
    count = int.from_bytes(payload[4:8], "big")
    layout, width = (">QqI", 20) if payload[0] else (">IiI", 12)
    if count > 16 or len(payload) < 8 + width * count:
        raise Unclean("bad edit list")
    return [struct.unpack_from(layout, payload, 8 + width * n) for n in range(count)]


def _check_dref(data: bytes, dinf: tuple[int, int] | None) -> None:
    """Refuse media that lives outside the file (a data reference that is not "this file")."""
    dref = children(data, *dinf).get(b"dref") if dinf else None
    for kind, start, end in boxes(data, dref[0] + 8, dref[1]) if dref else ():
        if kind not in (b"url ", b"alis") or end - start < 4 or not data[start + 3] & 1:
            raise Unclean("external data reference")


def _lengths(chunks: int, stsc: array[int], constant: int, sizes: array[int] | int) -> array[int]:
    """Each chunk's length in bytes, from the sample-to-chunk runs and the sample sizes."""
    count = sizes if isinstance(sizes, int) else len(sizes)
    firsts = [*stsc[0::3], chunks + 1]
    if not chunks or firsts[0] != 1:
        raise Unclean("bad sample-to-chunk table")
    if not constant and len(stsc) == 3 and stsc[1] == 1 and count == chunks and not isinstance(sizes, int):
        return sizes  # one sample a chunk, as most recorders write: the chunks' lengths are the samples' sizes
    lengths = array("I", bytes(4 * chunks))
    sample = 0
    for run, per_chunk in enumerate(stsc[1::3]):
        if not 1 <= firsts[run] < firsts[run + 1] <= chunks + 1 or not per_chunk:
            raise Unclean("bad sample-to-chunk table")
        for n in range(firsts[run] - 1, firsts[run + 1] - 1):
            if sample + per_chunk > count:
                raise Unclean("sample counts disagree")
            lengths[n] = per_chunk * constant if isinstance(sizes, int) else sum(sizes[sample : sample + per_chunk])
            sample += per_chunk
    if sample != count:
        raise Unclean("sample counts disagree")
    return lengths


def _check_chunks(offsets: array[int], lengths: array[int], mdats: list[tuple[int, int]]) -> None:
    """Every chunk inside an mdat box, and no bytes used twice (a table pointing at the same bytes again and
    again would make the output many times the input)."""
    if sum(lengths) > sum(end - start for start, end in mdats):
        raise Unclean("chunks overlap")
    if len(mdats) == 1:  # as recorders write: one pass in C over the two tables
        start, end = mdats[0]
        if min(offsets) < start or max(map(operator.add, offsets, lengths)) > end:
            raise Unclean("chunk outside the media data")
        return
    for offset, length in zip(offsets, lengths, strict=True):
        if not any(start <= offset and offset + length <= end for start, end in mdats):
            raise Unclean("chunk outside the media data")


def _write(data: bytes, brand: bytes, movie: tuple[int, int], track: _Track) -> bytes:
    ftyp = box(b"ftyp", brand, bytes(4), brand, b"isom" if brand.startswith(b"3gp") else b"mp42isom")
    # The chunk table's length does not depend on its values: 4 bytes a chunk.
    base = len(ftyp) + _length(_moov(movie, track, array("I"))) + 4 * len(track.offsets) + 8
    offsets = array("I", itertools.accumulate(itertools.islice(track.lengths, len(track.lengths) - 1), initial=base))
    total = sum(track.lengths)
    if base + total > 0xFFFFFFFF:
        raise Unclean("too large")
    out = bytearray(ftyp)
    for part in _moov(movie, track, offsets):
        out += part
    del offsets
    out += struct.pack(">I4s", 8 + total, b"mdat")
    view, start, stop = memoryview(data), track.offsets[0], track.offsets[0]
    for offset, length in zip(track.offsets, track.lengths, strict=True):
        if offset != stop:  # chunks that follow one another in the original are copied at once
            out += view[start:stop]
            start = offset
        stop = offset + length
    out += view[start:stop]
    return bytes(out)


# A box still in parts: written once, at the end, so that a large table is never copied into each enclosing box.
_Parts = list[bytes]


def _nest(kind: bytes, *children: bytes | _Parts) -> _Parts:
    parts = [part for child in children for part in ([child] if isinstance(child, bytes) else child)]
    return [struct.pack(">I4s", 8 + _length(parts), kind), *parts]


def _length(parts: _Parts) -> int:
    return sum(map(len, parts))


def _moov(movie: tuple[int, int], track: _Track, offsets: array[int]) -> _Parts:
    timescale, duration = movie
    wide = max(duration, track.duration, track.movie_duration) > 0xFFFFFFFF
    span = ">Q" if wide else ">I"
    zero = bytes(16 if wide else 8)  # creation and modification times
    mvhd = full(
        b"mvhd", wide, zero, struct.pack(">I", timescale), struct.pack(span, duration),
        struct.pack(">IH10x", 0x10000, 0x100), _UNITY, bytes(24), struct.pack(">I", 2),
    )  # fmt: skip
    tkhd = full(
        b"tkhd", wide, zero, struct.pack(">I4x", 1), struct.pack(span, track.movie_duration),
        struct.pack(">8xhhH2x", 0, 0, 0x100), _UNITY, bytes(8), flags=3,
    )  # fmt: skip
    language = b"\x55\xc4\0\0"  # "und"
    mdhd = full(b"mdhd", wide, zero, struct.pack(">I", track.timescale), struct.pack(span, track.duration), language)
    edts: _Parts = []
    if track.edits:
        long = any(not 0 <= value <= 0x7FFFFFFF for edit in track.edits for value in edit[:2])
        entries = b"".join(struct.pack(">QqI" if long else ">IiI", *edit) for edit in track.edits)
        edts = _nest(b"edts", full(b"elst", long, struct.pack(">I", len(track.edits)), entries))
    stsc = array("I", track.stsc)
    stsc[2::3] = array("I", [1]) * (len(stsc) // 3)  # one sample entry
    sizes = track.sizes
    if isinstance(sizes, int):
        stsz = [full(b"stsz", 0, struct.pack(">II", track.constant, sizes))]
    else:
        stsz = _nest(b"stsz", bytes(4), struct.pack(">II", 0, len(sizes)), _be(sizes))
    stbl = _nest(
        b"stbl",
        full(b"stsd", 0, struct.pack(">I", 1), track.entry),
        full(b"stts", 0, struct.pack(">I", len(track.stts) // 2), _be(track.stts)),
        full(b"stsc", 0, struct.pack(">I", len(stsc) // 3), _be(stsc)),
        stsz,
        _nest(b"stco", bytes(4), struct.pack(">I", len(offsets)), _be(offsets)),
    )
    dinf = box(b"dinf", full(b"dref", 0, struct.pack(">I", 1), full(b"url ", 0, flags=1)))
    minf = _nest(b"minf", full(b"smhd", 0, bytes(4)), dinf, stbl)
    hdlr = full(b"hdlr", 0, bytes(4), b"soun", bytes(12), b"SoundHandler\0")
    return _nest(b"moov", mvhd, _nest(b"trak", tkhd, edts, _nest(b"mdia", mdhd, hdlr, minf)))
