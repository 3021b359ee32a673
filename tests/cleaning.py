"""What the attachments tests share: the photos by format, one file cleaned or refused, the secrets that leaked."""

from __future__ import annotations

from collections.abc import Callable

from app.attachments import MAX_PIXELS, MAX_SIDE, Attachment, AttachmentError, Upload, clean
from tests.media import SECRETS, heic, jpeg, png, webp

PHOTOS: dict[str, Callable[[], bytes]] = {"jpeg": jpeg, "png": png, "webp": webp, "heif": heic}


def clean_one(data: bytes, *, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> Attachment:
    uploads = [Upload("file", data)]
    (attachment,) = clean(uploads, max_files=5, max_bytes=20_000_000, max_pixels=max_pixels, max_side=max_side)
    return attachment


def refusal(data: bytes, max_pixels: int = MAX_PIXELS) -> AttachmentError:
    try:
        clean_one(data, max_pixels=max_pixels)
    except AttachmentError as error:
        return error
    raise AssertionError("the file was not refused")


def leaked(data: bytes) -> list[bytes]:
    return [secret for secret in SECRETS if secret in data]
