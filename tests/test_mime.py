"""app/mime.py: headers, texts and files written straight to bytes, read back by Python's `email` parser unchanged."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import re
from email.message import EmailMessage

import pytest

from app import mime

ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
SUBJECTS = [
    "[Tin báo] [Ma túy] Đồn Biên phòng Na Cô Sa · 4821 0937 5512 9634",
    "Re: [Tin báo] [Vũ khí, vật liệu nổ] Đồn Biên phòng Na Cô Sa · 4821 0937 5512 9634",
    "[Tin báo] [Lwm yam] Tub Rog Ciam Teb Nas Kauj Xab · Kuv pom neeg muag yeeb tshuaj",
    "[Tin báo] " + "Đồn Biên phòng Cửa khẩu Quốc tế Na Mèo, Bộ đội Biên phòng tỉnh Thanh Hóa " * 6 + "· 1",
    "[Tin báo] " + "x" * 1200,  # one word longer than any line
    "Na Cô",  # the space Python 3.11's folder drops at a fold
    "a  double  space, a trailing one ",
    " a leading space",
    "[Tin báo] =?utf-8?q?looks=20encoded?= but is the name",
    "[Tin báo] tab\tand control \x1b\x7f and \x85 \u2028 \u2029 separators",
    "[Tin báo] 🙂🙂🙂 four-byte characters " + "🙂" * 40,
    "plain ASCII only, short",
    "plain ASCII only, long enough to need folding at a space somewhere past column seventy-eight, twice over " * 2,
]


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def assert_wire_form(raw: bytes) -> None:
    """7-bit, CRLF only, lines within 998 (78 in headers), encoded words within 75 on lines within 76."""
    assert raw.isascii()
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        assert len(line) <= 78, line
        words = ENCODED_WORD.findall(line)
        assert all(len(word) <= 75 for word in words), line
        assert not words or len(line) <= 76, line
        for word in words:  # whole characters in each word (RFC 2047 §5), though Python's parser would cope
            _, charset, encoding, payload, _ = word.split(b"?")
            decoded = base64.b64decode(payload) if encoding in b"bB" else binascii.a2b_qp(payload, header=True)
            decoded.decode(charset.decode())
    assert all(len(line) <= 998 for line in body.split(b"\r\n"))


@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_subject_reads_back_exactly_and_folds_within_the_limits(subject: str) -> None:
    raw = mime.header("Subject", subject, text=True) + b"\r\n"
    assert_wire_form(raw)
    assert str(_parse(raw)["Subject"]) == subject


def test_ascii_words_stay_readable_around_the_encoded_ones() -> None:
    line = mime.header("Subject", "[Tin báo] [Ma túy] Na Cô Sa · 4821 0937 5512 9634", text=True)
    assert line.startswith(b"Subject: [Tin =?utf-8?b?")
    assert line.replace(b"\r\n ", b" ").endswith(b"?= 4821 0937 5512 9634\r\n")


@pytest.mark.parametrize("value", ["x\r\nBcc: attacker@evil.example", "x\nBcc: a@b", "x\rBcc: a@b", "\r\n"])
def test_no_header_value_can_start_another_header(value: str) -> None:
    for text in (True, False):
        with pytest.raises(ValueError, match="CR or LF"):
            mime.header("Subject", value, text=text)


def test_a_structured_header_is_printable_ascii_or_refused() -> None:
    assert mime.header("To", "nacosa@example.vn") == b"To: nacosa@example.vn\r\n"
    long_address = "a" * 64 + "@" + "b" * 180 + ".example.vn"
    assert mime.header("To", long_address) == f"To: {long_address}\r\n".encode()  # unfolded, as the reference
    for value in ("hòm@example.vn", "a\tb@example.vn", "x" * 1000):
        with pytest.raises(ValueError, match="printable ASCII"):
            mime.header("To", value)


@pytest.mark.parametrize(
    "text",
    [
        "Dòng một\nDòng hai <b>đậm</b>\n",
        "no final line break",
        "CR\rLF\nCRLF\r\n\r\nblank lines above\n\n",
        "trailing spaces   \nand tabs\t\t\n",
        "x" * 5000 + "\n" + "ồ" * 300 + "\n" + "a " * 400,
        "=3D literal equals, =?utf-8?b?SGk=?= and --=_alternative_0000 at a line start\n--=_x\n",
        ".\n..\nFrom the start of a line\n",
        "controls \x00\x0b\x0c\x1b\x7f \x85 \u2028 \u2029 kept as they are\n",
        "Tus neeg muag yeeb tshuaj nyob hauv khw 🙂\n",
    ],
)
def test_a_text_part_reads_back_with_crlf_line_breaks(text: str) -> None:
    part = b"".join(mime.text_part("plain", text))
    assert_wire_form(b"X: y\r\n" + part)
    parsed = _parse(part)
    assert parsed.get_content_type() == "text/plain" and parsed.get_param("charset") == "utf-8"
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
    lines = text.encode().splitlines()  # what the `email` package does: \r, \n and \r\n are line breaks
    expected = (b"\r\n".join(lines) + b"\r\n").decode()
    assert parsed.get_content() == expected


@pytest.mark.parametrize("size", [0, 1, 2, 3, 56, 57, 58, 171, 1000, 100_003])
def test_a_file_part_reads_back_byte_for_byte(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    part = b"".join(mime.file_part("image/jpeg", data, filename="photo-1.jpg", inline=True, cid="p.1@example.vn"))
    assert_wire_form(b"X: y\r\n" + part)
    assert all(len(line) <= 76 for line in part.split(b"\r\n"))
    parsed = _parse(part)
    assert parsed.get_content() == data
    assert (parsed.get_content_disposition(), parsed.get_filename()) == ("inline", "photo-1.jpg")
    assert parsed["Content-ID"] == "<p.1@example.vn>"


@pytest.mark.parametrize(
    ("content_type", "filename", "cid"),
    [("image/jpeg", 'a".jpg', None), ("image/jpeg", "ảnh.jpg", None), ("image/jpeg\r\nBcc: x", "a.jpg", None),
     ("image", "a.jpg", None), ("image/jpeg", "a.jpg", "x>\r\nBcc: a@b")],
)  # fmt: skip
def test_only_tipboxs_own_names_go_into_a_file_part(content_type: str, filename: str, cid: str | None) -> None:
    with pytest.raises(ValueError, match="tipbox writes"):
        mime.file_part(content_type, b"x", filename=filename, inline=cid is not None, cid=cid)


def test_a_multipart_boundary_occurs_nowhere_inside_it() -> None:
    hostile = "--=_0123456789abcdef01234567\n--=_\n=_\n" * 3
    files = [mime.file_part("audio/ogg", b"=_" * 500, filename="voice-1.ogg", inline=False)]
    root = mime.multipart(
        "mixed", [mime.multipart("alternative", [mime.text_part("plain", hostile), mime.text_part("html", hostile)]),
                  *files],
    )  # fmt: skip
    raw = mime.message([mime.header("Subject", "x")], root)
    assert_wire_form(raw)
    boundaries = re.findall(rb'boundary="([^"]+)"', raw)
    assert len(boundaries) == 2
    for boundary in boundaries:
        # Once in its Content-Type, and otherwise only as a whole delimiter line.
        delimiters = re.findall(rb"^--" + re.escape(boundary) + rb"(?:--)?\r$", raw, re.MULTILINE)
        assert raw.count(boundary) == 1 + len(delimiters)
    parsed = _parse(raw)
    assert [part.get_content_type() for part in parsed.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "audio/ogg"
    ]  # fmt: skip
    plain = parsed.get_body(("plain",))
    assert plain is not None and plain.get_content() == hostile.replace("\n", "\r\n")
