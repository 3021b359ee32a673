"""Receipt codes: 16 digits read aloud like a phone number, and the thread id officers' mail hangs on.

15 digits come from `secrets` (~49.8 bits); the 16th is a Damm check digit, so a mistyped code is caught as
malformed instead of starting a new thread. tipbox keeps no list of codes: the thread lives in the mailbox.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_RANDOM_DIGITS = 15
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
_SEPARATORS = re.compile(r"[\s.\-–—_/]+")


def _damm(digits: str) -> int:
    interim = 0
    for digit in digits:
        interim = _DAMM[interim][int(digit)]
    return interim


def format_code(digits: str) -> str:
    """`4821093755129634` → `4821 0937 5512 9634`."""
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))


def new_code() -> str:
    """A fresh receipt code, formatted in groups of four digits."""
    body = str(secrets.randbelow(10**_RANDOM_DIGITS)).zfill(_RANDOM_DIGITS)
    return format_code(body + str(_damm(body)))


def parse_code(typed: str) -> str | None:
    """The canonical code for what a resident typed (spaces, dots, dashes allowed), or None if malformed."""
    digits = _SEPARATORS.sub("", typed.strip())
    # Phones offer full-width and other Unicode digits; accept only ASCII 0-9.
    if len(digits) != _RANDOM_DIGITS + 1 or not digits.isascii() or not digits.isdigit():
        return None
    if _damm(digits) != 0:
        return None
    return format_code(digits)


def thread_id(code: str, secret: bytes, domain: str) -> str:
    """The Message-ID of the first tip with this code: stable for a code and secret, unguessable without both."""
    digits = code.replace(" ", "")
    digest = hmac.new(secret, b"tipbox-thread:" + digits.encode(), hashlib.sha256).hexdigest()[:32]
    return f"<{digest}@{domain}>"
