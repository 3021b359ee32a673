"""Photos and voice notes, cleaned in memory so that nothing in them can point back to the sender.

The type comes from the bytes only, never from the name or the declared content type. Photos are decoded and
re-encoded as a plain JPEG: upright, long side capped, sRGB, with no EXIF, GPS, maker note, XMP, IPTC, ICC
profile, comment or thumbnail. Voice notes are re-muxed through a whitelist: only the codec configuration and the
audio frames are copied into a new container, so every tag, box or element not on the list is gone. A file that
cannot be read or cleaned is refused, never forwarded as it came. Nothing is written to disk.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Literal

import pillow_heif
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis
from PIL import Image, ImageCms

from app.forms import Upload
from app.i18n import N_

logger = logging.getLogger(__name__)

# Thumbnails, depth maps and auxiliary images are never needed: only the primary image is decoded.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

TOO_MANY_FILES = N_("Too many files: at most %(max)d.")
TOO_LARGE = N_("The files are too big: at most %(max)d MB in all.")
NOT_ACCEPTED = N_("This file is not a photo or a voice recording.")
PHOTO_TOO_LARGE = N_("This photo is too big.")
PHOTO_UNREADABLE = N_("This photo cannot be opened.")
VOICE_UNREADABLE = N_("This recording cannot be opened or cleaned, so it was not sent.")

MAX_PIXELS = 50_000_000  # 48 and 50 MP phone photos pass; Pillow's own bomb warning starts at 89 MP
MAX_SIDE = 2560
JPEG_QUALITY = 85

Kind = Literal["photo", "voice"]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A cleaned file, safe to forward: named by its kind and position, never by the phone's name."""

    kind: Kind
    index: int
    filename: str
    content_type: str
    data: bytes


class AttachmentError(Exception):
    """File number `position` (1-based, in the order sent) is refused; `reason` is a msgid, `params` its values."""

    def __init__(self, position: int, reason: str, params: Mapping[str, int] | None = None) -> None:
        super().__init__(f"file {position}: {reason}")
        self.position = position
        self.reason = reason
        self.params: Mapping[str, int] = params or {}


class _Unclean(Exception):
    """The file cannot be read or cleaned with certainty."""


class _TooManyPixels(Exception):
    """The image declares more pixels than allowed."""


# Detected type → (kind, extension, content type). Every photo leaves as a JPEG.
FORMATS: dict[str, tuple[Kind, str, str]] = {
    "jpeg": ("photo", "jpg", "image/jpeg"),
    "png": ("photo", "jpg", "image/jpeg"),
    "webp": ("photo", "jpg", "image/jpeg"),
    "heif": ("photo", "jpg", "image/jpeg"),
    "m4a": ("voice", "m4a", "audio/mp4"),
    "3gp": ("voice", "3gp", "audio/3gpp"),
    "amr": ("voice", "amr", "audio/amr"),
    "mp3": ("voice", "mp3", "audio/mpeg"),
    "ogg": ("voice", "ogg", "audio/ogg"),
    "webm": ("voice", "webm", "audio/webm"),
}


def clean(
    uploads: Sequence[Upload],
    *,
    max_files: int,
    max_bytes: int,
    max_pixels: int = MAX_PIXELS,
    max_side: int = MAX_SIDE,
) -> list[Attachment]:
    """The uploads cleaned, in order; `AttachmentError` names the first file refused (or the limit passed).

    CPU-bound and synchronous: run it in a worker thread, a bounded number at a time (a photo being cleaned
    holds up to about 4 bytes per declared pixel).
    """
    if len(uploads) > max_files:
        raise AttachmentError(max_files + 1, TOO_MANY_FILES, {"max": max_files})
    too_large = {"max": max(1, round(max_bytes / 1_000_000))}
    for position, total in enumerate(accumulate(len(upload.data) for upload in uploads), start=1):
        if total > max_bytes:
            raise AttachmentError(position, TOO_LARGE, too_large)
    attachments: list[Attachment] = []
    counts: dict[Kind, int] = {"photo": 0, "voice": 0}
    total = 0
    for position, upload in enumerate(uploads, start=1):
        detected = sniff(upload.data)
        if detected is None:
            raise AttachmentError(position, NOT_ACCEPTED)
        kind, extension, content_type = FORMATS[detected]
        data = _clean_one(position, detected, upload.data, max_pixels=max_pixels, max_side=max_side)
        total += len(data)
        if total > max_bytes:
            raise AttachmentError(position, TOO_LARGE, too_large)
        counts[kind] += 1
        index = counts[kind]
        attachments.append(Attachment(kind, index, f"{kind}-{index}.{extension}", content_type, data))
    return attachments


def _clean_one(position: int, detected: str, data: bytes, *, max_pixels: int, max_side: int) -> bytes:
    photo = FORMATS[detected][0] == "photo"
    try:
        if photo:
            return _clean_photo(data, detected, max_pixels=max_pixels, max_side=max_side)
        return _AUDIO[detected](data)
    except _TooManyPixels:
        logger.info("attachment %d (%s) refused: too many pixels", position, detected)
        raise AttachmentError(position, PHOTO_TOO_LARGE) from None
    except Exception as exc:  # hostile input may break a decoder anywhere: refuse it, never crash
        # The exception's class only: its message could quote the file's contents.
        logger.info("attachment %d (%s) refused: %s", position, detected, type(exc).__name__)
        raise AttachmentError(position, PHOTO_UNREADABLE if photo else VOICE_UNREADABLE) from None


# --- Detecting the type ------------------------------------------------------------------------------------

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1", b"mif2"}
_MP4_BRANDS = {
    b"M4A ", b"M4B ", b"M4V ", b"mp41", b"mp42", b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"qt  ", b"MSNV",
    b"dash", b"avc1", b"f4a ", b"f4v ",
}  # fmt: skip


def sniff(data: bytes) -> str | None:
    """The type of a file from its bytes: "jpeg", "png", "webp", "heif", "m4a", "3gp", "amr", "mp3", "ogg",
    "webm", or None."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(data)
    if head.startswith((b"#!AMR\n", b"#!AMR-WB\n")):
        return "amr"
    if head.startswith(b"OggS") and _ogg_codec(data) is not None:
        return "ogg"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm" if _ebml_doctype(data) in (b"webm", b"matroska") else None
    if _mp3_start(data) is not None:
        return "mp3"
    return None


def _sniff_ftyp(data: bytes) -> str | None:
    size = int.from_bytes(data[:4], "big")
    if size < 16 or size > min(len(data), 1024):
        return None
    major = data[8:12]
    brands = {major, *(data[i : i + 4] for i in range(16, size - 3, 4))}
    if major in _HEIF_BRANDS or (major not in _MP4_BRANDS and brands & {b"heic", b"heix", b"mif1"}):
        return "heif" if brands & {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"} else None
    if major.startswith(b"3g"):
        return "3gp"
    if major in _MP4_BRANDS:
        return "m4a"
    return None


# --- Photos --------------------------------------------------------------------------------------------------

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "heif": "HEIF"}
# EXIF orientation → the transposition that makes the picture upright (as PIL.ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# Markers a JPEG written here may hold before its scan: JFIF APP0, tables, frame, restart interval.
_JPEG_ALLOWED = {0xE0, 0xDB, 0xC4, 0xC0, 0xC1, 0xC2, 0xDD}


def _clean_photo(data: bytes, detected: str, *, max_pixels: int, max_side: int) -> bytes:
    try:
        # Lazy: only the header is read here; nothing is decoded before the size is checked.
        image = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[detected]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _TooManyPixels from exc
    with image:
        width, height = image.size
        if width < 1 or height < 1 or width * height > max_pixels:
            raise _TooManyPixels
        orientation = _orientation(image)
        scale = min(1.0, max_side / max(width, height))
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        if detected == "jpeg":
            # Decode at 1/2, 1/4 or 1/8 scale straight from the DCT when that still covers the target size.
            image.draft("RGB", target)
        image.load()
        picture = _flatten(image)
        icc = image.info.get("icc_profile")
    if picture.size != target:
        picture = picture.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)
    if icc and image.mode in ("RGB", "RGBA"):
        picture = _to_srgb(picture, icc)
    if orientation in _UPRIGHT:
        picture = picture.transpose(_UPRIGHT[orientation])
    picture.info = {}  # Pillow writes a comment from `info` when saving a JPEG; nothing is carried over
    out = io.BytesIO()
    # Screenshots and drawings (no photo source) keep full colour resolution so text stays sharp.
    subsampling = "4:2:0" if detected in ("jpeg", "heif") else "4:4:4"
    picture.save(out, "JPEG", quality=JPEG_QUALITY, subsampling=subsampling, exif=b"")
    result = out.getvalue()
    _check_plain_jpeg(result)
    return result


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 when absent or unreadable: a broken EXIF block must not lose the photo)."""
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # any damage in the EXIF block only costs the rotation
        return 1
    return value if isinstance(value, int) else 1


def _flatten(image: Image.Image) -> Image.Image:
    """An RGB copy of the decoded pixels; transparency is laid on white."""
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "F"):
        image = image.convert("I").point(lambda value: value * (1 / 257)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _to_srgb(picture: Image.Image, icc: bytes) -> Image.Image:
    """The picture converted from its embedded profile to sRGB (then the profile itself is dropped)."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(picture, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return picture  # an unusable profile is dropped, the pixels kept as they are
    return converted if converted is not None else picture


def _check_plain_jpeg(data: bytes) -> None:
    """Fail unless the JPEG just written holds nothing but image data (a guard against library changes)."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:
            return
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker not in _JPEG_ALLOWED or (marker == 0xE0 and data[pos + 4 : pos + 9] != b"JFIF\0"):
            raise _Unclean(f"marker {marker:#x} in the output")
        pos += 2 + length
    raise _Unclean("no scan in the output")


# --- MP4 / M4A / 3GP: a whitelist re-muxer -------------------------------------------------------------------

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
            raise _Unclean("truncated box header")
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if end - pos < 16:
                raise _Unclean("truncated box header")
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if kind == b"uuid":
            header += 16
        if size < header or pos + size > end:
            raise _Unclean("box size out of range")
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
        raise _Unclean("bad header box")
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


def _clean_mp4(data: bytes, ftyp: bytes) -> bytes:
    moov: tuple[int, int] | None = None
    mdats: list[tuple[int, int]] = []
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind in _FRAGMENTED:
            raise _Unclean("fragmented MP4")
        if kind == b"moov":
            if moov is not None:
                raise _Unclean("two moov boxes")
            moov = (start, end)
        elif kind == b"mdat":
            mdats.append((start, end))
        # ftyp is rewritten; free, skip, wide, uuid, meta and every other top-level box are dropped.
    if moov is None:
        raise _Unclean("no moov")
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
            raise _Unclean("fragmented MP4")
        # udta (©xyz, loci, ©too, ©mak...), meta (ilst tags, XMP), uuid, iods: dropped.
    if mvhd is None or not tracks:
        raise _Unclean("no audio track")
    # Chunks keep their original order; everything between them in the old mdat is left behind.
    ordered = sorted((chunk, track, n) for track in tracks for n, chunk in enumerate(track.chunks))
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
        raise _Unclean("incomplete sound track")
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
        raise _Unclean("no sample table")
    _check_dref(data, minf.get(b"dinf"))
    stbl: list[bytes] = []
    tables: dict[bytes, bytes] = {}
    for kind, box_start, box_end in _boxes(data, *minf[b"stbl"]):
        payload = data[box_start:box_end]
        if kind in (b"stco", b"co64"):
            if any(kind in tables for kind in (b"stco", b"co64")):
                raise _Unclean("two chunk offset tables")
            stbl.append(b"")
        elif kind in _STBL_KEEP and kind not in tables:
            stbl.append(_box(kind, payload))
        elif kind == b"stz2":
            raise _Unclean("compact sample sizes")
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
            raise _Unclean("external data reference")


def _check_sample_entries(stsd: bytes) -> None:
    if len(stsd) < 8:
        raise _Unclean("no sample description")
    count = int.from_bytes(stsd[4:8], "big")
    entries = [kind for kind, _, _ in _boxes(stsd, 8, len(stsd))]
    if count < 1 or len(entries) != count or not set(entries) <= _MP4_AUDIO_CODECS:
        raise _Unclean("unknown audio codec")


def _table(payload: bytes, width: int, minimum: int = 8) -> tuple[int, ...]:
    """The entries of a full box's table: (count) then count * `width` big-endian 32-bit values."""
    if len(payload) < minimum:
        raise _Unclean("short table")
    count = int.from_bytes(payload[minimum - 4 : minimum], "big")
    if len(payload) < minimum + 4 * width * count:
        raise _Unclean("short table")
    return struct.unpack_from(f">{count * width}I", payload, minimum)


def _chunks(tables: dict[bytes, bytes], mdats: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(offset, size) of every chunk, each checked to lie inside an mdat box."""
    if b"stco" in tables:
        offsets: Sequence[int] = _table(tables[b"stco"], 1)
    elif b"co64" in tables:
        pairs = _table(tables[b"co64"], 2)
        offsets = [high << 32 | low for high, low in zip(pairs[::2], pairs[1::2], strict=True)]
    else:
        raise _Unclean("no chunk offsets")
    if b"stsc" not in tables or b"stsz" not in tables:
        raise _Unclean("no sample-to-chunk or sample size table")
    stsc = _table(tables[b"stsc"], 3)
    per_chunk = [0] * len(offsets)
    firsts = [*stsc[0::3], len(offsets) + 1]
    for n, samples in enumerate(stsc[1::3]):
        if not 1 <= firsts[n] < firsts[n + 1] <= len(offsets) + 1:
            raise _Unclean("bad sample-to-chunk table")
        per_chunk[firsts[n] - 1 : firsts[n + 1] - 1] = [samples] * (firsts[n + 1] - firsts[n])
    stsz = tables[b"stsz"]
    if len(stsz) < 12:
        raise _Unclean("short sample size table")
    constant, count = struct.unpack_from(">II", stsz, 4)
    sizes: Sequence[int] = [constant] * count if constant else _table(stsz, 1, 12)
    if sum(per_chunk) != len(sizes) or not sizes:
        raise _Unclean("sample counts disagree")
    ends = [0, *accumulate(sizes)]
    chunks: list[tuple[int, int]] = []
    first = 0
    for offset, samples in zip(offsets, per_chunk, strict=True):
        size = ends[first + samples] - ends[first]
        first += samples
        if size and not any(start <= offset and offset + size <= end for start, end in mdats):
            raise _Unclean("chunk outside the media data")
        chunks.append((offset, size))
    return chunks


def _mp4_ftyp(brand: bytes, *compatible: bytes) -> bytes:
    return _box(b"ftyp", brand, bytes(4), brand, *compatible)


def _clean_m4a(data: bytes) -> bytes:
    return _checked(_clean_mp4(data, _mp4_ftyp(b"M4A ", b"mp42", b"isom")), MP4)


def _clean_3gp(data: bytes) -> bytes:
    return _checked(_clean_mp4(data, _mp4_ftyp(b"3gp4", b"isom")), MP4)


# --- MP3 and AMR: frames copied one by one, nothing else ----------------------------------------------------

_MP3_KBPS = {
    3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1 layer III
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2 and 2.5 layer III
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _id3v2_end(data: bytes, pos: int) -> int:
    """Where the ID3v2 tag at `pos` ends (its size is a 28-bit "syncsafe" integer)."""
    if len(data) < pos + 10 or any(byte & 0x80 for byte in data[pos + 6 : pos + 10]):
        raise _Unclean("bad ID3v2 tag")
    size = 0
    for byte in data[pos + 6 : pos + 10]:
        size = size << 7 | byte
    return pos + 10 + size + (10 if data[pos + 5] & 0x10 else 0)


def _mp3_frame(data: bytes, pos: int, signature: bytes | None = None) -> int:
    """The length of the MPEG layer III frame at `pos`, or 0 if there is none (or it does not match `signature`)."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return 0
    version, layer = data[pos + 1] >> 3 & 3, data[pos + 1] >> 1 & 3
    bitrate, rate = data[pos + 2] >> 4, data[pos + 2] >> 2 & 3
    if version == 1 or layer != 1 or bitrate in (0, 15) or rate == 3:
        return 0
    if signature is not None and (data[pos + 1] & 0xFE, data[pos + 2] & 0x0C) != (signature[0], signature[1]):
        return 0
    kbps = _MP3_KBPS[3 if version == 3 else 2][bitrate]
    slot = 144 if version == 3 else 72
    return slot * kbps * 1000 // _MP3_RATES[version][rate] + (data[pos + 2] >> 1 & 1)


def _mp3_start(data: bytes) -> int | None:
    """Where the first of two consecutive MPEG layer III frames starts, after any ID3v2 tags."""
    pos = 0
    try:
        while data[pos : pos + 3] == b"ID3":
            pos = _id3v2_end(data, pos)
    except _Unclean:
        return None
    for start in range(pos, min(pos + 4096, len(data) - 3)):
        length = _mp3_frame(data, start)
        if length and (start + length == len(data) or _mp3_frame(data, start + length, _signature(data, start))):
            return start
    return None


def _signature(data: bytes, pos: int) -> bytes:
    return bytes((data[pos + 1] & 0xFE, data[pos + 2] & 0x0C))


def _clean_mp3(data: bytes) -> bytes:
    start = _mp3_start(data)
    if start is None:
        raise _Unclean("no MPEG audio frames")
    signature = _signature(data, start)
    frames: list[bytes] = []
    pos = start
    while True:
        length = _mp3_frame(data, pos, signature)
        if length and pos + length <= len(data):
            frames.append(data[pos : pos + length])
            pos += length
        elif data[pos : pos + 3] == b"ID3" and pos + 10 <= len(data):
            pos = _id3v2_end(data, pos)  # a tag between frames is skipped; audio may follow it
        else:
            break  # ID3v1, APE, Lyrics3 or anything else after the last frame is left behind
    return _checked(b"".join(frames), MP3)


_AMR = {
    b"#!AMR\n": (13, 14, 16, 18, 20, 21, 27, 32, 6, 0, 0, 0, 0, 0, 0, 1),  # bytes per frame type; 0: invalid
    b"#!AMR-WB\n": (18, 24, 33, 37, 41, 47, 51, 59, 61, 6, 0, 0, 0, 0, 1, 1),
}


def _clean_amr(data: bytes) -> bytes:
    magic = b"#!AMR\n" if data.startswith(b"#!AMR\n") else b"#!AMR-WB\n"
    sizes = _AMR[magic]
    frames: list[bytes] = [magic]
    pos = len(magic)
    while pos < len(data):
        header = data[pos]
        size = sizes[header >> 3 & 0x0F]
        if header & 0x83 or not size or pos + size > len(data):
            break  # anything after the last whole frame is left behind
        frames.append(data[pos : pos + size])
        pos += size
    if len(frames) < 2:
        raise _Unclean("no AMR frames")
    return b"".join(frames)


# --- Ogg Opus and Ogg Vorbis: the comment header replaced, pages renumbered --------------------------------

_OGG_HEADERS = {b"OpusHead": (b"OpusTags", 2), b"\x01vorbis": (b"\x03vorbis", 3)}
_OGG_SERIAL = 0x74697062  # one fixed stream serial number for every file, so no two files can be linked by it
_BITSWAP = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))


@dataclass(frozen=True, slots=True)
class _Page:
    flags: int
    granule: int
    lacing: bytes
    body: bytes


def _ogg_pages(data: bytes) -> list[_Page]:
    """The pages of a single logical stream; anything after the last whole page is left behind."""
    pages: list[_Page] = []
    serial = None
    pos = 0
    while pos + 27 <= len(data) and data[pos : pos + 4] == b"OggS":
        version, flags, granule, page_serial, _, _, segments = struct.unpack_from("<BBqIIIB", data, pos + 4)
        lacing = data[pos + 27 : pos + 27 + segments]
        end = pos + 27 + segments + sum(lacing)
        if version != 0 or len(lacing) < segments or end > len(data):
            break
        if serial is None:
            serial = page_serial
        elif page_serial != serial or flags & 0x02:
            raise _Unclean("more than one logical stream")
        pages.append(_Page(flags, granule, lacing, data[pos + 27 + segments : end]))
        pos = end
        if flags & 0x04:
            break  # end of stream
    return pages


def _ogg_codec(data: bytes) -> bytes | None:
    """The identification header's magic ("OpusHead" or "\\x01vorbis") of an Ogg file, if it is one of those."""
    segments = data[26] if len(data) > 27 else 0
    first = data[27 + segments : 27 + segments + 8]
    return first if first in _OGG_HEADERS else None


def _ogg_page(flags: int, granule: int, sequence: int, lacing: bytes, body: bytes) -> bytes:
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, _OGG_SERIAL, sequence, 0, len(lacing))
    page = header + lacing + body
    crc = ~zlib.crc32(page.translate(_BITSWAP), -1) & 0xFFFFFFFF  # Ogg's CRC is zlib's, bit-reversed
    return page[:22] + crc.to_bytes(4, "big").translate(_BITSWAP) + page[26:]


def _ogg_paginate(packets: list[bytes], sequence: int) -> list[bytes]:
    """Header packets laid out on fresh pages (granule 0), as many as they need."""
    segments: list[tuple[int, bytes, bool]] = []  # (lacing value, data, ends a packet)
    for packet in packets:
        whole, rest = divmod(len(packet), 255)
        segments += [(255, packet[i * 255 : (i + 1) * 255], False) for i in range(whole)]
        segments.append((rest, packet[whole * 255 :], True))
    pages: list[bytes] = []
    continued = False
    for i in range(0, len(segments), 255):
        chunk = segments[i : i + 255]
        ends = chunk[-1][2] or any(ends for _, _, ends in chunk)
        lacing = bytes(value for value, _, _ in chunk)
        body = b"".join(part for _, part, _ in chunk)
        pages.append(_ogg_page(0x01 if continued else 0, 0 if ends else -1, sequence + len(pages), lacing, body))
        continued = not chunk[-1][2]
    return pages


def _clean_ogg(data: bytes) -> bytes:
    codec = _ogg_codec(data)
    pages = _ogg_pages(data)
    # The identification header must sit alone on the first page, as both specifications require.
    if codec is None or not pages or not pages[0].flags & 0x02 or len(pages[0].lacing) != 1:
        raise _Unclean("not an Opus or Vorbis stream")
    comment_magic, header_count = _OGG_HEADERS[codec]
    headers, first_audio = _ogg_headers(pages, header_count - 1)
    if not headers[0].startswith(comment_magic):
        raise _Unclean("no comment header")
    vendor = b"tipbox"
    comment = comment_magic + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
    if codec == b"\x01vorbis":
        comment += b"\x01"  # framing bit
    out = [_ogg_page(0x02, 0, 0, pages[0].lacing, pages[0].body)]
    out += _ogg_paginate([comment, *headers[1:]], 1)
    for n, page in enumerate(pages[first_audio:], start=len(out)):
        out.append(_ogg_page(page.flags & 0x05, page.granule, n, page.lacing, page.body))
    return _checked(b"".join(out), OggOpus if codec == b"OpusHead" else OggVorbis)


def _ogg_headers(pages: list[_Page], count: int) -> tuple[list[bytes], int]:
    """The `count` header packets after the first page, and the index of the first audio page."""
    packets: list[bytes] = []
    packet = b""
    for n, page in enumerate(pages[1:], start=1):
        if bool(page.flags & 0x01) != bool(packet):
            raise _Unclean("broken packet continuation")
        offset = 0
        for i, value in enumerate(page.lacing):
            packet += page.body[offset : offset + value]
            offset += value
            if value < 255:
                packets.append(packet)
                packet = b""
                if len(packets) == count:
                    # Audio must start on a fresh page: the last header ends its page.
                    if i != len(page.lacing) - 1 or n + 1 >= len(pages) or pages[n + 1].flags & 0x01:
                        raise _Unclean("headers and audio share a page, or no audio")
                    return packets, n + 1
    raise _Unclean("incomplete headers")


# --- WebM (Matroska): a whitelist re-muxer ------------------------------------------------------------------

_EBML, _SEGMENT, _INFO, _TRACKS, _CLUSTER = 0x1A45DFA3, 0x18538067, 0x1549A966, 0x1654AE6B, 0x1F43B675
_DOCTYPE, _TIMESCALE, _DURATION = 0x4282, 0x2AD7B1, 0x4489
_TRACK_ENTRY, _TRACK_NUMBER, _TRACK_TYPE, _CODEC_ID, _AUDIO_SETTINGS = 0xAE, 0xD7, 0x83, 0x86, 0xE1
_CONTENT_ENCODINGS = 0x6D80
_TRACK_KEEP = {0x63A2, 0x56AA, 0x56BB, 0x23E383, 0x9C}  # codec private, codec delay, pre-roll, duration, lacing
_AUDIO_KEEP = {0xB5, 0x78B5, 0x9F, 0x6264}  # sampling frequency, output frequency, channels, bit depth
_CLUSTER_CHILDREN = {0xE7, 0xA3, 0xA0, 0xA7, 0xAB, 0x5854, 0xEC, 0xBF}
_SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK, _CLUSTER_TIME = 0xA3, 0xA0, 0xA1, 0xE7
_GROUP_KEEP = {0xA1, 0x9B, 0xFB, 0x75A2}  # block, duration, reference, discard padding
_WEBM_CODECS = {b"A_OPUS", b"A_VORBIS"}


def _vint(data: bytes, pos: int, *, marker: bool) -> tuple[int, int, bool]:
    """(value, length, all ones) of the EBML variable-length integer at `pos`."""
    if pos >= len(data) or data[pos] == 0:
        raise _Unclean("bad EBML number")
    length = 9 - data[pos].bit_length()
    if pos + length > len(data):
        raise _Unclean("truncated EBML number")
    value = int.from_bytes(data[pos : pos + length], "big")
    payload = value & ((1 << (7 * length)) - 1)
    return (value if marker else payload), length, payload == (1 << (7 * length)) - 1


def _elements(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(id, payload start, payload end) of each EBML element; unknown sizes only for Segment and Cluster."""
    pos = start
    while pos < end:
        element, id_length, _ = _vint(data, pos, marker=True)
        size, size_length, unknown = _vint(data, pos + id_length, marker=False)
        payload = pos + id_length + size_length
        if unknown and element == _SEGMENT:
            stop = end
        elif unknown and element == _CLUSTER:
            stop = _cluster_end(data, payload, end)
        elif unknown or payload + size > end:
            raise _Unclean("bad EBML element size")
        else:
            stop = payload + size
        yield element, payload, stop
        pos = stop


def _cluster_end(data: bytes, pos: int, end: int) -> int:
    """A Cluster of unknown size (as recorders write them) ends where an element that is not its child starts."""
    while pos < end:
        element, id_length, _ = _vint(data, pos, marker=True)
        if element not in _CLUSTER_CHILDREN:
            return pos
        size, size_length, unknown = _vint(data, pos + id_length, marker=False)
        pos += id_length + size_length + size
        if unknown or pos > end:
            raise _Unclean("bad EBML element size")
    return end


def _ebml(element: int, *payload: bytes) -> bytes:
    body = b"".join(payload)
    length = next(n for n in range(1, 9) if len(body) < (1 << (7 * n)) - 1)
    size = (1 << (7 * length)) | len(body)
    return element.to_bytes((element.bit_length() + 7) // 8, "big") + size.to_bytes(length, "big") + body


def _ebml_uint(element: int, value: int) -> bytes:
    return _ebml(element, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _ebml_doctype(data: bytes) -> bytes | None:
    try:
        for element, start, end in _elements(data, 0, len(data)):
            if element != _EBML:
                return None
            return next((data[s:e].rstrip(b"\0") for i, s, e in _elements(data, start, end) if i == _DOCTYPE), None)
    except _Unclean:
        return None
    return None


def _clean_webm(data: bytes) -> bytes:
    segments = [(start, end) for element, start, end in _elements(data, 0, len(data)) if element == _SEGMENT]
    if len(segments) != 1:
        raise _Unclean("not one segment")
    children = list(_elements(data, *segments[0]))
    info: list[bytes] = []
    tracks: dict[int, bytes] = {}
    for element, start, end in children:
        if element == _INFO:
            info += [_ebml(i, data[s:e]) for i, s, e in _elements(data, start, end) if i in (_TIMESCALE, _DURATION)]
        elif element == _TRACKS:
            for entry, s, e in _elements(data, start, end):
                track = _webm_track(data, s, e) if entry == _TRACK_ENTRY else None
                if track is not None:
                    tracks[track[0]] = track[1]
    clusters = [_webm_cluster(data, s, e, set(tracks)) for element, s, e in children if element == _CLUSTER]
    clusters = [cluster for cluster in clusters if cluster]
    # SeekHead, Cues (their offsets would be wrong), Tags, Attachments, Chapters, Void, CRC-32: dropped.
    if not tracks or not clusters:
        raise _Unclean("no audio")
    header = _ebml(
        _EBML,
        _ebml_uint(0x4286, 1), _ebml_uint(0x42F7, 1), _ebml_uint(0x42F2, 4), _ebml_uint(0x42F3, 8),
        _ebml(_DOCTYPE, b"webm"), _ebml_uint(0x4287, 4), _ebml_uint(0x4285, 2),
    )  # fmt: skip
    info_element = _ebml(_INFO, *info, _ebml(0x4D80, b"tipbox"), _ebml(0x5741, b"tipbox"))
    return header + _ebml(_SEGMENT, info_element, _ebml(_TRACKS, *tracks.values()), *clusters)


def _webm_track(data: bytes, start: int, end: int) -> tuple[int, bytes] | None:
    """(number, rebuilt TrackEntry) for an Opus or Vorbis audio track; None for other tracks."""
    values = {element: (s, e) for element, s, e in _elements(data, start, end)}

    def uint(element: int) -> int:
        return int.from_bytes(data[slice(*values.get(element, (0, 0)))], "big")

    if uint(_TRACK_TYPE) != 2:
        return None  # video, subtitles...: dropped, and their blocks with them
    number = uint(_TRACK_NUMBER)
    codec = data[slice(*values.get(_CODEC_ID, (0, 0)))].rstrip(b"\0")
    if codec not in _WEBM_CODECS or _CONTENT_ENCODINGS in values or not number:
        raise _Unclean("audio track that cannot be kept")
    settings = values.get(_AUDIO_SETTINGS, (start, start))
    audio = [_ebml(i, data[s:e]) for i, s, e in _elements(data, *settings) if i in _AUDIO_KEEP]
    entry = [_ebml_uint(_TRACK_NUMBER, number), _ebml_uint(0x73C5, number), _ebml_uint(_TRACK_TYPE, 2)]
    entry.append(_ebml(_CODEC_ID, codec))
    entry += [_ebml(element, data[slice(*values[element])]) for element in sorted(_TRACK_KEEP) if element in values]
    entry.append(_ebml(_AUDIO_SETTINGS, *audio))
    return number, _ebml(_TRACK_ENTRY, *entry)


def _webm_cluster(data: bytes, start: int, end: int, tracks: set[int]) -> bytes:
    """A Cluster with its timestamp and the blocks of `tracks` only; b"" when it has none of those."""
    children: list[bytes] = []
    blocks = 0
    for element, s, e in _elements(data, start, end):
        if element == _CLUSTER_TIME:
            children.append(_ebml(element, data[s:e]))
        elif element == _SIMPLE_BLOCK and _vint(data, s, marker=False)[0] in tracks:
            children.append(_ebml(element, data[s:e]))
            blocks += 1
        elif element == _BLOCK_GROUP:
            group = [(i, gs, ge) for i, gs, ge in _elements(data, s, e) if i in _GROUP_KEEP]
            block = [gs for i, gs, _ in group if i == _BLOCK]
            if len(block) == 1 and _vint(data, block[0], marker=False)[0] in tracks:
                children.append(_ebml(_BLOCK_GROUP, *(_ebml(i, data[gs:ge]) for i, gs, ge in group)))
                blocks += 1
        # Position, PrevSize, SilentTracks, Void, CRC-32 and block additions: dropped.
    return _ebml(_CLUSTER, *children) if blocks else b""


def _checked(data: bytes, reader: Callable[[io.BytesIO], object]) -> bytes:
    """`data` if mutagen reads it as audio with a duration and finds no tags in it; otherwise refuse."""
    audio = reader(io.BytesIO(data))
    tags = getattr(audio, "tags", None)
    length = getattr(getattr(audio, "info", None), "length", 0)
    if not length or length <= 0 or (tags is not None and len(tags) > 0):
        raise _Unclean("cleaned audio does not check out")
    return data


_AUDIO: dict[str, Callable[[bytes], bytes]] = {
    "m4a": _clean_m4a,
    "3gp": _clean_3gp,
    "mp3": _clean_mp3,
    "amr": _clean_amr,
    "ogg": _clean_ogg,
    "webm": _clean_webm,
}
