"""app/attachments/__init__.py: every upload cleaned or refused by position, limits, names, nothing logged or
written to disk, each decode's memory reserved in the budget before it starts."""

from __future__ import annotations

import contextlib
import io
import os
import random
import struct
import sys
from collections.abc import Callable, Iterator

import pytest
from mutagen import File as MutagenFile

from app import attachments
from app.attachments import AttachmentError, Upload, clean
from tests import media
from tests.cleaning import PHOTOS, clean_one, leaked, refusal

RECORDINGS: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "m4a": (media.m4a, "m4a", "audio/mp4"),
    "m4a-faststart": (media.m4a_faststart, "m4a", "audio/mp4"),
    "mp4-with-video": (media.mp4_with_video, "m4a", "audio/mp4"),
    "mp4-fragmented": (media.mp4_fragmented, "m4a", "audio/mp4"),
    "3gp": (media.three_gp, "3gp", "audio/3gpp"),
    "amr": (media.amr, "amr", "audio/amr"),
    "mp3": (media.mp3, "mp3", "audio/mpeg"),
    "ogg-opus": (media.ogg_opus, "ogg", "audio/ogg"),
    "ogg-vorbis": (media.ogg_vorbis, "ogg", "audio/ogg"),
    "webm": (media.webm, "webm", "audio/webm"),
    "webm-vorbis": (media.webm_vorbis, "webm", "audio/webm"),
}


def with_chunk_offset(data: bytes, offset: int) -> bytes:
    """The file with its first chunk offset pointing at `offset` (e.g. into the moov box and its tags)."""
    stco = data.find(b"stco")
    return data[: stco + 12] + struct.pack(">I", offset) + data[stco + 16 :]


@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_metadata_is_gone_and_the_sound_stays(name: str) -> None:
    make, extension, content_type = RECORDINGS[name]
    original = make()
    assert len(leaked(original)) >= 3  # the fixture really carries tags

    attachment = clean_one(original)

    assert (attachment.kind, attachment.filename, attachment.content_type) == (
        "voice",
        f"voice-1.{extension}",
        content_type,
    )
    assert leaked(attachment.data) == []
    assert media.decoded_seconds(attachment.data) == pytest.approx(1.0, abs=0.1)
    if extension not in ("amr", "webm"):  # mutagen reads neither raw AMR nor Matroska
        parsed = MutagenFile(io.BytesIO(attachment.data))
        assert parsed is not None and parsed.info.length > 0
        assert not parsed.tags


@pytest.mark.parametrize(
    "make",
    [
        lambda: media.m4a()[: len(media.m4a()) // 2],
        lambda: with_chunk_offset(media.m4a(), media.m4a().find(b"moov")),
        lambda: media.m4a().replace(b"mp4a", b"enca"),
        lambda: media.ogg_opus()[:200],
        lambda: media.webm()[:300],
        lambda: b"#!AMR\n",
    ],
    ids=["truncated-m4a", "offset-into-moov", "encrypted", "opus-headers-only", "webm-header-only",
         "amr-no-frames"],
)  # fmt: skip
def test_a_recording_that_cannot_be_cleaned_is_refused(make: Callable[[], bytes]) -> None:
    error = refusal(make())
    assert error.reason in (attachments.VOICE_UNREADABLE, attachments.NOT_ACCEPTED)


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
        6,
        attachments.TOO_MANY_FILES,
        {"max": 5},
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
