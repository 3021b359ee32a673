"""Photos: decoded and re-encoded as a plain JPEG, upright, long side capped, sRGB, with no metadata at all.

JPEG, PNG, WebP and HEIC/HEIF come in; a baseline JFIF JPEG goes out, and it is checked to hold nothing but
image data. The declared size is read first: a photo over its format's pixel cap is refused, and the memory its
decode will take is reserved (`reserve`) before anything is decoded, so a few kilobytes declaring millions of
pixels cannot take the server's memory unseen.
"""

from __future__ import annotations

import io

import pillow_heif
from PIL import Image, ImageCms, PngImagePlugin

from app import logs
from app.attachments._common import JPEG_QUALITY, MAX_DECODE_BYTES, MB, Reserve, TooManyPixels, Unclean

# Pillow's TIFF reader logs every EXIF tag's value (camera model, owner...) at DEBUG. `logs.configure` keeps that
# logger quiet too; this holds wherever the cleaners run, also when the service's logging was never configured.
logs.quiet_libraries()
# A PNG's text chunks are decompressed as it opens, before its size can be checked, and are then thrown away:
# Pillow allows 64 MB of them (uncounted memory); 4 MB is far more than any phone writes.
PngImagePlugin.MAX_TEXT_MEMORY = 4 * MB
# Thumbnails, depth maps and auxiliary images are never needed: only the primary image is decoded.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

# The pixels a photo may declare, by format. Phone cameras write JPEG (up to 48-50 MP, decoded at a reduced scale)
# and HEIC (12-24 MP by default; libheif decodes the whole picture, so the 48 MP of "max" modes would take some
# 230 MB); PNG and WebP are screenshots and pictures from the web, a few MP, and their decoders hold several
# full-size copies (`_BYTES_PER_PIXEL`).
FORMAT_PIXELS = {"jpeg": 50_000_000, "heif": 25_000_000, "png": 12_000_000, "webp": 6_000_000}
# Bytes per decoded pixel while a photo is decoded, by format and mode: the decoder's own buffers, Pillow's image
# (4 bytes a pixel for every colour mode) and any full-size conversion. Measured in benchmarks/attachments.py,
# rounded up; unknown modes take the format's largest figure.
_BYTES_PER_PIXEL: dict[str, dict[str, float]] = {
    "jpeg": {"L": 1, "RGB": 4, "CMYK": 4},
    "png": {"1": 5, "L": 1, "LA": 8, "P": 5, "PA": 9, "RGB": 4, "RGBA": 8, "I": 9, "I;16": 7, "I;16B": 7},
    "webp": {"RGB": 12, "RGBA": 16},
    "heif": {"L": 4, "RGB": 4, "RGBA": 5},  # libheif's planes and its RGB(A) buffer; Pillow gets bands only
}
_SLACK = 4 * MB  # libraries' small buffers (the picture written is counted with the target size)
_HEIF_BAND = 256  # rows of a HEIC picture converted and narrowed at a time

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
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


def clean_photo(
    data: bytes, detected: str, *, max_pixels: int, max_side: int, reserve: Reserve, max_decode: int = MAX_DECODE_BYTES
) -> bytes:
    image: Image.Image | None = None
    if detected == "heif":
        heif = _open_heif(data)
        width, height = heif.size
        mode, orientation = heif.mode, 1  # libheif turns the picture upright itself
        profile = heif.info.get("icc_profile")
        icc = profile if isinstance(profile, bytes) and mode in ("RGB", "RGBA") else None
    else:
        if detected == "webp" and _webp_pixels(data) > min(max_pixels, FORMAT_PIXELS["webp"]):
            raise TooManyPixels  # libwebp sets up its canvases as it opens the file: not for one over the cap
        try:
            # Lazy: only the header is read here; nothing is decoded before the size is checked.
            image = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[detected]])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise TooManyPixels from exc
        width, height = image.size
        mode, orientation = image.mode, 0  # read once the memory is reserved: a PNG's EXIF may follow its pixels
        icc = image.info.get("icc_profile") if image.mode in ("RGB", "RGBA") else None
    if width < 1 or height < 1 or width * height > min(max_pixels, FORMAT_PIXELS[detected]):
        raise TooManyPixels
    scale = min(1.0, max_side / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    full = width * height
    if image is not None and detected == "jpeg":
        # Decode at 1/2, 1/4 or 1/8 scale straight from the DCT when that still covers the target size.
        image.draft("RGB", target)
        width, height = image.size
    if image is not None and mode == "P" and "transparency" in image.info:
        mode = "PA"  # a palette with transparency goes through RGBA on its way to RGB
    cost = decode_cost(detected, mode, (width, height), target, _progressive_coefficients(image, full))
    if cost > max_decode:
        raise TooManyPixels
    with reserve(cost):
        orientation = _orientation(image) if image is not None else orientation
        picture = _decode(image, target) if image is not None else _decode_heif(heif, target)
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


def _webp_pixels(data: bytes) -> int:
    """The pixels a WebP file declares in its first chunk (extended, lossless or lossy); 0 when it is none of those."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return (int.from_bytes(data[24:27], "little") + 1) * (int.from_bytes(data[27:30], "little") + 1)
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ((bits & 0x3FFF) + 1) * ((bits >> 14 & 0x3FFF) + 1)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return (int.from_bytes(data[26:28], "little") & 0x3FFF) * (int.from_bytes(data[28:30], "little") & 0x3FFF)
    return 0


def decode_cost(detected: str, mode: str, decoded: tuple[int, int], target: tuple[int, int], extra: int = 0) -> int:
    """The bytes a photo's cleaning takes at its peak, from its header: the decoded pixels at the format's bytes per
    pixel, Pillow's resize (its horizontal pass keeps the target's width at the full height, then the result), and
    `extra` (a progressive JPEG's coefficients)."""
    table = _BYTES_PER_PIXEL[detected]
    per_pixel = table.get(mode, max(table.values()))
    narrowed = target[0] * decoded[1] * 4 + target[0] * target[1] * 4
    return int(decoded[0] * decoded[1] * per_pixel) + narrowed + extra + _SLACK


def _progressive_coefficients(image: Image.Image | None, full: int) -> int:
    """The coefficient buffers libjpeg keeps for a whole progressive JPEG, at full size whatever the draft scale:
    two bytes per coefficient, for each component at its sampling."""
    if image is None or image.format != "JPEG" or not image.info.get("progressive"):
        return 0
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * 3
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    share = sum(layer[1] * layer[2] for layer in layers) / (h_max * v_max)
    return int(full * share * 2)


def _decode(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    image.load()
    # Shrink first, in the decoded mode, so only one full-size copy of the pixels ever exists.
    picture = image if image.mode in _RESIZABLE else _flatten(image)
    if picture.size != target:
        picture = picture.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
    return picture


def _open_heif(data: bytes) -> pillow_heif.HeifImage:
    """The primary picture of a HEIC/HEIF file, not decoded yet (its size and mode are read from the container)."""
    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        return heif[heif.primary_index]
    except (OSError, ValueError, SyntaxError, RuntimeError, EOFError) as exc:
        raise Unclean("unreadable HEIF") from exc


def _decode_heif(heif: pillow_heif.HeifImage, target: tuple[int, int]) -> Image.Image:
    """The picture at the target size; libheif's buffer is narrowed band by band, so Pillow never holds a full-size
    copy (bicubic resizing is separable: narrowing each band equals Pillow's own horizontal pass)."""
    raw, stride, mode = heif.data, heif.stride, heif.mode
    width, height = heif.size
    if mode not in ("RGB", "RGBA", "L"):
        raise Unclean("unexpected HEIF mode")
    narrow = Image.new("RGB", (target[0], height))
    for top in range(0, height, _HEIF_BAND):
        rows = min(_HEIF_BAND, height - top)
        band = Image.frombytes(mode, (width, rows), raw[top * stride : (top + rows) * stride], "raw", mode, stride)
        band = _flatten(band)
        if band.width != target[0]:
            band = band.resize((target[0], rows), Image.Resampling.BICUBIC)
        narrow.paste(band, (0, top))
    del raw
    return narrow.resize(target, Image.Resampling.BICUBIC) if narrow.size != target else narrow


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
        # A palette without transparency becomes RGB at once: no full-size RGBA copy on the way.
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "F"):
        image = image.convert("I").point(lambda value: value * (1 / 257)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba)  # the alpha band is the mask: no separate copy of it
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


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
