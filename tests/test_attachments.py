"""app/attachments.py: types from bytes, photos re-encoded bare and upright, audio re-muxed without metadata."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mutagen import File as MutagenFile
from PIL import Image, ImageCms

from app import attachments
from app.attachments import AttachmentError, Upload, clean, sniff
from app.mail import Attachment
from tests import media

ROOT = Path(__file__).resolve().parent.parent


def clean_one(
    data: bytes, *, max_pixels: int = attachments.MAX_PIXELS, max_side: int = attachments.MAX_SIDE
) -> Attachment:
    uploads = [Upload("file", data)]
    (attachment,) = clean(uploads, max_files=5, max_bytes=20_000_000, max_pixels=max_pixels, max_side=max_side)
    return attachment


def refusal(data: bytes, max_pixels: int = attachments.MAX_PIXELS) -> AttachmentError:
    with pytest.raises(AttachmentError) as caught:
        clean_one(data, max_pixels=max_pixels)
    return caught.value


def leaked(data: bytes) -> list[bytes]:
    return [secret for secret in media.SECRETS if secret in data]


def jpeg_markers(data: bytes) -> list[int]:
    """The markers of a JPEG's segments before its scan."""
    markers, pos = [], 2
    while data[pos] == 0xFF and data[pos + 1] != 0xDA:
        markers.append(data[pos + 1])
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return markers


PHOTOS: dict[str, Callable[[], bytes]] = {
    "jpeg": media.jpeg,
    "png": media.png,
    "webp": media.webp,
    "heif": media.heic,
}
RECORDINGS: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "m4a": (media.m4a, "m4a", "audio/mp4"),
    "m4a-faststart": (media.m4a_faststart, "m4a", "audio/mp4"),
    "mp4-with-video": (media.mp4_with_video, "m4a", "audio/mp4"),
    "3gp": (media.three_gp, "3gp", "audio/3gpp"),
    "amr": (media.amr, "amr", "audio/amr"),
    "mp3": (media.mp3, "mp3", "audio/mpeg"),
    "ogg-opus": (media.ogg_opus, "ogg", "audio/ogg"),
    "ogg-vorbis": (media.ogg_vorbis, "ogg", "audio/ogg"),
    "webm": (media.webm, "webm", "audio/webm"),
    "webm-vorbis": (media.webm_vorbis, "webm", "audio/webm"),
}


# --- Types from bytes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (media.jpeg, "jpeg"), (media.png, "png"), (media.webp, "webp"), (media.heic, "heif"), (media.m4a, "m4a"),
        (media.three_gp, "3gp"), (media.amr, "amr"), (media.mp3, "mp3"), (media.ogg_opus, "ogg"),
        (media.ogg_vorbis, "ogg"), (media.webm, "webm"),
    ],
)  # fmt: skip
def test_sniff_reads_the_type_from_the_bytes(make: Callable[[], bytes], expected: str) -> None:
    assert sniff(make()) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"", b"<!doctype html><html><body><script>alert(1)</script></body></html>",
        b"%PDF-1.7\n", b"PK\x03\x04" + bytes(40), b"RIFF\x24\0\0\0WAVEfmt ", b"\xff\xd9", b"OggS" + bytes(60),
        b"\0\0\0\x18ftypavif\0\0\0\0avifmif1", b"ID3\x04\0\0\0\0\0\0", bytes(range(256)),
    ],
    ids=["empty", "html", "pdf", "zip", "wav", "jpeg-end", "ogg-empty", "avif", "id3-only", "noise"],
)  # fmt: skip
def test_sniff_knows_nothing_else(data: bytes) -> None:
    assert sniff(data) is None


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO", "PDF"])
def test_other_picture_formats_are_not_accepted(fmt: str) -> None:
    out = io.BytesIO()
    media.halves().save(out, fmt)
    assert sniff(out.getvalue()) is None
    assert refusal(out.getvalue()).reason == attachments.NOT_ACCEPTED


def test_a_jpg_that_holds_html_is_refused_by_position() -> None:
    html = b"<!DOCTYPE html>\n<html><head><title>photo.jpg</title></head><body>not a photo</body></html>"
    uploads = [Upload("photo", media.jpeg()), Upload("photo", html), Upload("voice", media.m4a())]
    with pytest.raises(AttachmentError) as caught:
        clean(uploads, max_files=5, max_bytes=20_000_000)
    assert (caught.value.position, caught.value.reason) == (2, attachments.NOT_ACCEPTED)
    assert "jpg" not in caught.value.reason


# --- Photos --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PHOTOS)
def test_photo_metadata_is_gone_and_the_picture_stays(kind: str) -> None:
    original = PHOTOS[kind]()
    # The fixture really carries them: camera model, GPS seconds as EXIF rationals, the XMP GPS packet.
    assert {media.MODEL.encode(), media.GPS_SECONDS, media.XMP_GPS.encode()} <= set(leaked(original))

    attachment = clean_one(original)

    assert (attachment.kind, attachment.filename, attachment.content_type) == ("photo", "photo-1.jpg", "image/jpeg")
    assert leaked(attachment.data) == []
    # JFIF header, quantisation and Huffman tables, frame: no APP1 (EXIF, XMP), APP2 (ICC), APP13 (IPTC), COM.
    assert set(jpeg_markers(attachment.data)) == {0xE0, 0xDB, 0xC0, 0xC4}
    with Image.open(io.BytesIO(attachment.data)) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (80, 40))
        assert not image.getexif()
        assert "icc_profile" not in image.info and "xmp" not in image.info and "comment" not in image.info
        left, right = image.getpixel((10, 20)), image.getpixel((70, 20))
    assert is_close(left, media.RED) and is_close(right, media.BLUE)


def is_close(pixel: object, colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


@pytest.mark.parametrize("kind", PHOTOS)
@pytest.mark.parametrize(
    ("orientation", "size", "top", "bottom"),
    [
        (6, (40, 80), media.RED, media.BLUE),  # stored landscape, turned 90 degrees clockwise: a portrait
        (8, (40, 80), media.BLUE, media.RED),
        (3, (80, 40), None, None),
    ],
)
def test_photos_arrive_upright(
    kind: str, orientation: int, size: tuple[int, int], top: tuple[int, int, int] | None, bottom: object
) -> None:
    make = {"jpeg": media.jpeg, "png": media.png, "webp": media.webp, "heif": media.heic}[kind]
    attachment = clean_one(make(orientation=orientation))
    with Image.open(io.BytesIO(attachment.data)) as image:
        assert image.size == size
        assert image.getexif().get(0x0112) is None
        if top is None:  # upside down: the red half comes back to the right
            assert is_close(image.getpixel((10, 20)), media.BLUE) and is_close(image.getpixel((70, 20)), media.RED)
        else:
            assert is_close(image.getpixel((20, 10)), top)
            assert isinstance(bottom, tuple) and is_close(image.getpixel((20, 70)), bottom)


def test_the_long_side_is_capped_after_turning_upright() -> None:
    portrait = clean_one(media.jpeg(size=(3000, 1200), orientation=6))
    with Image.open(io.BytesIO(portrait.data)) as image:
        assert image.size == (1024, 2560)
    small = clean_one(media.png(size=(3000, 1200)), max_side=600)
    with Image.open(io.BytesIO(small.data)) as image:
        assert image.size == (600, 240)


def test_transparency_is_laid_on_white() -> None:
    attachment = clean_one(media.png(alpha=True))
    with Image.open(io.BytesIO(attachment.data)) as image:
        assert image.mode == "RGB"
        assert is_close(image.getpixel((10, 3)), (255, 255, 255), 8)
        assert is_close(image.getpixel((10, 30)), media.RED)


def test_an_icc_profile_is_applied_then_dropped() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = io.BytesIO()
    media.halves().save(out, "JPEG", icc_profile=profile)
    attachment = clean_one(out.getvalue())
    assert b"ICC_PROFILE" not in attachment.data
    with Image.open(io.BytesIO(attachment.data)) as image:
        assert is_close(image.getpixel((10, 20)), media.RED)


@pytest.mark.parametrize("mode", ["CMYK", "L", "P", "I;16", "LA", "1"])
def test_other_pixel_formats_become_rgb(mode: str) -> None:
    image = media.halves().convert("RGBA" if mode == "LA" else "RGB")
    converted = image.convert(mode) if mode != "I;16" else Image.new("I;16", (80, 40), 65535)
    out = io.BytesIO()
    converted.save(out, "JPEG" if mode == "CMYK" else "PNG")
    attachment = clean_one(out.getvalue())
    with Image.open(io.BytesIO(attachment.data)) as cleaned:
        assert (cleaned.mode, cleaned.size) == ("RGB", (80, 40))
        if mode == "I;16":
            assert is_close(cleaned.getpixel((5, 5)), (255, 255, 255), 4)


def test_an_animated_webp_leaves_as_its_first_frame() -> None:
    frames = [media.halves(), media.halves().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    with Image.open(io.BytesIO(clean_one(out.getvalue()).data)) as image:
        assert is_close(image.getpixel((10, 20)), media.RED)


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        (media.png_header(50_000, 50_000), {}),  # Pillow's own DecompressionBombError
        (media.png_header(10_000, 9_000), {}),  # Pillow's DecompressionBombWarning (an error under pytest)
        (media.png_header(8_000, 8_000), {}),  # under Pillow's limits, over ours
        (media.jpeg_header(60_000, 60_000), {}),
        (media.jpeg(), {"max_pixels": 3_000}),
    ],
    ids=["png-50000", "png-90mp", "png-64mp", "jpeg-60000", "max-pixels"],
)
def test_too_many_pixels_are_refused_before_decoding(data: bytes, limits: dict[str, int]) -> None:
    started = time.perf_counter()
    error = refusal(data, **limits)
    assert time.perf_counter() - started < 0.5
    assert (error.position, error.reason) == (1, attachments.PHOTO_TOO_LARGE)


def test_a_50000_pixel_square_png_is_refused_fast_with_bounded_memory() -> None:
    # A fresh process, so its peak resident size is its own: imports, then the refusal.
    script = """
import json, resource, time
from app.attachments import AttachmentError, clean
from app.attachments import Upload
from tests.media import png_header
data = png_header(50_000, 50_000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    clean([Upload("photo", data)], max_files=5, max_bytes=20_000_000)
except AttachmentError as exc:
    reason = exc.reason
seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "grew_kb": after - before, "reason": reason, "size": len(data)}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(done.stdout)
    assert result["reason"] == attachments.PHOTO_TOO_LARGE
    assert result["seconds"] < 0.2
    assert result["grew_kb"] < 20_000  # decoding would need 7.5 GB
    assert result["size"] < 2_000


@pytest.mark.parametrize("kind", PHOTOS)
def test_a_truncated_photo_is_refused(kind: str) -> None:
    data = PHOTOS[kind]()
    error = refusal(data[: len(data) * 2 // 3])
    assert error.reason in (attachments.PHOTO_UNREADABLE, attachments.NOT_ACCEPTED)


# --- Voice notes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_metadata_is_gone_and_the_sound_stays(name: str) -> None:
    make, extension, content_type = RECORDINGS[name]
    original = make()
    assert len(leaked(original)) >= 3  # the fixture really carries tags

    attachment = clean_one(original)

    assert (attachment.kind, attachment.filename, attachment.content_type) == (
        "voice", f"voice-1.{extension}", content_type
    )
    assert leaked(attachment.data) == []
    assert media.decoded_seconds(attachment.data) == pytest.approx(1.0, abs=0.1)
    if extension not in ("amr", "webm"):  # mutagen reads neither raw AMR nor Matroska
        parsed = MutagenFile(io.BytesIO(attachment.data))
        assert parsed is not None and parsed.info.length > 0
        assert not parsed.tags


def top_level_boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, data[pos + 8 : pos + size]
        pos += size


def test_the_vorbis_comment_inside_webm_codec_private_is_replaced() -> None:
    # FFmpeg leaves that comment empty; a phone may not. The Ogg fixture's headers carry tags: lace them as WebM does.
    pages = attachments._ogg_pages(media.ogg_vorbis())
    ident = pages[0].body
    (comment, setup), _ = attachments._ogg_headers(pages, 2)
    assert media.TAG_TITLE.encode() in comment
    private = b"\x02" + bytes([len(ident)]) + b"\xff" * (len(comment) // 255) + bytes([len(comment) % 255])
    cleaned = attachments._vorbis_private(private + ident + comment + setup)
    assert leaked(cleaned) == []
    assert cleaned.startswith(b"\x02" + bytes([len(ident)])) and ident in cleaned and cleaned.endswith(setup)


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


@pytest.mark.parametrize(
    "make",
    [
        media.mp4_fragmented,
        lambda: media.m4a()[: len(media.m4a()) // 2],
        lambda: with_chunk_offset(media.m4a(), media.m4a().find(b"moov")),
        lambda: media.m4a().replace(b"mp4a", b"enca"),
        lambda: media.ogg_opus()[:200],
        lambda: media.webm()[:300],
        lambda: b"#!AMR\n",
    ],
    ids=["fragmented-mp4", "truncated-m4a", "offset-into-moov", "encrypted", "opus-headers-only", "webm-header-only",
         "amr-no-frames"],
)  # fmt: skip
def test_a_recording_that_cannot_be_cleaned_is_refused(make: Callable[[], bytes]) -> None:
    error = refusal(make())
    assert error.reason in (attachments.VOICE_UNREADABLE, attachments.NOT_ACCEPTED)


def test_a_long_chain_of_id3_tags_is_refused_without_walking_it() -> None:
    # 10 000 empty ID3v2 headers before real MPEG frames: no recorder writes that; walking it costs CPU per tag.
    chain = b"ID3\x04\0\0\0\0\0\0" * 10_000
    audio = media.mp3()
    assert sniff(chain + audio) is None
    assert refusal(chain + audio).reason == attachments.NOT_ACCEPTED
    first = attachments.mp3.first_frame(audio)
    assert first is not None
    after = first + attachments.mp3._mp3_frame(audio, first)
    with pytest.raises(attachments._Unclean):
        attachments.mp3.clean_mp3(audio[:after] + chain + audio[after:])  # the same chain between frames
    assert sniff(b"ID3\x04\0\0\0\0\0\0" * 3 + audio) == "mp3"  # a few tags are fine


def rewritten_table(data: bytes, box: bytes, header: int, value: Callable[[int], int]) -> bytes:
    """The file with each 32-bit entry of the first `box` table (after `header` bytes) replaced by value(entry)."""
    out = bytearray(data)
    start = data.find(box) + 4 + header
    count = struct.unpack_from(">I", data, start - 4)[0]
    for n in range(count):
        struct.pack_into(">I", out, start + 4 * n, value(struct.unpack_from(">I", data, start + 4 * n)[0]))
    return bytes(out)


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def hand_made_m4a(chunks: int, chunk_offset: int | None = None) -> bytes:
    """A minimal M4A: `chunks` chunks of one 1000-byte sample each, at `chunk_offset` (or one after another)."""
    ftyp = box(b"ftyp", b"M4A \0\0\0\0M4A isom")
    mdat_start = len(ftyp) + 8
    offsets = [chunk_offset if chunk_offset is not None else mdat_start + 1000 * n for n in range(chunks)]
    full = b"\0\0\0\0"
    stbl = box(
        b"stbl",
        box(b"stsd", full, struct.pack(">I", 1), box(b"mp4a", bytes(28))),
        box(b"stts", full, struct.pack(">III", 1, chunks, 1024)),
        box(b"stsc", full, struct.pack(">IIII", 1, 1, 1, 1)),
        box(b"stsz", full, struct.pack(f">II{chunks}I", 0, chunks, *[1000] * chunks)),
        box(b"stco", full, struct.pack(f">I{chunks}I", chunks, *offsets)),
    )
    minf = box(b"minf", box(b"smhd", bytes(8)), stbl)
    mdia = box(b"mdia", box(b"mdhd", bytes(24)), box(b"hdlr", bytes(8), b"soun", bytes(13)), minf)
    moov = box(b"moov", box(b"mvhd", bytes(100)), box(b"trak", box(b"tkhd", bytes(84)), mdia))
    return ftyp + box(b"mdat", bytes(1000 * chunks)) + moov


def test_sample_tables_that_would_blow_up_are_refused() -> None:
    assert len(attachments._clean_mp4(hand_made_m4a(100), b"")) > 100_000  # the hand-made file itself is fine
    # 100 chunks, each the whole of a 1000-byte mdat: the output would be 100 times the input.
    amplified = hand_made_m4a(100, chunk_offset=0).replace(box(b"mdat", bytes(100_000)), box(b"mdat", bytes(1000)))
    amplified = rewritten_table(amplified, b"stco", 8, lambda _: amplified.find(b"mdat") + 4)
    with pytest.raises(attachments._Unclean, match="overlap"):
        attachments._clean_mp4(amplified, b"")
    # One size for all samples, and four billion of them.
    original = media.m4a()
    stsz = original.find(b"stsz") + 4
    huge = original[: stsz + 4] + struct.pack(">II", 1, 0xFFFFFFFF) + original[stsz + 12 :]
    for data in (amplified, huge):
        started = time.perf_counter()
        assert refusal(data).reason == attachments.VOICE_UNREADABLE
        assert time.perf_counter() - started < 0.5


def test_a_multi_picture_jpeg_leaves_as_its_main_picture() -> None:
    out = io.BytesIO()
    second = media.halves().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    media.halves().save(out, "MPO", save_all=True, append_images=[second], exif=media.exif())
    attachment = clean_one(out.getvalue())
    assert leaked(attachment.data) == []
    with Image.open(io.BytesIO(attachment.data)) as image:
        assert image.format == "JPEG" and is_close(image.getpixel((10, 20)), media.RED)


def test_a_damaged_file_never_crashes_and_never_leaks() -> None:
    """Deterministic mutations of every fixture: each is cleaned without a trace of metadata, or refused."""
    rng = random.Random(3)
    makers = [*PHOTOS.values(), *(make for make, _, _ in RECORDINGS.values())]
    outcomes = {"cleaned": 0, "refused": 0}
    for make in makers:
        original = make()
        for _ in range(25):
            data = bytearray(original)
            cut = rng.randrange(len(data))
            if rng.random() < 0.3:
                del data[cut:]
            else:
                for _ in range(rng.randint(1, 8)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            try:
                attachment = clean_one(bytes(data))
            except AttachmentError:
                outcomes["refused"] += 1
            else:
                outcomes["cleaned"] += 1
                assert leaked(attachment.data) == []
    assert outcomes["cleaned"] > 0 and outcomes["refused"] > 0


# --- Limits, names, order ------------------------------------------------------------------------------------


def test_names_count_per_kind_and_the_input_used_does_not_matter() -> None:
    uploads = [
        Upload("photo", media.jpeg()),
        Upload("photo", media.m4a()),  # a recording chosen in the photo input is still a recording
        Upload("voice", media.png()),
        Upload("voice", media.mp3()),
    ]
    result = clean(uploads, max_files=5, max_bytes=20_000_000)
    assert [(a.kind, a.index, a.filename, a.content_type) for a in result] == [
        ("photo", 1, "photo-1.jpg", "image/jpeg"),
        ("voice", 1, "voice-1.m4a", "audio/mp4"),
        ("photo", 2, "photo-2.jpg", "image/jpeg"),
        ("voice", 2, "voice-2.mp3", "audio/mpeg"),
    ]
    assert clean([], max_files=0, max_bytes=0) == []


def test_too_many_files_are_refused() -> None:
    uploads = [Upload("photo", media.jpeg())] * 6
    with pytest.raises(AttachmentError) as caught:
        clean(uploads, max_files=5, max_bytes=20_000_000)
    assert (caught.value.position, caught.value.reason, dict(caught.value.params)) == (
        6, attachments.TOO_MANY_FILES, {"max": 5}
    )


def test_too_many_bytes_are_refused_before_any_work() -> None:
    photo = media.jpeg()
    uploads = [Upload("photo", photo), Upload("photo", photo), Upload("photo", b"<html>")]
    with pytest.raises(AttachmentError) as caught:
        clean(uploads, max_files=5, max_bytes=len(photo) * 2 - 1)
    assert (caught.value.position, caught.value.reason) == (2, attachments.TOO_LARGE)
    assert caught.value.params == {"max": 1}


def test_no_metadata_reaches_the_log_even_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    files = [make() for make in PHOTOS.values()] + [make() for make, _, _ in RECORDINGS.values()]
    damaged = [data[: len(data) // 2] for data in files]
    caplog.set_level("DEBUG")
    for data in files + damaged:
        with contextlib.suppress(AttachmentError):
            clean([Upload("IMG_20240506_SECRET.jpg", data)], max_files=5, max_bytes=20_000_000)
    assert any("refused" in record.getMessage() for record in caplog.records)
    text = caplog.text.encode()
    assert b"SECRET" not in text and not [secret for secret in media.SECRETS if secret in text]


# --- Nothing on disk -----------------------------------------------------------------------------------------

_WATCHING: list[str] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if not _WATCHING or event not in ("open", "tempfile.mkstemp", "tempfile.mkdtemp", "os.mkdir"):
        return
    # Reading (Python's own modules, say) is fine; creating or writing any file is not.
    if event == "open":
        mode, flags = args[1], args[2]
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT
        if not (isinstance(mode, str) and any(flag in mode for flag in "wax+")) and not (
            isinstance(flags, int) and flags & writes
        ):
            return
    _WATCHING.append(f"{event} {args[0]!r}")


@pytest.fixture
def watch_files() -> Iterator[list[str]]:
    if not getattr(sys, "_tipbox_audit", False):
        sys.addaudithook(_audit)
        sys._tipbox_audit = True  # type: ignore[attr-defined]
    _WATCHING[:] = ["watching"]
    yield _WATCHING
    _WATCHING.clear()


def test_cleaning_writes_nothing_to_disk(watch_files: list[str]) -> None:
    uploads = [Upload("file", make()) for make in PHOTOS.values()]
    uploads += [Upload("file", make()) for make, _, _ in RECORDINGS.values()]
    result = clean(uploads, max_files=len(uploads), max_bytes=20_000_000)
    assert len(result) == len(uploads)
    assert watch_files == ["watching"]


def test_the_disk_watch_sees_a_temporary_file(watch_files: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryFile() as handle:
        handle.write(b"x")
    with tempfile.SpooledTemporaryFile(max_size=1) as spooled:
        spooled.write(b"rolled over to disk")
    assert len(watch_files) >= 3
