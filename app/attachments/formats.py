"""What a file is, decided from its bytes only: never from its name or the content type the phone declared."""

from __future__ import annotations

from app.attachments import mp3, ogg, webm
from app.mail import Kind

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

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1", b"mif2"}
_MP4_BRANDS = {
    b"M4A ", b"M4B ", b"M4V ", b"mp41", b"mp42", b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"qt  ", b"MSNV",
    b"dash", b"avc1", b"f4a ", b"f4v ", b"iso3", b"iso7", b"iso8", b"iso9", b"cmfc", b"cmf2", b"mp71",
}  # fmt: skip  (CMAF's cmfc/cmf2 and the later isoN: what a browser's MediaRecorder may write as audio/mp4)


def sniff(data: bytes) -> str | None:
    """The type of a file, from its bytes only: a key of FORMATS ("jpeg", "heif", "m4a", "ogg"...), or None."""
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
    if head.startswith(b"OggS") and ogg.stream_codec(data) is not None:
        return "ogg"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm" if webm.doctype(data) in (b"webm", b"matroska") else None
    if mp3.first_frame(data) is not None:
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
    if major in _MP4_BRANDS or brands & _MP4_BRANDS:  # an unknown major brand, compatible with one we know
        return "m4a"
    return None
