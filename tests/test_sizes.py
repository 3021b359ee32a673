"""The figures every limit derives from: the largest email is an upper bound, and a close one, of what the real
email writer produces for the worst tip the settings allow."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime

import pytest

from app import receipts, sizes
from app.forms import DISCARD_FACTOR
from app.mail import Attachment, Composer, Tip
from app.settings import Settings, load_settings

WIDE = "𠜎"  # four bytes in UTF-8, twelve in quoted-printable


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "smtp_host": "127.0.0.1", "mail_from": "tipbox@bienphong.example.vn", "mailbox": "post@example.vn",
        "secret_key": secrets.token_urlsafe(32),
    }
    return load_settings(**{**values, **overrides})


def _worst_email(settings: Settings, *, follow_up: bool) -> bytes:
    """The largest email a tip can make: every field full of the widest characters, every file, every byte."""
    post = next(iter(settings.load_posts().values()))
    code = receipts.new_code(1, settings.secret)
    tip = Tip(
        post=post, category="drugs", what=(WIDE * 99 + "\n") * (settings.max_text_chars // 100),
        where=WIDE * 300, when=WIDE * 200, contact=WIDE * 200, language="hmn", received_at=datetime.now(UTC),
        receipt=code, follow_up_to=code if follow_up else None,
    )
    files, total = settings.max_files, settings.max_upload_bytes
    attachments = []
    for index in range(files):
        size = total // files + (total % files if index == 0 else 0)
        kind, name, content_type = (("photo", "jpg", "image/jpeg") if index % 2 == 0 else ("voice", "m4a", "audio/mp4"))
        attachments.append(Attachment(kind, index + 1, f"{kind}-{index + 1}.{name}", content_type, os.urandom(size)))
    # With answers on, as the largest: a Reply-To header, a public key in the Message-ID, a longer note to officers.
    composer = Composer(settings.sender, settings.secret, reply_to="answers@bienphong.example.vn")
    return composer.compose(tip, attachments, answer_key=bytes(range(32))).data


@pytest.mark.parametrize(
    ("overrides", "follow_up"),
    [
        ({}, False),
        ({}, True),
        ({"max_upload_bytes": 1_000_000, "max_files": 1}, False),
        ({"max_upload_bytes": 3_000_001, "max_files": 20, "max_text_chars": 20_000}, True),
        ({"max_upload_bytes": 0, "max_files": 0}, False),
    ],
)
def test_the_largest_email_bounds_the_worst_tip_closely(overrides: dict[str, int], follow_up: bool) -> None:
    settings = _settings(**overrides)
    written = len(_worst_email(settings, follow_up=follow_up))
    bound = sizes.largest_email(settings)
    assert written <= bound < written + 80_000  # over by the headroom for headers, never under


def test_base64_bytes_are_what_the_email_holds() -> None:
    settings = _settings(max_upload_bytes=1_000_000, max_files=1)
    for size in (0, 1, 56, 57, 58, 999_999):
        data = os.urandom(size)
        part = Attachment("voice", 1, "voice-1.m4a", "audio/mp4", data)
        post = next(iter(settings.load_posts().values()))
        tip = Tip(post, "drugs", "x", "", "", "", "vi", datetime.now(UTC), receipts.new_code(1, settings.secret))
        raw = Composer(settings.sender, settings.secret).compose(tip, [part]).data
        start = raw.index(b"\r\n\r\n", raw.index(b'filename="voice-1.m4a"')) + 4
        end = raw.index(b"--=_", start)
        assert end - start == sizes.base64_bytes(size) + 2  # the part's lines, and the CRLF before its boundary


def test_the_proxy_lets_through_every_body_tipbox_reads_and_no_more() -> None:
    settings = _settings()
    assert sizes.request_limit(settings) == 20_065_536  # the default uploads, plus 64 KiB for the text
    assert sizes.proxy_body_limit(settings) == DISCARD_FACTOR * 20_065_536 == sizes.read_limit(settings)
    assert sizes.proxy_body_limit(_settings(max_upload_bytes=18_000_000)) < sizes.proxy_body_limit(settings)


def test_the_mail_servers_limit_takes_the_largest_email_with_room_for_its_own_headers() -> None:
    default, gmail = _settings(), _settings(max_upload_bytes=18_000_000)
    assert sizes.mta_size_limit(default) == 28_000_000 >= sizes.largest_email(default) + 64 * 1024
    # The kit's advice for a provider that refuses mail over 25 MB (deploy/postfix/main.cf) holds.
    assert sizes.mta_size_limit(gmail) == 25_000_000


def test_a_server_size_is_compared_naming_both_numbers() -> None:
    settings = _settings()
    largest = sizes.largest_email(settings)
    assert sizes.too_large_for(settings, None) is None  # no SIZE extension: nothing to compare
    assert sizes.too_large_for(settings, 0) is None  # SIZE 0: no fixed limit (RFC 1870)
    assert sizes.too_large_for(settings, largest) is None
    problem = sizes.too_large_for(settings, 10_240_000)
    assert problem is not None and "10,240,000" in problem and f"{largest:,}" in problem
    assert "message_size_limit = 28000000" in problem


def test_memory_follows_the_upload_budget() -> None:
    assert sizes.memory_max(_settings()) == "600M"
    assert sizes.memory_max(_settings(upload_memory_bytes=1_000_000_000)) == "1400M"
