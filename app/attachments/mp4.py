"""MP4 / M4A / 3GP voice notes: a whitelist re-muxer that writes every kept box from its parsed fields.

The first sound track is read: its timescales and durations, its edit list, its sample entry's audio fields and
codec configuration (esds, damr or dOps, themselves parsed), and its sample tables; the chunks they point at are
copied into a new ftyp + moov + mdat file. Nothing is copied as a block of bytes but the audio frames: udta
(©xyz location, ©too, ©mak...), meta, uuid, sgpd/sdtp, children nested in a sample entry, bytes appended to a box,
other tracks, creation times and everything between the chunks are left behind. The after-cleaning check cleans
the output again and requires the same bytes: every byte of it is a parsed field or an audio frame.
"""

from __future__ import annotations

import functools
import itertools
import struct
import sys
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from app.attachments import configs
from app.attachments._common import Unclean, checked, settled

_FRAGMENTED = {b"moof", b"mfra", b"mvex", b"sidx", b"styp", b"ssix"}
_MAX_BOXES = 64  # mdat boxes or tracks: a recorder writes one or two; a hostile file millions (memory)
_UNITY = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) for each ISO-BMFF box in data[start:end]."""
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


def _children(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """The first box of each type among data[start:end]'s boxes."""
    found: dict[bytes, tuple[int, int]] = {}
    for kind, payload, box_end in _boxes(data, start, end):
        found.setdefault(kind, (payload, box_end))
    return found


def _box(kind: bytes, *payload: bytes | bytearray) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _times(payload: bytes, need: tuple[int, int]) -> tuple[int, int]:
    """(version, where the timescale-or-track-ID field starts) of an mvhd/tkhd/mdhd payload, checked for length."""
    version = payload[0] if payload else 255
    if version > 1 or len(payload) < need[version]:
        raise Unclean("bad header box")
    return version, 20 if version == 1 else 12


def _u32s(payload: bytes, start: int, count: int) -> array[int]:
    """`count` big-endian 32-bit values from payload[start:], as a compact array (4 bytes each, not a Python int)."""
    if count < 0 or len(payload) < start + 4 * count:
        raise Unclean("short table")
    values = array("I", payload[start : start + 4 * count])
    if sys.byteorder == "little":
        values.byteswap()
    return values


def _table(payload: bytes, width: int, header: int = 8) -> array[int]:
    """A full box's table: its count (the 32 bits before `header`) times `width` 32-bit values."""
    if len(payload) < header:
        raise Unclean("short table")
    return _u32s(payload, header, int.from_bytes(payload[header - 4 : header], "big") * width)


def _be(values: array[int]) -> bytes:
    out = array(values.typecode, values)
    if sys.byteorder == "little":
        out.byteswap()
    return out.tobytes()


@dataclass
class _Track:
    timescale: int  # the media's (mdhd)
    duration: int  # in the media's timescale
    movie_duration: int  # in the movie's timescale (tkhd)
    edits: list[tuple[int, int, int]]  # (segment duration, media time, rate)
    entry: bytes  # the sample entry, rebuilt
    stts: array[int]
    stsc: array[int]
    stsz: tuple[int, array[int] | int]  # (one size for all, or 0 and each sample's), sample count when constant
    chunks: array[int]  # (offset, size) pairs in the original file


def remux(data: bytes) -> bytes:
    """The sound of an MP4 file, rebuilt from its parsed fields and its audio frames."""
    return _write(data, *_read(data))


def _read(data: bytes) -> tuple[bytes, tuple[int, int], _Track]:
    moov: tuple[int, int] | None = None
    mdats: list[tuple[int, int]] = []
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind in _FRAGMENTED:
            raise Unclean("fragmented MP4")
        if kind == b"moov":
            if moov is not None:
                raise Unclean("two moov boxes")
            moov = (start, end)
        elif kind == b"mdat":
            mdats.append((start, end))
            if len(mdats) > _MAX_BOXES:
                raise Unclean("too many mdat boxes")
    if moov is None:
        raise Unclean("no moov")
    children = _children(data, *moov)
    if _FRAGMENTED & set(children):
        raise Unclean("fragmented MP4")
    if b"mvhd" not in children:
        raise Unclean("no movie header")
    mvhd = data[slice(*children[b"mvhd"])]
    version, at = _times(mvhd, (100, 112))
    timescale = int.from_bytes(mvhd[at : at + 4], "big")
    duration = int.from_bytes(mvhd[at + 4 : at + (12 if version else 8)], "big")
    traks = itertools.islice(((start, end) for kind, start, end in _boxes(data, *moov) if kind == b"trak"), _MAX_BOXES)
    track = next((t for t in (_read_track(data, *trak, mdats) for trak in traks) if t is not None), None)
    if track is None or not timescale:
        raise Unclean("no audio track")
    brand = b"3gp4" if data[8:11] == b"3gp" else b"M4A "
    return brand, (timescale, duration), track


def _read_track(data: bytes, start: int, end: int, mdats: list[tuple[int, int]]) -> _Track | None:
    """A sound track's fields, tables and chunks; None for any other track (video, text, timed metadata)."""
    trak = _children(data, start, end)
    mdia = _children(data, *trak[b"mdia"]) if b"mdia" in trak else {}
    if b"hdlr" not in mdia or data[mdia[b"hdlr"][0] + 8 : mdia[b"hdlr"][0] + 12] != b"soun":
        return None
    if b"tkhd" not in trak or b"mdhd" not in mdia or b"minf" not in mdia:
        raise Unclean("incomplete sound track")
    tkhd = data[slice(*trak[b"tkhd"])]
    version, at = _times(tkhd, (84, 96))
    movie_duration = int.from_bytes(tkhd[at + 8 : at + (16 if version else 12)], "big")
    mdhd = data[slice(*mdia[b"mdhd"])]
    version, at = _times(mdhd, (24, 36))
    timescale = int.from_bytes(mdhd[at : at + 4], "big")
    duration = int.from_bytes(mdhd[at + 4 : at + (12 if version else 8)], "big")
    edits = _edits(data, trak.get(b"edts"))
    minf = _children(data, *mdia[b"minf"])
    if b"stbl" not in minf or not timescale:
        raise Unclean("no sample table")
    _check_dref(data, minf.get(b"dinf"))
    stbl = _children(data, *minf[b"stbl"])
    if b"stz2" in stbl or (b"stco" in stbl) == (b"co64" in stbl):
        raise Unclean("compact sample sizes, or not one chunk offset table")
    for needed in (b"stsd", b"stts", b"stsc", b"stsz"):
        if needed not in stbl:
            raise Unclean("incomplete sample table")
    entry = _sample_entry(data[slice(*stbl[b"stsd"])])
    stts = _table(data[slice(*stbl[b"stts"])], 2)
    stsc = _table(data[slice(*stbl[b"stsc"])], 3)
    stsz = data[slice(*stbl[b"stsz"])]
    if len(stsz) < 12:
        raise Unclean("short sample size table")
    constant, count = struct.unpack_from(">II", stsz, 4)
    sizes: array[int] | int = count if constant else _u32s(stsz, 12, count)
    if b"stco" in stbl:
        offsets = _table(data[slice(*stbl[b"stco"])], 1)
    else:
        pairs = _table(data[slice(*stbl[b"co64"])], 2)
        offsets = array("Q", (high << 32 | low for high, low in zip(pairs[::2], pairs[1::2], strict=True)))
        del pairs
    chunks = _chunks(offsets, stsc, constant, sizes, mdats)
    return _Track(timescale, duration, movie_duration, edits, entry, stts, stsc, (constant, sizes), chunks)


def _edits(data: bytes, edts: tuple[int, int] | None) -> list[tuple[int, int, int]]:
    """The edit list's entries (encoder delay, a late start): (segment duration, media time, rate)."""
    elst = _children(data, *edts).get(b"elst") if edts else None
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
    if dinf is None:
        return
    dref = _children(data, *dinf).get(b"dref")
    if dref is None:
        return
    for kind, start, end in _boxes(data, dref[0] + 8, dref[1]):
        if kind not in (b"url ", b"alis") or end - start < 4 or not data[start + 3] & 1:
            raise Unclean("external data reference")


def _chunks(
    offsets: array[int], stsc: array[int], constant: int, sizes: array[int] | int, mdats: list[tuple[int, int]]
) -> array[int]:
    """(offset, size) of every chunk, each checked to lie inside an mdat box, none reused."""
    firsts = [*stsc[0::3], len(offsets) + 1]
    count = sizes if isinstance(sizes, int) else len(sizes)
    chunks = array("Q", bytes(16 * len(offsets)))
    sample = total = 0
    for run, per_chunk in enumerate(stsc[1::3]):
        if not 1 <= firsts[run] < firsts[run + 1] <= len(offsets) + 1 or not per_chunk:
            raise Unclean("bad sample-to-chunk table")
        for n in range(firsts[run] - 1, firsts[run + 1] - 1):
            if sample + per_chunk > count:
                raise Unclean("sample counts disagree")
            size = per_chunk * constant if isinstance(sizes, int) else sum(sizes[sample : sample + per_chunk])
            offset = offsets[n]
            if not any(start <= offset and offset + size <= end for start, end in mdats):
                raise Unclean("chunk outside the media data")
            chunks[2 * n], chunks[2 * n + 1] = offset, size
            sample += per_chunk
            total += size
    if sample != count or not count or firsts[0] != 1:
        raise Unclean("sample counts disagree")
    if total > sum(end - start for start, end in mdats):
        raise Unclean("chunks overlap")  # a table pointing at the same bytes again and again
    return chunks


def _write(data: bytes, brand: bytes, movie: tuple[int, int], track: _Track) -> bytes:
    ftyp = _box(b"ftyp", brand, bytes(4), brand, b"isom" if brand.startswith(b"3gp") else b"mp42isom")
    count = len(track.chunks) // 2
    # The chunk table's length does not depend on its values: lay out with zeros, then write the real offsets.
    position = len(ftyp) + len(_moov(movie, track, array("I", bytes(4 * count)))) + 8
    offsets = array("I", bytes(4 * count))
    for n in range(count):
        offsets[n] = position
        position += track.chunks[2 * n + 1]
    if position > 0xFFFFFFFF:
        raise Unclean("too large")
    out = bytearray(ftyp + _moov(movie, track, offsets))
    out += struct.pack(">I4s", position - len(out), b"mdat")
    view = memoryview(data)
    for n in range(count):
        offset = track.chunks[2 * n]
        out += view[offset : offset + track.chunks[2 * n + 1]]
    return bytes(out)


def _full(kind: bytes, version: int, *fields: bytes, flags: int = 0) -> bytes:
    return _box(kind, bytes([version]), flags.to_bytes(3, "big"), *fields)


def _moov(movie: tuple[int, int], track: _Track, offsets: array[int]) -> bytes:
    timescale, duration = movie
    wide = max(duration, track.duration, track.movie_duration) > 0xFFFFFFFF
    span = ">Q" if wide else ">I"
    zero = bytes(16 if wide else 8)  # creation and modification times
    mvhd = _full(
        b"mvhd", wide, zero, struct.pack(">I", timescale), struct.pack(span, duration),
        struct.pack(">IH10x", 0x10000, 0x100), _UNITY, bytes(24), struct.pack(">I", 2),
    )  # fmt: skip
    tkhd = _full(
        b"tkhd", wide, zero, struct.pack(">I4x", 1), struct.pack(span, track.movie_duration),
        struct.pack(">8xhhH2x", 0, 0, 0x100), _UNITY, bytes(8), flags=3,
    )  # fmt: skip
    language = b"\x55\xc4\0\0"  # "und"
    mdhd = _full(b"mdhd", wide, zero, struct.pack(">I", track.timescale), struct.pack(span, track.duration), language)
    edts = b""
    if track.edits:
        long = any(not 0 <= value <= 0x7FFFFFFF for edit in track.edits for value in edit[:2])
        layout = ">QqI" if long else ">IiI"
        entries = b"".join(struct.pack(layout, *edit) for edit in track.edits)
        edts = _box(b"edts", _full(b"elst", long, struct.pack(">I", len(track.edits)), entries))
    constant, sizes = track.stsz
    stsc = array("I", track.stsc)
    stsc[2::3] = array("I", [1]) * (len(stsc) // 3)  # one sample entry
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, struct.pack(">I", 1), track.entry),
        _full(b"stts", 0, struct.pack(">I", len(track.stts) // 2), _be(track.stts)),
        _full(b"stsc", 0, struct.pack(">I", len(stsc) // 3), _be(stsc)),
        _full(b"stsz", 0, struct.pack(">II", constant, sizes) if isinstance(sizes, int) else
              struct.pack(">II", 0, len(sizes)) + _be(sizes)),
        _full(b"stco", 0, struct.pack(">I", len(offsets)), _be(offsets)),
    )  # fmt: skip
    dinf = _box(b"dinf", _full(b"dref", 0, struct.pack(">I", 1), _full(b"url ", 0, flags=1)))
    minf = _box(b"minf", _full(b"smhd", 0, bytes(4)), dinf, stbl)
    hdlr = _full(b"hdlr", 0, bytes(4), b"soun", bytes(12), b"SoundHandler\0")
    return _box(b"moov", mvhd, _box(b"trak", tkhd, edts, _box(b"mdia", mdhd, hdlr, minf)))


# Sample entry → its codec configuration box and the function that rebuilds its payload (None: it has none).
_CONFIGS: dict[bytes, tuple[bytes, Callable[[bytes], bytes]] | None] = {
    b"mp4a": (b"esds", configs.esds),
    b"samr": (b"damr", configs.damr),
    b"sawb": (b"damr", configs.damr),
    b"Opus": (b"dOps", functools.partial(configs.opus, ogg=False)),
    b".mp3": None, b"sowt": None, b"twos": None, b"ulaw": None, b"alaw": None,
}  # fmt: skip


def _sample_entry(stsd: bytes) -> bytes:
    """The one audio sample entry, rebuilt: its audio fields and its codec configuration, no other child."""
    if len(stsd) < 8 or int.from_bytes(stsd[4:8], "big") != 1:
        raise Unclean("not one sample description")
    entries = list(itertools.islice(_boxes(stsd, 8, len(stsd)), 2))
    if len(entries) != 1 or entries[0][0] not in _CONFIGS or entries[0][2] - entries[0][1] < 28:
        raise Unclean("unknown audio codec")
    kind, start, end = entries[0]
    version = int.from_bytes(stsd[start + 8 : start + 10], "big")
    if version > 1:
        raise Unclean("unknown sample entry version")
    channels, bits = struct.unpack_from(">HH", stsd, start + 16)
    rate = int.from_bytes(stsd[start + 24 : start + 28], "big")
    fields = struct.pack(">6xH8xHH4xI", 1, channels, bits, rate)  # QuickTime's version 1 fields are not needed
    config = _CONFIGS[kind]
    if config is None:
        return _box(kind, fields)
    child, rebuild = config
    found = _children(stsd, start + 28 + (16 if version else 0), end).get(child)
    if found is None:
        raise Unclean("no codec configuration")
    return _box(kind, fields, _box(child, rebuild(stsd[slice(*found)])))


def clean_m4a(data: bytes) -> bytes:
    """M4A or 3GP (the output keeps the family of the input's brand), proven clean, read back by mutagen."""
    return checked(settled(remux, data), "mp4")
