"""Photos: decoded and re-encoded as a plain JPEG, upright, long side capped, sRGB, with no metadata at all.

JPEG, PNG, WebP and HEIC/HEIF come in; a baseline JFIF JPEG goes out, and it is checked to hold nothing but
image data. The declared pixel count is checked before anything is decoded (decompression bombs).
"""

from __future__ import annotations

import io

import pillow_heif
from PIL import Image, ImageCms

from app import logs
from app.attachments._common import JPEG_QUALITY, TooManyPixels, Unclean

# Pillow's TIFF reader logs every EXIF tag's value (camera model, owner...) at DEBUG. `logs.configure` keeps that
# logger quiet too; this holds wherever the cleaners run, also when the service's logging was never configured.
logs.quiet_libraries()
# Thumbnails, depth maps and auxiliary images are never needed: only the primary image is decoded.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

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
# Modes Pillow resizes well as they are (palette, 1-bit and 16-bit images are converted first).
_RESIZABLE = {"RGB", "RGBA", "L", "LA", "CMYK"}
# Markers a JPEG written here may hold before its scan: JFIF APP0, tables, frame, restart interval.
_JPEG_ALLOWED = {0xE0, 0xDB, 0xC4, 0xC0, 0xC1, 0xC2, 0xDD}


def clean_photo(data: bytes, detected: str, *, max_pixels: int, max_side: int) -> bytes:
    try:
        # Lazy: only the header is read here; nothing is decoded before the size is checked.
        image = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[detected]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels from exc
    width, height = image.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise TooManyPixels
    orientation = _orientation(image)
    icc = image.info.get("icc_profile") if image.mode in ("RGB", "RGBA") else None
    scale = min(1.0, max_side / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if detected == "jpeg":
        # Decode at 1/2, 1/4 or 1/8 scale straight from the DCT when that still covers the target size.
        image.draft("RGB", target)
    image.load()
    # Shrink first, in the decoded mode, so only one full-size copy of the pixels ever exists.
    picture = image if image.mode in _RESIZABLE else _flatten(image)
    if picture.size != target:
        picture = picture.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
    del image
    picture = _flatten(picture)
    if icc:
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
    """The pixels as RGB (the image itself if it already is); transparency is laid on white."""
    if image.mode == "RGB":
        return image
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
            raise Unclean(f"marker {marker:#x} in the output")
        pos += 2 + length
    raise Unclean("no scan in the output")
