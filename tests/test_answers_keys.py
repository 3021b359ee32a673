"""Receipt code → key pair: deterministic under one secret, different under another; sealed boxes only it opens."""

from __future__ import annotations

import pytest

from app.answers import keys
from tests.replies import CODE, SECRET

OTHER_CODE = "4821 0937 5512 9647"


def test_the_same_code_and_secret_give_the_same_key_pair() -> None:
    assert keys.derive(CODE, SECRET).public == keys.derive(CODE.replace(" ", ""), SECRET).public


def test_another_code_or_another_secret_gives_another_key() -> None:
    first = keys.derive(CODE, SECRET).public
    assert keys.derive(OTHER_CODE, SECRET).public != first
    assert keys.derive(CODE, SECRET + b"x").public != first


def test_the_kdf_parameters_change_the_key() -> None:
    # The deployed parameters are part of the key: a lighter KDF does not open what the real one sealed.
    assert keys.derive(CODE, SECRET, ops=1, mem=8 * 1024 * 1024).public != keys.derive(CODE, SECRET).public


def test_a_sealed_answer_opens_only_with_its_codes_key() -> None:
    pair, other = keys.derive(CODE, SECRET), keys.derive(OTHER_CODE, SECRET)
    text = "Cảm ơn anh. Nhà nào?".encode()
    sealed = keys.seal(pair.public, text)
    assert text not in sealed and len(sealed) == len(text) + 48  # ephemeral public key and MAC
    assert keys.unseal(pair, sealed) == text
    assert keys.seal(pair.public, text) != sealed  # a fresh ephemeral key each time
    with pytest.raises(keys.SealError):
        keys.unseal(other, sealed)
    with pytest.raises(keys.SealError):
        keys.unseal(pair, sealed[:-1] + bytes([sealed[-1] ^ 1]))


def test_lookup_ids_are_short_hashes_that_differ_per_code() -> None:
    first, second = keys.derive(CODE, SECRET).public, keys.derive(OTHER_CODE, SECRET).public
    assert len(keys.lookup_id(first)) == 16
    assert keys.lookup_id(first) == keys.lookup_id(first) != keys.lookup_id(second)
    assert keys.lookup_id(first) not in first  # not a slice of the public key, which the Message-ID carries


def test_keyed_hashes_depend_on_the_secret_and_the_label() -> None:
    value = b"<CAabc@mail.gmail.com>"
    assert keys.keyed_hash(SECRET, "a", value) != keys.keyed_hash(SECRET, "b", value)
    assert keys.keyed_hash(SECRET, "a", value) != keys.keyed_hash(SECRET + b"x", "a", value)


def test_search_cost_counts_every_code_once() -> None:
    # 10^14 codes at 50 ms each: about 158,000 CPU-years (docs/answers.md).
    assert keys.search_cost_cpu_years(0.05) == pytest.approx(1e14 * 0.05 / (365.25 * 86400))
    assert keys.search_cost_cpu_years(0.05) > 10_000
