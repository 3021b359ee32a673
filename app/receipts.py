"""Receipt codes: 16 digits read aloud like a phone number, and the thread id officers' mail hangs on.

14 digits come from `secrets` (~46.5 bits). The 15th carries a small tag (the first tip's category) masked with
an HMAC of the other 14 under the secret key, so tipbox can read it back from a follow-up while a code found in
someone's notes tells nobody else anything. The 16th is a Damm check digit, so a mistyped code is caught as
malformed instead of starting a new thread. tipbox keeps no list of codes: the thread lives in the mailbox.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_RANDOM_DIGITS = 14
_CODE_DIGITS = 16  # random digits, the masked tag, the check digit
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
_SEPARATORS = re.compile("[\\s.\\-\u2013\u2014_/]+")


def _damm(digits: str) -> int:
    interim = 0
    for digit in digits:
        interim = _DAMM[interim][int(digit)]
    return interim


def format_code(digits: str) -> str:
    """`4821093755129634` → `4821 0937 5512 9634`."""
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))


def _mask(body: str, secret: bytes) -> int:
    digest = hmac.new(secret, b"tipbox-tag:" + body.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % 10


def new_code(tag: int | None = None, secret: bytes = b"", *, seed: bytes = b"") -> str:
    """A fresh receipt code in groups of four digits, carrying `tag` (0-9) readable only with `secret`.

    With a `seed` (the form token's nonce and a digest of the text, `Guard.receipt_seed`) the code is made from it
    under `secret`: a form sent again gets its receipt again without the code being stored anywhere. Without a tag
    (a decoy for a bot) the tag digit is random too.
    """
    if seed:
        if not secret:
            raise ValueError("a receipt made from a seed needs the secret")
        digest = hmac.new(secret, b"tipbox-receipt:" + seed, hashlib.sha256).digest()
        body = str(int.from_bytes(digest, "big") % 10**_RANDOM_DIGITS).zfill(_RANDOM_DIGITS)
    else:
        body = str(secrets.randbelow(10**_RANDOM_DIGITS)).zfill(_RANDOM_DIGITS)
    if tag is None:
        masked = secrets.randbelow(10)
    elif 0 <= tag <= 9 and secret:
        masked = (tag + _mask(body, secret)) % 10
    else:
        raise ValueError("a receipt tag is one digit, hidden under a non-empty secret")
    data = body + str(masked)
    return format_code(data + str(_damm(data)))


def code_from(seed: bytes) -> str:
    """A code made from `seed` (a keyed digest): the same seed always gives the same code, as a form sent twice
    gets its receipt twice. It looks like any other; its tag digit means nothing."""
    data = str(int.from_bytes(seed, "big") % 10 ** (_CODE_DIGITS - 1)).zfill(_CODE_DIGITS - 1)
    return format_code(data + str(_damm(data)))


def read_tag(code: str, secret: bytes) -> int:
    """The tag `new_code` hid in the canonical `code`; for a code made under another secret, an arbitrary digit."""
    digits = code.replace(" ", "")
    return (int(digits[_RANDOM_DIGITS]) - _mask(digits[:_RANDOM_DIGITS], secret)) % 10


def parse_code(typed: str) -> str | None:
    """The canonical code for what a resident typed (spaces, dots, dashes allowed), or None if malformed."""
    digits = _SEPARATORS.sub("", typed.strip())
    # Phones offer full-width and other Unicode digits; accept only ASCII 0-9.
    if len(digits) != _CODE_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    if _damm(digits) != 0:
        return None
    return format_code(digits)


def thread_id(code: str, secret: bytes, domain: str) -> str:
    """The Message-ID of the first tip with this code: stable for a code and secret, unguessable without both."""
    digits = code.replace(" ", "")
    digest = hmac.new(secret, b"tipbox-thread:" + digits.encode(), hashlib.sha256).hexdigest()[:32]
    return f"<{digest}@{domain}>"
