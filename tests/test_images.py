"""app/attachments/images.py: photos re-encoded bare and upright; what a decode costs is known, and reserved,
before it starts."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from app import attachments
from app.attachments import MAX_PIXELS, MAX_SIDE, Busy, images, sniff
from app.attachments._common import TooManyPixels
from tests import hostile, media
from tests.cleaning import PHOTOS, clean_one, leaked, refusal

ROOT = Path(__file__).resolve().parent.parent


def jpeg_markers(data: bytes) -> list[int]:
    """The markers of a JPEG's segments before its scan."""
    markers, pos = [], 2
    while data[pos] == 0xFF and data[pos + 1] != 0xDA:
        markers.append(data[pos + 1])
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return markers


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
    attachment = clean_one(PHOTOS[kind](orientation=orientation))  # type: ignore[call-arg]
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
    error = refusal(data, **limits)
    assert (error.position, error.reason) == (1, attachments.PHOTO_TOO_LARGE)


def test_a_50000_pixel_square_png_is_refused_from_its_header_in_bounded_memory() -> None:
    # A fresh process, so its peak resident size is its own: imports, then the refusal.
    script = """
import json, resource
from app.attachments import AttachmentError, clean
from app.attachments import Upload
from tests.media import png_header
data = png_header(50_000, 50_000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    clean([Upload("photo", data)], max_files=5, max_bytes=20_000_000)
except AttachmentError as exc:
    reason = exc.reason
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_kb": after - before, "reason": reason, "size": len(data)}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(done.stdout)
    assert result["reason"] == attachments.PHOTO_TOO_LARGE
    assert result["grew_kb"] < 20_000  # decoding would need 7.5 GB
    assert result["size"] < 2_000


@pytest.mark.parametrize("kind", PHOTOS)
def test_a_truncated_photo_is_refused(kind: str) -> None:
    data = PHOTOS[kind]()
    error = refusal(data[: len(data) * 2 // 3])
    assert error.reason in (attachments.PHOTO_UNREADABLE, attachments.NOT_ACCEPTED)


def test_a_multi_picture_jpeg_leaves_as_its_main_picture() -> None:
    out = io.BytesIO()
    second = media.halves().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    media.halves().save(out, "MPO", save_all=True, append_images=[second], exif=media.exif())
    attachment = clean_one(out.getvalue())
    assert leaked(attachment.data) == []
    with Image.open(io.BytesIO(attachment.data)) as image:
        assert image.format == "JPEG" and is_close(image.getpixel((10, 20)), media.RED)


ATTACKS = {
    "webp-7060x7060-rgba": lambda: hostile.webp_declaring(7060, 7060),  # 121 KB took a server to 920 MiB
    "png-palette-50mp": lambda: hostile.png_flat(7071, 7071),  # 50 KB, 700 MiB
    "heic-rgba-50mp": lambda: hostile.heic_declaring(8165, 6124),  # 24 KB, 522 MiB
    "png-rgba-over-cap": lambda: hostile.png_flat(4000, 3001, colour_type=6),
}


@pytest.mark.parametrize("name", ATTACKS)
def test_small_files_declaring_huge_pictures_are_refused_before_anything_is_decoded(name: str) -> None:
    reserved: list[int] = []

    @contextlib.contextmanager
    def reserve(size: int) -> Iterator[None]:
        reserved.append(size)
        yield

    data = ATTACKS[name]()
    assert len(data) < 200_000
    with pytest.raises(TooManyPixels):
        images.clean_photo(data, sniff(data) or "", max_pixels=MAX_PIXELS, max_side=MAX_SIDE, reserve=reserve)
    assert reserved == []  # refused from the header: nothing was about to be decoded


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (hostile.png_flat(4000, 3000, colour_type=6), "png"),  # at the PNG cap, RGBA: the worst PNG accepted
        (media.jpeg((3000, 2000)), "jpeg"),
        (media.heic((600, 400)), "heif"),
        (media.webp((600, 400)), "webp"),
    ],
    ids=["png-rgba-12mp", "jpeg", "heif", "webp"],
)
def test_a_decode_reserves_its_memory_first_and_busy_stops_it(data: bytes, detected: str) -> None:
    reserved: list[int] = []

    @contextlib.contextmanager
    def reserve(size: int) -> Iterator[None]:
        reserved.append(size)
        yield

    images.clean_photo(data, detected, max_pixels=MAX_PIXELS, max_side=MAX_SIDE, reserve=reserve)
    assert len(reserved) == 1 and reserved[0] <= images.MAX_DECODE_BYTES
    if detected == "png":  # 12 MP of RGBA: about 8 bytes a pixel while it is decoded
        assert reserved[0] > 12_000_000 * 8

    def full(size: int) -> Iterator[None]:
        raise Busy

    with pytest.raises(Busy):
        images.clean_photo(data, detected, max_pixels=MAX_PIXELS, max_side=MAX_SIDE, reserve=full)  # type: ignore[arg-type]


def test_a_large_jpeg_is_decoded_at_a_reduced_scale() -> None:
    full = images.decode_cost("jpeg", "RGB", (8000, 6000), (2560, 1920))
    reserved: list[int] = []

    @contextlib.contextmanager
    def reserve(size: int) -> Iterator[None]:
        reserved.append(size)
        yield

    out = images.clean_photo(media.jpeg((8000, 6000), metadata=False), "jpeg", max_pixels=MAX_PIXELS,
                             max_side=MAX_SIDE, reserve=reserve)  # fmt: skip
    assert reserved[0] < full / 2  # decoded at half scale: a quarter of the pixels
    with Image.open(io.BytesIO(out)) as image:
        assert image.size == (2560, 1920)


def test_a_heic_is_narrowed_band_by_band_with_the_same_picture() -> None:
    with Image.open(io.BytesIO(clean_one(media.heic((3000, 1200))).data)) as image:
        assert image.size == (2560, 1024)
        assert is_close(image.getpixel((100, 500)), media.RED) and is_close(image.getpixel((2400, 500)), media.BLUE)


def test_a_png_whose_text_chunks_would_take_more_than_4_mb_is_refused_as_it_opens() -> None:
    text = zlib.compress(b"A" * 1_000_000, 9)  # 1 KB that a PNG reader inflates to 1 MB
    chunks = b"".join(hostile.chunk(b"zTXt", b"Comment\0\0" + text) for _ in range(8))
    png = media.png()
    data = png[:33] + chunks + png[33:]  # after IHDR, before the pixels
    assert len(data) < 20_000
    assert refusal(data).reason == attachments.PHOTO_UNREADABLE
    assert clean_one(png[:33] + chunks[: len(chunks) // 4] + png[33:]).data  # 2 MB of text: fine, and dropped
