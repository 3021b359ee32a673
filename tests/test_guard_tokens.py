"""app/guard/tokens.py: a form token binds its post and serving time, and refuses anything altered."""

from __future__ import annotations

import re

from app.guard.tokens import Tokens
from tests.test_guard import START


def test_tokens_bind_the_post_and_refuse_anything_altered() -> None:
    tokens = Tokens(b"k" * 32)
    token = tokens.issue("ncs", START)
    assert re.fullmatch(r"[A-Za-z0-9_-]{48}", token)
    read = tokens.read(token, "ncs")
    assert read is not None and read.post == "ncs" and read.issued == START and len(read.nonce) == 26
    assert tokens.issue("ncs", START) != token  # a nonce each time
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    for bad in ("", "x", flipped, token[:-1], token + "A", "é" * 48, "=" * 48, token.upper()):
        assert tokens.read(bad, "ncs") is None, bad
    assert tokens.read(token, "other") is None
    assert Tokens(b"z" * 32).read(token, "ncs") is None
