"""Hostile media made on demand: small files declaring huge pictures, sample tables built to exhaust memory, and
marker bytes hidden where a copying cleaner would carry them to the officer.

Every builder here starts from a real file (tests.media) and changes the few bytes an attacker would.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache

from PIL import Image

from tests import media

MARKER = b"SMUGGLED-MARKER-7731"


def chunk(kind: bytes, body: bytes) -> bytes:
    """A PNG chunk: length, type, body, CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_flat(width: int, height: int, colour_type: int = 3) -> bytes:
    """A real, decodable PNG of one colour (palette by default): 50 MP of it compresses to about 50 KB."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    row = bytes(1 + width * channels)
    packer = zlib.compressobj(9)
    body = b"".join([*(packer.compress(row) for _ in range(height)), packer.flush()])
    palette = chunk(b"PLTE", bytes(range(256)) * 3) if colour_type == 3 else b""
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + palette + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def webp_declaring(width: int, height: int) -> bytes:
    """A lossless RGBA WebP of a few hundred bytes whose header declares `width` x `height`."""
    out = io.BytesIO()
    Image.new("RGBA", (64, 64), (10, 20, 30, 128)).save(out, "WEBP", lossless=True)
    data = bytearray(out.getvalue())
    pos = data.find(b"VP8L") + 8
    assert data[pos] == 0x2F
    bits = int.from_bytes(data[pos + 1 : pos + 5], "little")
    bits = bits & ~((1 << 28) - 1) | (width - 1) | (height - 1) << 14
    data[pos + 1 : pos + 5] = bits.to_bytes(4, "little")
    return bytes(data)


def heic_declaring(width: int, height: int, alpha: bool = True) -> bytes:
    """A HEIC (with an alpha plane by default) of a few KB whose image spatial extents declare `width` x `height`."""
    out = io.BytesIO()
    Image.new("RGBA" if alpha else "RGB", (64, 64), (10, 20, 30, 128)[: 4 if alpha else 3]).save(out, "HEIF")
    data = bytearray(out.getvalue())
    pos = data.find(b"ispe")
    while pos > 0:
        data[pos + 8 : pos + 16] = struct.pack(">II", width, height)
        pos = data.find(b"ispe", pos + 4)
    return bytes(data)


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


@cache
def aac_sample_entry() -> bytes:
    """The mp4a sample entry (with its esds) of a real AAC recording."""
    data = media.m4a()
    pos = data.find(b"mp4a") - 4
    return data[pos : pos + int.from_bytes(data[pos : pos + 4], "big")]


def m4a_chunks(chunks: int, sample_size: int = 1, seconds: int = 7200) -> bytes:
    """An AAC M4A whose every sample is a chunk of its own, `sample_size` bytes each, declaring `seconds`: 2.2
    million one-byte chunks make a 20 MB file whose tables a naive cleaner holds as some 700 MB of Python objects."""
    ftyp = box(b"ftyp", b"M4A \0\0\0\0M4A isom")
    mdat_start = len(ftyp) + 8
    full = bytes(4)
    offsets = struct.pack(f">{chunks}I", *range(mdat_start, mdat_start + sample_size * chunks, sample_size))
    stbl = box(
        b"stbl",
        box(b"stsd", full, struct.pack(">I", 1), aac_sample_entry()),
        box(b"stts", full, struct.pack(">III", 1, chunks, 1024)),
        box(b"stsc", full, struct.pack(">IIII", 1, 1, 1, 1)),
        box(b"stsz", full, struct.pack(">II", 0, chunks), struct.pack(">I", sample_size) * chunks),
        box(b"stco", full, struct.pack(">I", chunks), offsets),
    )
    minf = box(b"minf", box(b"smhd", bytes(8)), stbl)
    mdhd = box(b"mdhd", full, bytes(8), struct.pack(">II", 44100, 44100 * seconds), b"\x55\xc4\0\0")
    mdia = box(b"mdia", mdhd, box(b"hdlr", bytes(8), b"soun", bytes(13)), minf)
    mvhd = box(b"mvhd", full, bytes(8), struct.pack(">II", 1000, 1000 * seconds), bytes(80))
    moov = box(b"moov", mvhd, box(b"trak", box(b"tkhd", full, bytes(80)), mdia))
    return ftyp + box(b"mdat", bytes(sample_size * chunks)) + moov


# Where a box's children start inside its payload (after a full box's version and flags, an entry count, a sample
# entry's fields).
_CHILDREN_AT = {b"stsd": 8, b"dref": 8, b"mp4a": 28, b"meta": 4}


def mp4_grown(data: bytes, path: list[bytes], extra: bytes) -> bytes:
    """`extra` appended inside the box at `path` (after its own payload), every enclosing box's size grown to match.

    The boxes of `path` must come after mdat (tests.media.m4a's moov does), so no chunk offset moves."""
    out = bytearray(data)
    start, end, sizes = 0, len(data), []
    skip = 0
    for kind in path:
        pos = start + skip
        while True:
            size, found = struct.unpack_from(">I4s", out, pos)
            if found == kind:
                break
            pos += size
            assert pos < end, f"no {kind!r}"
        sizes.append(pos)
        start, end, skip = pos + 8, pos + size, _CHILDREN_AT.get(kind, 0)
    out[end:end] = extra
    for pos in sizes:
        struct.pack_into(">I", out, pos, struct.unpack_from(">I", out, pos)[0] + len(extra))
    return bytes(out)


def ogg_first_page_with(data: bytes, extra: bytes) -> bytes:
    """The Ogg file with `extra` after the identification header, on the first page (its one segment grown)."""
    segments = data[26]
    assert segments == 1
    body_end = 28 + data[27]
    return data[:27] + bytes([data[27] + len(extra)]) + data[28:body_end] + extra + data[body_end:]


def _vint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    length = 9 - data[pos].bit_length()
    return int.from_bytes(data[pos : pos + length], "big") & ((1 << (7 * length)) - 1), length


def webm_grown(data: bytes, path: list[int], extra: bytes) -> bytes:
    """`extra` appended to the payload of the EBML element at `path` (ids), enclosing sizes grown in place."""
    out = bytearray(data)
    pos, end, sizes = 0, len(data), []
    for element in path:
        while True:
            id_length = 9 - out[pos].bit_length()
            found = int.from_bytes(out[pos : pos + id_length], "big")
            size, size_length = _vint(out, pos + id_length)
            payload = pos + id_length + size_length
            if found == element:
                break
            pos = payload + size
            assert pos < end, f"no {element:#x}"
        sizes.append((pos + id_length, size_length, size))
        pos, end = payload, payload + size
    out[end:end] = extra
    for at, length, size in sizes:
        grown = size + len(extra)
        assert grown < (1 << (7 * length)) - 1, "no room in the size field"
        out[at : at + length] = ((1 << (7 * length)) | grown).to_bytes(length, "big")
    return bytes(out)


def m4a_fragmented_samples(samples: int, varied: bool = True, sample_size: int = 4) -> bytes:
    """A fragmented AAC M4A of one fragment whose one run holds `samples` samples of `sample_size` bytes (the
    fewest a file may have: 12 bytes a sample with its duration and size in the run), each with its own size
    and (with `varied`) durations alternating 200 and 201 (at 44.1 kHz, within the 400 samples a second allowed),
    so that no table can be shortened: the most tables a fragmented file's bytes can make."""
    ftyp = box(b"ftyp", b"iso5\0\0\0\0iso5iso6mp41")
    full = bytes(4)
    empty = [box(kind, full, bytes(4)) for kind in (b"stts", b"stsc", b"stco")]
    stbl = box(b"stbl", box(b"stsd", full, struct.pack(">I", 1), aac_sample_entry()), *empty, box(b"stsz", bytes(12)))
    minf = box(b"minf", box(b"smhd", bytes(8)), stbl)
    mdhd = box(b"mdhd", full, bytes(8), struct.pack(">II", 44100, 0), b"\x55\xc4\0\0")
    mdia = box(b"mdia", mdhd, box(b"hdlr", bytes(8), b"soun", bytes(13)), minf)
    tkhd = box(b"tkhd", b"\0\0\0\x03", bytes(8), struct.pack(">I", 1), bytes(68))
    mvex = box(b"mvex", box(b"trex", full, struct.pack(">IIIII", 1, 1, 1024, 1, 0)))
    mvhd = box(b"mvhd", full, bytes(8), struct.pack(">II", 1000, 0), bytes(80))
    moov = box(b"moov", mvhd, box(b"trak", tkhd, mdia), mvex)
    durations = [200, 201] * (samples // 2) + [200] * (samples % 2) if varied else [200] * samples
    table = struct.pack(f">{2 * samples}I", *(value for duration in durations for value in (duration, sample_size)))
    tfhd = box(b"tfhd", b"\0\x02\0\0", struct.pack(">I", 1))  # default-base-is-moof

    def fragment(offset: int) -> bytes:
        trun = box(b"trun", b"\0\0\x03\x01", struct.pack(">Ii", samples, offset), table)
        return box(b"moof", box(b"mfhd", full, struct.pack(">I", 1)), box(b"traf", tfhd, trun))

    moof = fragment(len(fragment(0)) + 8)
    return ftyp + moov + moof + box(b"mdat", bytes(samples * sample_size))


def fragment_grown(data: bytes, path: list[bytes], extra: bytes) -> bytes:
    """`extra` appended inside the box at `path` of the first fragment (`path` starts at its moof) of a file whose
    runs are placed from their moof (tests.media.mp4_fragmented(base_moof=True)), the runs' data offsets moved to
    match."""
    out = bytearray(mp4_grown(data, path, extra))
    moof = out.find(b"moof") - 4
    end = moof + int.from_bytes(out[moof : moof + 4], "big")
    pos = out.find(b"trun", moof)
    while 0 < pos < end:
        if out[pos + 7] & 1:  # a data offset
            offset = struct.unpack_from(">i", out, pos + 12)[0]
            struct.pack_into(">i", out, pos + 12, offset + len(extra))
        pos = out.find(b"trun", pos + 4)
    return bytes(out)


def first_fragment_with(data: bytes, kind: bytes, at: int, value: int, signed: bool = False) -> bytes:
    """The file with the 32-bit field `at` bytes into the first `kind` box's payload (tfhd, trun) set to `value`."""
    out = bytearray(data)
    pos = out.find(kind, out.find(b"moof")) + 4
    struct.pack_into(">i" if signed else ">I", out, pos + at, value)
    return bytes(out)
