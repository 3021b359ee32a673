"""Receipt codes: their format, the check digit, where their randomness comes from, the hidden category tag, and
the thread id (the first tip's Message-ID) that must survive restarts and other processes."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from app import receipts
from app.categories import CATEGORIES, RECEIPT_TAGS, category_for_tag
from app.receipts import format_code, new_code, parse_code, read_tag, thread_id

SECRET = b"receipt-test-secret-0123456789abcdef"
OTHER_SECRET = b"another-secret-key-after-rotation-000"
ROOT = Path(__file__).resolve().parent.parent
CODE_FORMAT = re.compile(r"^\d{4} \d{4} \d{4} \d{4}$")


def _chi_square(counts: Counter[str], total: int) -> float:
    expected = total / 10
    return sum((counts.get(str(d), 0) - expected) ** 2 / expected for d in range(10))


# With 9 degrees of freedom, chi-square exceeds 45 with probability ~1e-6: a failure means a real bias.
CHI_SQUARE_LIMIT = 45.0


def test_format_is_four_groups_of_four_digits() -> None:
    for _ in range(200):
        code = new_code(RECEIPT_TAGS["drugs"], SECRET)
        assert CODE_FORMAT.match(code), code
        assert parse_code(code) == code
    assert format_code("4821093755129634") == "4821 0937 5512 9634"


def test_a_decoy_code_without_tag_looks_the_same() -> None:
    code = new_code()
    assert CODE_FORMAT.match(code) and parse_code(code) == code


@pytest.mark.parametrize(
    "typed",
    [
        "{code}",
        "{digits}",
        "  {code}  ",
        "{dashed}",
        "{dotted}",
        "{slashed}",
        "{code_newline}",
    ],
)
def test_parse_accepts_what_people_write_down(typed: str) -> None:
    code = new_code(0, SECRET)
    digits = code.replace(" ", "")
    text = typed.format(
        code=code,
        digits=digits,
        dashed=code.replace(" ", "-"),
        dotted=code.replace(" ", "."),
        slashed=code.replace(" ", "/"),
        code_newline=code.replace(" ", "\n"),
    )
    assert parse_code(text) == code


@pytest.mark.parametrize(
    "typed",
    ["", "   ", "4821 0937 5512", "4821 0937 5512 96344", "4821 0937 5512 963x", "abcd efgh ijkl mnop"],
)
def test_parse_rejects_wrong_shapes(typed: str) -> None:
    assert parse_code(typed) is None


def test_parse_rejects_non_ascii_digits() -> None:
    code = new_code(3, SECRET)
    fullwidth = code.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    arabic_indic = code.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})
    assert parse_code(fullwidth) is None
    assert parse_code(arabic_indic) is None


def test_check_digit_catches_every_single_digit_error() -> None:
    for _ in range(40):
        digits = new_code(secrets.randbelow(7), SECRET).replace(" ", "")
        for position in range(16):
            for wrong in "0123456789":
                if wrong == digits[position]:
                    continue
                typo = digits[:position] + wrong + digits[position + 1 :]
                assert parse_code(typo) is None, (digits, typo)


def test_check_digit_catches_every_adjacent_transposition() -> None:
    swapped_some = 0
    for _ in range(40):
        digits = new_code(secrets.randbelow(7), SECRET).replace(" ", "")
        for position in range(15):
            a, b = digits[position], digits[position + 1]
            if a == b:
                continue  # swapping two equal digits changes nothing
            swapped = digits[:position] + b + a + digits[position + 2 :]
            assert parse_code(swapped) is None, (digits, swapped)
            swapped_some += 1
    assert swapped_some > 400


def test_randomness_comes_from_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """With `secrets.randbelow` fixed, codes are fixed: nothing else (no `random`, no clock) goes into them."""
    calls: list[int] = []

    def fixed(upper: int) -> int:
        calls.append(upper)
        return 12345678901234 % upper

    monkeypatch.setattr(secrets, "randbelow", fixed)
    first = new_code(RECEIPT_TAGS["weapons"], SECRET)
    second = new_code(RECEIPT_TAGS["weapons"], SECRET)
    assert first == second
    assert first.replace(" ", "").startswith("12345678901234")
    assert calls == [10**14, 10**14]
    # Leading zeros are kept (the first group may start with 0).
    monkeypatch.setattr(secrets, "randbelow", lambda upper: 7)
    assert new_code(0, SECRET).startswith("0000 0000 0000 07")
    # A decoy takes its tag digit from `secrets` too.
    calls.clear()
    monkeypatch.setattr(secrets, "randbelow", fixed)
    new_code()
    assert calls == [10**14, 10]


def test_codes_look_uniformly_random() -> None:
    """A sanity check, not a proof: no repeats, and each random digit position is flat."""
    count = 4000
    codes = [new_code(RECEIPT_TAGS["drugs"], SECRET).replace(" ", "") for _ in range(count)]
    assert len(set(codes)) == count
    for position in range(14):
        column = Counter(code[position] for code in codes)
        assert _chi_square(column, count) < CHI_SQUARE_LIMIT, (position, column)


def test_the_tag_digit_gives_the_category_away_to_nobody_without_the_key() -> None:
    """For one category, the 15th digit is flat: a code found in someone's notes does not say what was reported."""
    count = 4000
    for category in ("drugs", "trafficking"):
        column = Counter(new_code(RECEIPT_TAGS[category], SECRET).replace(" ", "")[14] for _ in range(count))
        assert _chi_square(column, count) < CHI_SQUARE_LIMIT, (category, column)


def test_the_tag_reads_back_with_the_key() -> None:
    for category, tag in RECEIPT_TAGS.items():
        for _ in range(20):
            code = new_code(tag, SECRET)
            assert read_tag(code, SECRET) == tag
            assert category_for_tag(read_tag(code, SECRET)) == category
    # Under another key the digit means nothing: across many codes it reads as every value.
    read_elsewhere = {read_tag(new_code(1, SECRET), OTHER_SECRET) for _ in range(300)}
    assert read_elsewhere == set(range(10))


def test_category_tags_are_distinct_digits_for_every_category() -> None:
    assert set(RECEIPT_TAGS) == set(CATEGORIES)
    assert len(set(RECEIPT_TAGS.values())) == len(RECEIPT_TAGS)
    assert all(0 <= tag <= 9 for tag in RECEIPT_TAGS.values())
    assert category_for_tag(9) is None


@pytest.mark.parametrize(("tag", "secret"), [(10, SECRET), (-1, SECRET), (1, b"")])
def test_a_tag_needs_one_digit_and_a_key(tag: int, secret: bytes) -> None:
    with pytest.raises(ValueError, match="one digit"):
        new_code(tag, secret)


def test_thread_id_is_a_message_id_keyed_by_the_secret() -> None:
    code = new_code(2, SECRET)
    ours = thread_id(code, SECRET, "example.vn")
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.vn>", ours)
    assert thread_id(code, SECRET, "example.vn") == ours
    assert thread_id(code, OTHER_SECRET, "example.vn") != ours
    assert thread_id(new_code(2, SECRET), SECRET, "example.vn") != ours
    # However the sender wrote the code down, it leads to the same thread.
    typed = parse_code(code.replace(" ", "-"))
    assert typed is not None and thread_id(typed, SECRET, "example.vn") == ours
    assert code.replace(" ", "") not in ours


_CHILD = """
import sys
from app import receipts
from app.mail import Composer
from app.settings import load_settings

settings = load_settings()
composer = Composer(settings.sender, settings.secret)
code = sys.argv[1]
print(receipts.thread_id(code, composer.secret, composer.domain), receipts.read_tag(code, composer.secret))
"""


def _in_a_new_process(code: str, secret: str) -> tuple[str, int]:
    """The thread id and tag a freshly started tipbox process derives for `code` from its environment."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TIPBOX_")}
    env.update(
        TIPBOX_SMTP_HOST="127.0.0.1",
        TIPBOX_MAIL_FROM="tipbox@example.vn",
        TIPBOX_MAILBOX="post@example.vn",
        TIPBOX_SECRET_KEY=secret,
        PYTHONHASHSEED="random",
    )
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    message_id, tag = done.stdout.split()
    return message_id, int(tag)


def test_thread_id_and_tag_are_stable_across_processes_and_restarts() -> None:
    key = SECRET.decode()
    code = new_code(RECEIPT_TAGS["smuggling"], SECRET)
    here = thread_id(code, SECRET, "example.vn")
    first_run = _in_a_new_process(code, key)
    restarted = _in_a_new_process(code, key)
    assert first_run == restarted == (here, RECEIPT_TAGS["smuggling"])
    rotated_id, _ = _in_a_new_process(code, OTHER_SECRET.decode())
    assert rotated_id != here


def test_receipts_uses_no_other_randomness() -> None:
    assert "random" not in vars(receipts)


def test_a_code_made_from_a_seed_is_the_same_for_the_same_seed_and_secret_only() -> None:
    """A form's receipt is made from its token's nonce: sent again, the form gets it again, and nothing stores it."""
    first = receipts.new_code(7, b"secret", seed=b"nonce-1")
    assert receipts.new_code(7, b"secret", seed=b"nonce-1") == first
    assert receipts.parse_code(first) == first and receipts.read_tag(first, b"secret") == 7
    others = {receipts.new_code(7, b"secret", seed=b"nonce-2"), receipts.new_code(7, b"other", seed=b"nonce-1")}
    assert first not in others and len(others) == 2
    with pytest.raises(ValueError, match="needs the secret"):
        receipts.new_code(7, b"", seed=b"nonce-1")
