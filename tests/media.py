"""Test media made on demand: small photos and recordings carrying distinctive, identifying metadata.

Nothing here is a real photo or recording of anyone; every value that must not survive cleaning is in SECRETS.
Audio is encoded with PyAV (FFmpeg's libraries from PyPI), entirely in memory.
"""

from __future__ import annotations

import fractions
import io
import math
import struct
import zlib
from functools import cache
from typing import Any

import av
import av.audio.stream
import av.video.stream
import mutagen.apev2
import mutagen.id3
import mutagen.mp4
from PIL import Image, TiffImagePlugin
from PIL.PngImagePlugin import PngInfo

import app.attachments.images  # noqa: F401  (registers the HEIF opener with Pillow)

# mutagen's writing side has no type annotations.
APEv2: Any = mutagen.apev2.APEv2
ID3: Any = mutagen.id3.ID3
COMM: Any = mutagen.id3.COMM
TPE1: Any = mutagen.id3.TPE1
TXXX: Any = mutagen.id3.TXXX
MP4: Any = mutagen.mp4.MP4

MAKE = "TipboxTestMake"
MODEL = "SPYPHONE-X9-QUANGNINH"
ARTIST = "Nguyen Van Sender"
SERIAL = "SN-55501234"
MAKER_NOTE = b"MAKERNOTE-OWNER-PHAN-THI-B"
TAKEN = "2024:05:06 07:08:09"
COMMENT = "JPEG-COMMENT-SECRET"
IPTC_BYLINE = b"IPTC-BYLINE-SECRET"
XMP_GPS = "22,33.7407N"
XMP = (
    '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    f'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="{XMP_GPS}" exif:GPSLongitude="103,52.2057E"/>'
    '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)
PNG_AUTHOR = "PNG-AUTHOR-SECRET"
PNG_ZTXT = "PNG-ZTXT-SECRET"
TAG_TITLE = "TAG-TITLE-SECRET"
TAG_ARTIST = "TAG-ARTIST-SECRET"
TAG_COMMENT = "TAG-COMMENT-SECRET"
LOCATION = "+22.5623+103.8702/"
LOCI_PLACE = b"LOCI-PLACE-SECRET"
UNREFERENCED = b"UNREFERENCED-SECRET"
APE_VALUE = "APE-VALUE-SECRET"
CREATED = "2024-05-06T07:08:09.000000Z"
# GPS latitude 22 deg 33 min 44.44 s as Pillow writes it in EXIF: the rational 1111/25, big-endian.
GPS_SECONDS = struct.pack(">II", 1111, 25)

SECRETS: tuple[bytes, ...] = (
    MAKE.encode(), MODEL.encode(), ARTIST.encode(), SERIAL.encode(), MAKER_NOTE, TAKEN.encode(), b"2024:05:06",
    COMMENT.encode(), IPTC_BYLINE, XMP_GPS.encode(), b"xmpmeta", PNG_AUTHOR.encode(), PNG_ZTXT.encode(),
    TAG_TITLE.encode(), TAG_ARTIST.encode(), TAG_COMMENT.encode(), LOCATION.encode(), b"22.5623", LOCI_PLACE,
    UNREFERENCED, APE_VALUE.encode(), GPS_SECONDS, b"Lavf", b"udta", b"\xa9xyz", b"ilst", b"ID3", b"TAG",
    b"APETAGEX", b"Exif\0\0", b"2024-05-06",
)  # fmt: skip

RED, BLUE = (220, 20, 20), (20, 20, 220)


def exif(orientation: int | None = None) -> Image.Exif:
    """EXIF with a camera make and model, owner, serial number, maker note, time taken and GPS position."""
    data = Image.Exif()
    data[0x010F] = MAKE
    data[0x0110] = MODEL
    data[0x013B] = ARTIST
    data[0x0132] = TAKEN
    if orientation is not None:
        data[0x0112] = orientation
    details = data.get_ifd(0x8769)
    details[0x927C] = MAKER_NOTE
    details[0x9003] = TAKEN
    details[0xA431] = SERIAL
    gps = data.get_ifd(0x8825)
    rational = TiffImagePlugin.IFDRational
    gps[1], gps[2] = "N", (rational(22, 1), rational(33, 1), rational(4444, 100))
    gps[3], gps[4] = "E", (rational(103, 1), rational(52, 1), rational(1234, 100))
    return data


def halves(size: tuple[int, int] = (80, 40), mode: str = "RGB") -> Image.Image:
    """A picture whose left half is red and right half blue (so a rotation shows in the pixels)."""
    image = Image.new(mode, size, BLUE)
    image.paste(RED, (0, 0, size[0] // 2, size[1]))
    return image


def jpeg(size: tuple[int, int] = (80, 40), orientation: int | None = None, metadata: bool = True) -> bytes:
    """A JPEG with EXIF (GPS, maker note, model...), an XMP packet, a comment and an IPTC byline."""
    out = io.BytesIO()
    if metadata:
        halves(size).save(out, "JPEG", quality=90, exif=exif(orientation), xmp=XMP.encode(), comment=COMMENT)
        return _with_iptc(out.getvalue())
    halves(size).save(out, "JPEG", quality=90)
    return out.getvalue()


def _with_iptc(data: bytes) -> bytes:
    """The JPEG with a Photoshop APP13 segment holding an IPTC by-line, right after SOI."""
    record = b"\x1c\x02\x50" + struct.pack(">H", len(IPTC_BYLINE)) + IPTC_BYLINE
    resource = b"8BIM\x04\x04\0\0" + struct.pack(">I", len(record)) + record
    payload = b"Photoshop 3.0\0" + resource
    return data[:2] + b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def png(size: tuple[int, int] = (80, 40), orientation: int | None = None, alpha: bool = False) -> bytes:
    """A PNG with tEXt, zTXt and iTXt (XMP) chunks and an eXIf chunk; with `alpha`, its top rows transparent."""
    image = halves(size, "RGBA" if alpha else "RGB")
    if alpha:
        image.paste((0, 0, 0, 0), (0, 0, size[0], size[1] // 4))
    info = PngInfo()
    info.add_text("Author", PNG_AUTHOR)
    info.add_text("Comment", PNG_ZTXT, zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP)
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=info, exif=exif(orientation))
    return out.getvalue()


def webp(size: tuple[int, int] = (80, 40), orientation: int | None = None) -> bytes:
    out = io.BytesIO()
    halves(size).save(out, "WEBP", quality=90, exif=exif(orientation), xmp=XMP.encode())
    return out.getvalue()


def heic(size: tuple[int, int] = (80, 40), orientation: int | None = None) -> bytes:
    out = io.BytesIO()
    halves(size).save(out, "HEIF", quality=90, exif=exif(orientation).tobytes(), xmp=XMP.encode())
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` pixels but holds almost no data (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(bytes(1024)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def jpeg_header(width: int, height: int) -> bytes:
    """A JPEG that declares `width` x `height` pixels in its frame header and holds no image data."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    sos = b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    return b"\xff\xd8\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xda" + struct.pack(">H", 12) + sos


# --- Audio ---------------------------------------------------------------------------------------------------


def encode(
    fmt: str,
    codec: str,
    rate: int,
    seconds: float,
    *,
    metadata: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
    video: bool = False,
    layout: str = "mono",
) -> bytes:
    """`seconds` of a 440 Hz tone encoded as `codec` in container `fmt`, in memory."""
    out = io.BytesIO()
    with av.open(out, "w", format=fmt, options=options or {}) as container:
        container.metadata.update(metadata or {})
        picture = container.add_stream("mpeg4", rate=10) if video else None
        if picture is not None:
            assert isinstance(picture, av.video.stream.VideoStream)
            picture.width, picture.height, picture.pix_fmt = 32, 32, "yuv420p"
        stream = container.add_stream(codec, rate=rate, options={"strict": "experimental"})
        assert isinstance(stream, av.audio.stream.AudioStream)
        stream.layout = layout
        block = 1024
        channels = 1 if layout == "mono" else 2
        wave = [int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(block * 4) for _ in range(channels)]
        tone = struct.pack(f"<{len(wave)}h", *wave)
        total = int(rate * seconds)
        for start in range(0, total, block):
            count = min(block, total - start)
            frame = av.AudioFrame(format="s16", layout=layout, samples=count)
            offset = (start % (block * 3)) * 2 * channels
            frame.planes[0].update(tone[offset : offset + count * 2 * channels])
            frame.sample_rate, frame.pts, frame.time_base = rate, start, fractions.Fraction(1, rate)
            container.mux(stream.encode(frame))
            if picture is not None and start % (rate // 10) < block:
                image = av.VideoFrame.from_image(halves((32, 32)))  # type: ignore[no-untyped-call]
                image.pts = start * 10 // rate
                container.mux(picture.encode(image))
        container.mux(stream.encode(None))
        if picture is not None:
            container.mux(picture.encode(None))
    return out.getvalue()


def decoded_seconds(data: bytes) -> float:
    """How long the audio in `data` plays, counted from the samples FFmpeg decodes."""
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        samples: int = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _grow_moov(data: bytes, extra: bytes) -> bytes:
    """`extra` boxes appended to the moov box, which must be the last box (so no chunk offset moves)."""
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"moov":
            assert pos + size == len(data), "moov must come last"
            return data[:pos] + struct.pack(">I", size + len(extra)) + data[pos + 4 :] + extra
        pos += size
    raise AssertionError("no moov")


def _pad_mdat(data: bytes, extra: bytes) -> bytes:
    """`extra` bytes added inside the mdat box after its samples (moov, after it, moves; no offset changes)."""
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"mdat":
            end = pos + size
            return data[:pos] + struct.pack(">I", size + len(extra)) + data[pos + 4 : end] + extra + data[end:]
        pos += size
    raise AssertionError("no mdat")


def _top_level(data: bytes) -> dict[bytes, tuple[int, int]]:
    boxes, pos = {}, 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        boxes[kind] = (pos, pos + size)
        pos += size
    return boxes


def _faststart(data: bytes) -> bytes:
    """The moov box moved in front of mdat, its chunk offsets shifted to match (FFmpeg cannot do it in memory)."""
    boxes = _top_level(data)
    moov = bytearray(data[slice(*boxes[b"moov"])])
    shift = len(moov)
    pos = moov.find(b"stco")
    while pos > 0:
        count = struct.unpack_from(">I", moov, pos + 8)[0]
        for n in range(count):
            offset = struct.unpack_from(">I", moov, pos + 12 + 4 * n)[0]
            struct.pack_into(">I", moov, pos + 12 + 4 * n, offset + shift)
        pos = moov.find(b"stco", pos + 12 + 4 * count)
    mdat = boxes[b"mdat"][0]
    return data[:mdat] + bytes(moov) + data[mdat : boxes[b"moov"][0]]


_TAGS = {"title": TAG_TITLE, "artist": TAG_ARTIST, "comment": TAG_COMMENT, "creation_time": CREATED}


@cache
def m4a(seconds: float = 1.0) -> bytes:
    """AAC in M4A (moov last) with iTunes tags, a ©xyz location box, a uuid box and stray bytes in mdat."""
    data = _pad_mdat(encode("ipod", "aac", 44100, seconds, metadata=_TAGS), UNREFERENCED)
    xyz = _box(b"\xa9xyz", struct.pack(">HH", len(LOCATION), 0x15C7) + LOCATION.encode())
    data = _grow_moov(data, _box(b"udta", xyz + _box(b"\xa9mak", b"\0\x0e\x15\xc7" + MAKE.encode())))
    return data + _box(b"uuid", b"\xbe\x7a\xcf\xcb\x97\xa9\x42\xe8\x9c\x71\x99\x94\x91\xe3\xaf\xac" + XMP.encode())


@cache
def m4a_faststart() -> bytes:
    """AAC in M4A with the moov box first (chunk offsets then depend on its size), tagged by mutagen."""
    data = io.BytesIO(_faststart(encode("ipod", "aac", 44100, 1.0)))
    tagged = MP4(data)
    tagged["\xa9nam"] = TAG_TITLE
    tagged["\xa9ART"] = TAG_ARTIST
    tagged["\xa9cmt"] = TAG_COMMENT
    tagged["----:com.apple.iTunes:LOCATION"] = LOCATION.encode()
    data.seek(0)
    tagged.save(data)
    return data.getvalue()


@cache
def mp4_with_video() -> bytes:
    """An MP4 with a video track and a sound track (only the sound may leave)."""
    return encode("mp4", "aac", 44100, 1.0, metadata=_TAGS, video=True)


@cache
def mp4_fragmented(codec: str = "aac", base_moof: bool = False) -> bytes:
    """AAC (or "libopus") in fragmented MP4, as MediaRecorder writes audio/mp4, with tags in the moov: a fragment
    every 0.3 s, its samples placed from the file's start (FFmpeg's default) or, with `base_moof`, from their
    moof (as Chromium does)."""
    flags = "frag_keyframe+empty_moov" + ("+default_base_moof" if base_moof else "")
    rate = 48000 if codec == "libopus" else 44100
    return encode("mp4", codec, rate, 1.0, metadata=_TAGS, options={"movflags": flags, "frag_duration": "300000"})


@cache
def three_gp() -> bytes:
    """AMR-NB in 3GP with a 3GPP 'loci' location box and a title."""
    data = encode("3gp", "amr_nb", 8000, 1.0, metadata=_TAGS)
    loci = _box(b"loci", b"\0\0\0\0\x15\xc7" + LOCI_PLACE + b"\0" + bytes(13) + b"earth\0\0")
    return _grow_moov(data, _box(b"udta", loci))


@cache
def amr() -> bytes:
    """Raw AMR-NB, with an ID3 tag stuck on the end (some tools do that)."""
    return encode("amr", "amr_nb", 8000, 1.0) + b"ID3\x04\0\0\0\0\0\x20TIT2\0\0\0\x16\0\0\x03" + TAG_TITLE.encode()


@cache
def mp3() -> bytes:
    """MP3 with ID3v2 (title, artist, comment, GPS), an APEv2 tag and an ID3v1 tag."""
    data = io.BytesIO(encode("mp3", "libmp3lame", 44100, 1.0, metadata=_TAGS))
    ape = APEv2()
    ape["Comment"] = APE_VALUE
    ape.save(data)
    data.seek(0)
    tags = ID3(data)
    tags.add(TPE1(encoding=3, text=[TAG_ARTIST]))
    tags.add(COMM(encoding=3, lang="vie", desc="", text=[TAG_COMMENT]))
    tags.add(TXXX(encoding=3, desc="GPS", text=[LOCATION]))
    data.seek(0)
    tags.save(data, v1=2)
    return data.getvalue()


@cache
def ogg_opus() -> bytes:
    return encode("ogg", "libopus", 48000, 1.0, metadata={**_TAGS, "location": LOCATION})


@cache
def ogg_vorbis() -> bytes:
    return encode("ogg", "vorbis", 44100, 1.0, metadata={**_TAGS, "location": LOCATION}, layout="stereo")


@cache
def webm_vorbis() -> bytes:
    return encode("webm", "vorbis", 44100, 1.0, metadata={**_TAGS, "location": LOCATION}, layout="stereo")


@cache
def webm() -> bytes:
    return encode("webm", "libopus", 48000, 1.0, metadata={**_TAGS, "location": LOCATION})


def mp3_of_size(size: int) -> bytes:
    """A voice note of at most `size` bytes (and within one frame of it): real MP3 frames, no tag. tipbox's cleaner
    passes such a file through unchanged, so it makes an email of a known size."""
    encoded = encode("mp3", "libmp3lame", 44100, 2.0)
    from app.attachments import mp3 as cleaner

    start = cleaner.first_frame(encoded)
    assert start is not None
    frames = []
    pos = start
    while length := cleaner._mp3_frame(encoded, pos):
        frames.append(encoded[pos : pos + length])
        pos += length
    # The first frame may be the encoder's Info header, the last a short one: repeat the ones between.
    body = b"".join(frames[1:-1])
    data = body * (size // len(body)) + body[: size % len(body)]
    end = 0
    while (length := cleaner._mp3_frame(data, end)) and end + length <= len(data):
        end += length
    return data[:end]
