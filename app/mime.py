"""A MIME message written straight to bytes (RFC 2045-2047, 5322): the officer's email without the `email` package.

Python's `email` package spends milliseconds per message parsing and refolding headers it was given whole; the
officer's email has a fixed shape, so `app.mail` writes it here instead and keeps the `email` package's message as
the reference that tests/test_mail.py compares it with, part by part. A part is a list of byte chunks (joined once,
so a photo's base64 is not copied at every level of the tree), ending with CRLF.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Iterable

CRLF = b"\r\n"
# RFC 2047 §2: an encoded word is at most 75 characters, a header line holding one at most 76.
MAX_ENCODED_WORD = 75
MAX_ENCODED_LINE = 76
MAX_LINE = 998  # RFC 5322 §2.1.1
_FOLD_AT = 78  # RFC 5322's "SHOULD" for any header line
_BASE64_LINE = 76  # RFC 2045 §6.8
_CHARSET = "utf-8"
_EW_OVERHEAD = len(f"=?{_CHARSET}?b??=")
_WIDEST_CHARACTER = 8  # 4 UTF-8 bytes in base64
# What this module writes into structured fields and parameters: tipbox's own names, types and ids.
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
_CONTENT_TYPE = re.compile(rf"{_TOKEN.pattern}/{_TOKEN.pattern}")
_MSG_ID_PART = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+@[A-Za-z0-9.\-]+")

Part = list[bytes]


def header(name: str, value: str, *, text: bool = False) -> bytes:
    """One header field, CRLF-terminated.

    Printable ASCII words are written as they are; with `text` (an unstructured field such as Subject) any other
    run of words becomes RFC 2047 encoded words of at most 75 characters, on lines of at most 76, folded only
    between encoded words or at a space that stays a space. A structured field must be printable ASCII.
    """
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header may not contain CR or LF")
    words = value.split(" ")
    plain = [_plain_word(word) for word in words]
    if all(plain) and len(name) + 2 + len(value) <= _FOLD_AT:
        return f"{name}: {value}\r\n".encode("ascii")
    if not text:
        if value.isascii() and value.isprintable() and len(name) + 2 + len(value) <= MAX_LINE:
            return f"{name}: {value}\r\n".encode("ascii")  # a long address or id, unfolded: still within 998
        raise ValueError(f"the {name} header must be printable ASCII (at most {MAX_LINE} characters)")
    if all(plain):  # long, but plain words only: fold at spaces
        first, last = len(words), len(words) - 1
    else:
        first = plain.index(False)
        last = len(plain) - 1 - plain[::-1].index(False)
        # An empty word is a space more than one: it goes inside the encoded words with a neighbour.
        while first > 0 and not words[first]:
            first -= 1
        while last < len(words) - 1 and not words[last]:
            last += 1
    lines = [f"{name}:"]
    for word in words[:first]:
        _place(lines, word)
    if first <= last:
        _place_encoded(lines, " ".join(words[first : last + 1]))
    for word in words[last + 1 :]:
        _place(lines, word)
    return "\r\n".join(lines).encode("ascii") + CRLF


def _plain_word(word: str) -> bool:
    """A word a reader sees unchanged when written as it is (no encoded-word look-alike, no control character)."""
    return (
        0 < len(word) <= 40
        and word.isascii()
        and word.isprintable()
        and "=?" not in word
        and "?=" not in word
    )


def _place(lines: list[str], token: str) -> None:
    """Add `token` after a space, on a new (folded) line if the current one would pass 76 characters."""
    if len(lines[-1]) + 1 + len(token) > MAX_ENCODED_LINE and lines[-1].strip():
        lines.append("")
    lines[-1] += " " + token


def _place_encoded(lines: list[str], text: str) -> None:
    """Add `text` as "B" encoded words holding whole characters, each as long as its line allows.

    Whitespace between two encoded words is not part of the text (RFC 2047 §6.2), so the spaces of `text` are
    inside the words and the folds between them add nothing.
    """
    data = text.encode(_CHARSET)
    start = 0
    while start < len(data):
        room = min(MAX_ENCODED_WORD, MAX_ENCODED_LINE - len(lines[-1]) - 1) - _EW_OVERHEAD
        if room < _WIDEST_CHARACTER:
            lines.append("")
            continue
        end = min(start + room // 4 * 3, len(data))
        while end < len(data) and 0x80 <= data[end] < 0xC0:  # not inside a character's UTF-8 sequence
            end -= 1
        lines[-1] += f" =?{_CHARSET}?b?{binascii.b2a_base64(data[start:end], newline=False).decode('ascii')}?="
        start = end


def text_part(subtype: str, content: str) -> Part:
    """A UTF-8 text part, quoted-printable, its line breaks made CRLF and a last one added (as `email` does)."""
    _check_token(subtype, "subtype")
    lines = content.encode(_CHARSET).splitlines()
    body = binascii.b2a_qp(CRLF.join(lines) + CRLF, istext=True)
    return [
        f'Content-Type: text/{subtype}; charset="{_CHARSET}"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        .encode("ascii"),
        body,
    ]  # fmt: skip


def file_part(content_type: str, data: bytes, *, filename: str, inline: bool, cid: str | None = None) -> Part:
    """A file, base64 in lines of 76, named `filename`; `cid` (without <>) for a photo the HTML part shows."""
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"not a content type tipbox writes: {content_type!r}")
    _check_token(filename, "file name")
    head = (
        f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: {"inline" if inline else "attachment"}; filename="{filename}"\r\n'
    )
    if cid is not None:
        if not _MSG_ID_PART.fullmatch(cid):
            raise ValueError(f"not a Content-ID tipbox writes: {cid!r}")
        head += f"Content-ID: <{cid}>\r\n"
    encoded = binascii.b2a_base64(data, newline=False)
    lines = CRLF.join([encoded[start : start + _BASE64_LINE] for start in range(0, len(encoded), _BASE64_LINE)])
    del encoded  # a file's base64 is held once, as its lines
    return [(head + "\r\n").encode("ascii"), lines, CRLF]


def multipart(subtype: str, parts: Iterable[Part], *, params: str = "") -> Part:
    """A multipart/`subtype` part around `parts`; `params` (e.g. `type="text/html"`) go before the boundary.

    The boundary is "=_" and 96 random bits: quoted-printable (where "=" starts a hex pair or a soft line break)
    and base64 never write "=_", and no header of a part holds it but a nested multipart's own boundary.
    """
    _check_token(subtype, "subtype")
    boundary = f"=_{secrets.token_hex(12)}".encode("ascii")
    extra = f"; {params}" if params else ""
    chunks: Part = [f'Content-Type: multipart/{subtype}{extra};\r\n boundary="'.encode("ascii"), boundary, b'"\r\n\r\n']
    for part in parts:
        chunks += (b"--", boundary, CRLF, *part, CRLF)
    chunks += (b"--", boundary, b"--\r\n")
    return chunks


def message(headers: Iterable[bytes], root: Part) -> bytes:
    """The whole message: `headers` (from `header`), MIME-Version, then the root part."""
    return b"".join((*headers, b"MIME-Version: 1.0\r\n", *root))


def _check_token(value: str, what: str) -> None:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"not a {what} tipbox writes: {value!r}")
