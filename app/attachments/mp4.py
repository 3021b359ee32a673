"""MP4 / M4A / 3GP voice notes: a whitelist re-muxer.

Only the sound tracks' codec configuration, sample tables and media chunks are copied into a new
ftyp + moov + mdat file; udta (©xyz location, ©too, ©mak...), meta (ilst tags, XMP), uuid boxes, other tracks,
creation times and everything between the chunks are left behind.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from app.attachments._common import Unclean, checked

_MP4_AUDIO_CODECS = {
    b"mp4a", b"samr", b"sawb", b"alac", b"Opus", b"fLaC", b".mp3", b"ac-3", b"ec-3", b"ulaw", b"alaw", b"sowt",
    b"twos", b"lpcm", b"ipcm",
}  # fmt: skip
_STBL_KEEP = {b"stsd", b"stts", b"ctts", b"stsc", b"stsz", b"stss", b"sgpd", b"sbgp", b"cslg", b"sdtp"}
_FRAGMENTED = {b"moof", b"mfra", b"mvex", b"sidx", b"styp", b"ssix"}


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


def _without_times(payload: bytes, minimum: tuple[int, int]) -> bytearray:
    """An mvhd/tkhd/mdhd payload with its creation and modification times set to zero."""
    cleaned = bytearray(payload)
    version = cleaned[0] if cleaned else 255
    if version > 1 or len(cleaned) < minimum[version]:
        raise Unclean("bad header box")
    cleaned[4 : 20 if version == 1 else 12] = bytes(16 if version == 1 else 8)
    return cleaned


@dataclass
class _Track:
    tkhd: bytes
    edts: bytes
    mdhd: bytes
    stbl: list[bytes]  # whitelisted sample-table boxes, with b"" where the chunk offsets go
    chunks: list[tuple[int, int]]  # (offset in the original file, size)
    new_offsets: list[int] = field(default_factory=list)


def remux(data: bytes, ftyp: bytes) -> bytes:
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
        # ftyp is rewritten; free, skip, wide, uuid, meta and every other top-level box are dropped.
    if moov is None:
        raise Unclean("no moov")
    mvhd: bytes | None = None
    tracks: list[_Track] = []
    for kind, start, end in _boxes(data, *moov):
        if kind == b"mvhd":
            mvhd = _box(b"mvhd", _without_times(data[start:end], (100, 112)))
        elif kind == b"trak":
            track = _read_track(data, start, end, mdats)
            if track is not None:
                tracks.append(track)
        elif kind in _FRAGMENTED:
            raise Unclean("fragmented MP4")
        # udta (©xyz, loci, ©too, ©mak...), meta (ilst tags, XMP), uuid, iods: dropped.
    if mvhd is None or not tracks:
        raise Unclean("no audio track")
    # Chunks keep their original order; everything between them in the old mdat is left behind.
    ordered = sorted(
        ((chunk, track, n) for track in tracks for n, chunk in enumerate(track.chunks)), key=lambda item: item[0]
    )
    if sum(size for (_, size), _, _ in ordered) > sum(end - start for start, end in mdats):
        raise Unclean("chunks overlap")  # a table pointing at the same bytes again and again
    for track in tracks:
        track.new_offsets = [0] * len(track.chunks)
    base = len(ftyp) + len(_moov(mvhd, tracks)) + 8
    for (_, size), track, n in ordered:
        track.new_offsets[n] = base
        base += size
    payload = b"".join(data[offset : offset + size] for (offset, size), _, _ in ordered)
    return b"".join((ftyp, _moov(mvhd, tracks), struct.pack(">I4s", 8 + len(payload), b"mdat"), payload))


def _moov(mvhd: bytes, tracks: list[_Track]) -> bytes:
    traks = []
    for track in tracks:
        offsets = track.new_offsets
        stco = _box(b"stco", struct.pack(f">II{len(offsets)}I", 0, len(offsets), *offsets))
        stbl = _box(b"stbl", *(box or stco for box in track.stbl))
        dinf = _box(b"dinf", _box(b"dref", struct.pack(">II", 0, 1), _box(b"url ", b"\0\0\0\1")))
        minf = _box(b"minf", _box(b"smhd", bytes(8)), dinf, stbl)
        hdlr = _box(b"hdlr", bytes(8), b"soun", bytes(12), b"SoundHandler\0")
        traks.append(_box(b"trak", track.tkhd, track.edts, _box(b"mdia", track.mdhd, hdlr, minf)))
    return _box(b"moov", mvhd, *traks)


def _read_track(data: bytes, start: int, end: int, mdats: list[tuple[int, int]]) -> _Track | None:
    """A sound track's whitelisted boxes and chunks; None for any other track (video, text, timed metadata)."""
    trak = _children(data, start, end)
    mdia = _children(data, *trak[b"mdia"]) if b"mdia" in trak else {}
    if b"hdlr" not in mdia or data[mdia[b"hdlr"][0] + 8 : mdia[b"hdlr"][0] + 12] != b"soun":
        return None
    if b"tkhd" not in trak or b"mdhd" not in mdia or b"minf" not in mdia:
        raise Unclean("incomplete sound track")
    tkhd = _box(b"tkhd", _without_times(data[slice(*trak[b"tkhd"])], (84, 96)))
    mdhd_payload = _without_times(data[slice(*mdia[b"mdhd"])], (24, 36))
    language = 32 if mdhd_payload[0] == 1 else 20
    mdhd_payload[language : language + 2] = b"\x55\xc4"  # "und"
    edts = b""
    if b"edts" in trak:
        elst = _children(data, *trak[b"edts"]).get(b"elst")
        edts = _box(b"edts", _box(b"elst", data[slice(*elst)])) if elst else b""
    minf = _children(data, *mdia[b"minf"])
    if b"stbl" not in minf:
        raise Unclean("no sample table")
    _check_dref(data, minf.get(b"dinf"))
    stbl: list[bytes] = []
    tables: dict[bytes, bytes] = {}
    for kind, box_start, box_end in _boxes(data, *minf[b"stbl"]):
        payload = data[box_start:box_end]
        if kind in (b"stco", b"co64"):
            if b"stco" in tables or b"co64" in tables:
                raise Unclean("two chunk offset tables")
            stbl.append(b"")
        elif kind in _STBL_KEEP and kind not in tables:
            stbl.append(_box(kind, payload))
        elif kind == b"stz2":
            raise Unclean("compact sample sizes")
        else:
            continue
        tables[kind] = payload
    _check_sample_entries(tables.get(b"stsd", b""))
    chunks = _chunks(tables, mdats)
    return _Track(tkhd, edts, _box(b"mdhd", mdhd_payload), stbl, chunks)


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


def _check_sample_entries(stsd: bytes) -> None:
    if len(stsd) < 8:
        raise Unclean("no sample description")
    count = int.from_bytes(stsd[4:8], "big")
    entries = [kind for kind, _, _ in _boxes(stsd, 8, len(stsd))]
    if count < 1 or len(entries) != count or not set(entries) <= _MP4_AUDIO_CODECS:
        raise Unclean("unknown audio codec")


def _table(payload: bytes, width: int, minimum: int = 8) -> tuple[int, ...]:
    """The entries of a full box's table: (count) then count * `width` big-endian 32-bit values."""
    if len(payload) < minimum:
        raise Unclean("short table")
    count = int.from_bytes(payload[minimum - 4 : minimum], "big")
    if len(payload) < minimum + 4 * width * count:
        raise Unclean("short table")
    return struct.unpack_from(f">{count * width}I", payload, minimum)


def _chunks(tables: dict[bytes, bytes], mdats: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(offset, size) of every chunk, each checked to lie inside an mdat box."""
    if b"stco" in tables:
        offsets: Sequence[int] = _table(tables[b"stco"], 1)
    elif b"co64" in tables:
        pairs = _table(tables[b"co64"], 2)
        offsets = [high << 32 | low for high, low in zip(pairs[::2], pairs[1::2], strict=True)]
    else:
        raise Unclean("no chunk offsets")
    if b"stsc" not in tables or b"stsz" not in tables:
        raise Unclean("no sample-to-chunk or sample size table")
    stsc = _table(tables[b"stsc"], 3)
    per_chunk = [0] * len(offsets)
    firsts = [*stsc[0::3], len(offsets) + 1]
    for n, samples in enumerate(stsc[1::3]):
        if not 1 <= firsts[n] < firsts[n + 1] <= len(offsets) + 1:
            raise Unclean("bad sample-to-chunk table")
        per_chunk[firsts[n] - 1 : firsts[n + 1] - 1] = [samples] * (firsts[n + 1] - firsts[n])
    stsz = tables[b"stsz"]
    if len(stsz) < 12:
        raise Unclean("short sample size table")
    constant, count = struct.unpack_from(">II", stsz, 4)
    sizes = () if constant else _table(stsz, 1, 12)  # one size for all samples, or one each
    if sum(per_chunk) != count or not count:
        raise Unclean("sample counts disagree")
    ends = [0, *accumulate(sizes)]
    chunks: list[tuple[int, int]] = []
    first = 0
    for offset, samples in zip(offsets, per_chunk, strict=True):
        size = samples * constant if constant else ends[first + samples] - ends[first]
        first += samples
        if size and not any(start <= offset and offset + size <= end for start, end in mdats):
            raise Unclean("chunk outside the media data")
        chunks.append((offset, size))
    return chunks


def _mp4_ftyp(brand: bytes, *compatible: bytes) -> bytes:
    return _box(b"ftyp", brand, bytes(4), brand, *compatible)


def clean_m4a(data: bytes) -> bytes:
    return checked(remux(data, _mp4_ftyp(b"M4A ", b"mp42", b"isom")), "mp4")


def clean_3gp(data: bytes) -> bytes:
    return checked(remux(data, _mp4_ftyp(b"3gp4", b"isom")), "mp4")
