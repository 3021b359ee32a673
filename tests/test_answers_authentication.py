"""Authentication-Results (RFC 8601): only the topmost header counts, only the configured server's, and only a DMARC
or DKIM pass for the From domain; an answer without one is dropped when `TIPBOX_ANSWERS_AUTHSERV_ID` is set."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from app.answers import keys
from app.answers.authentication import Result, authenticated, parse
from app.answers.bound import DerivationBound
from app.answers.ingest import Dropped, Ingestion, Kept
from app.answers.lookup import answers_for
from app.answers.store import SqliteStore
from tests import replies
from tests.replies import CODE, SECRET

ANSWER = "Dạ, chúng tôi đã nhận tin. Anh thấy họ lúc mấy giờ?"
GOOGLE = "mx.google.com"
# As Gmail writes it: folded, comments, Gmail's DKIM result names header.i (not header.d).
GMAIL = (
    "mx.google.com;\r\n"
    "       dkim=pass header.i=@post.test header.s=20230601 header.b=\"Ab1/+Cd\";\r\n"
    "       spf=pass (google.com: domain of officer@post.test designates 203.0.113.5 as permitted sender)"
    " smtp.mailfrom=officer@post.test;\r\n"
    "       dmarc=pass (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from=post.test"
)
# Microsoft 365 writes no authserv-id, and stray segments between results.
MICROSOFT = (
    "spf=pass (sender IP is 203.0.113.5) smtp.mailfrom=post.test; recipient.test; dkim=pass (signature was"
    " verified) header.d=post.test;dmarc=pass action=none header.from=post.test;compauth=pass reason=100"
)
# OpenDKIM and OpenDMARC on a local Postfix: the host name, a version, one result per header.
OPENDMARC = "mail.bienphong.example.vn 1; dmarc=pass (p=reject dis=none) header.from=post.test"


def test_gmails_header_read_with_folding_comments_and_quoted_values() -> None:
    results = parse(GMAIL)
    assert results.authserv_id == GOOGLE
    assert [(result.method, result.result) for result in results.results] == [
        ("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")
    ]
    assert results.results[0].properties == {"header.i": "@post.test", "header.s": "20230601", "header.b": "Ab1/+Cd"}
    assert results.results[2] == Result("dmarc", "pass", {"header.from": "post.test"})


def test_microsoft_365_names_no_server_so_it_vouches_for_nothing() -> None:
    results = parse(MICROSOFT)
    assert results.authserv_id == ""
    assert [result.method for result in results.results] == ["spf", "dkim", "dmarc", "compauth"]
    assert not authenticated([MICROSOFT], "outlook.com", replies.OFFICER)


def test_other_shapes() -> None:
    assert parse(OPENDMARC).authserv_id == "mail.bienphong.example.vn"
    assert parse("mx.example.org; none").results == ()
    quoted = parse('"mx.example.org" (quoted (nested) comment); dkim=pass header.d=x.test')
    assert quoted.authserv_id == "mx.example.org"
    assert parse("MX.Google.COM; DKIM/1 = PASS header.d = post.test").results == (
        Result("dkim", "pass", {"header.d": "post.test"}),
    )
    # Broken input: unreadable results are left out, never crash.
    for value in ("", ";;;", "mx; dkim=", "mx; dkim=pass header.d", "mx; (unclosed dkim=pass", "mx; ) dkim=pass =",
                  'mx; dkim="unterminated'):
        parse(value)
    assert parse("mx; dkim=pass (header.d=post.test)").results == (Result("dkim", "pass", {}),)


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        (GMAIL, True),
        (f"{GOOGLE}; dmarc=pass header.from=post.test", True),
        (f"{GOOGLE}; dkim=pass header.d=post.test", True),
        # A domain above the From domain: DMARC's relaxed alignment judges that (with the public suffix list), not
        # tipbox: "d=vn" or "d=com.vn" must not vouch for a post's officer.
        (f"{GOOGLE}; dkim=pass header.d=test", False),
        (f"{GOOGLE}; dkim=pass header.d=post.test(.attacker.example)", False),  # "Composition Kills": glued comment
        (f"{GOOGLE}; dkim=pass header.i=@post.test(.attacker.example)", False),
        (f"{GOOGLE}; dmarc=pass header.from=post.test(.attacker.example)", False),
        (f'{GOOGLE}; dkim=pass header.d=post.test"x"', False),
        (f"{GOOGLE}; dkim=pass header.d=post.test\\.attacker.example", False),  # not a plain host name
        (f"{GOOGLE}; dkim=pass header.d=mail.post.test", False),  # below it: not the From domain's
        (f"{GOOGLE}; dkim=pass header.d=evilpost.test", False),
        (f"{GOOGLE}; dkim=fail header.d=post.test; dmarc=fail header.from=post.test", False),
        (f"{GOOGLE}; spf=pass smtp.mailfrom=officer@post.test", False),  # SPF says nothing about From
        (f"{GOOGLE}; dmarc=pass header.from=evil.test; dkim=pass header.d=evil.test", False),
        (f"{GOOGLE}; dmarc=pass", False),
        ("evil.test; dmarc=pass header.from=post.test", False),
        (f"{GOOGLE}.evil.test; dmarc=pass header.from=post.test", False),
        (f"{GOOGLE}; dmarc=pass (header.from=post.test) header.from=evil.test", False),
        (OPENDMARC, False),
    ],
)
def test_what_vouches_for_an_officer(header: str, kept: bool) -> None:
    assert authenticated([header], GOOGLE, replies.OFFICER) is kept


def test_only_the_topmost_header_counts() -> None:
    forged_below = f"{GOOGLE}; dmarc=pass header.from=post.test"
    assert not authenticated([f"{GOOGLE}; dmarc=fail header.from=post.test", forged_below], GOOGLE, replies.OFFICER)
    assert not authenticated(["other.mx.test; dmarc=pass header.from=post.test", forged_below], GOOGLE,
                             replies.OFFICER)
    assert authenticated([forged_below, "anything"], GOOGLE, replies.OFFICER)
    assert not authenticated([], GOOGLE, replies.OFFICER)


# -- in ingestion ------------------------------------------------------------------------------------------------


def _with(raw: bytes, *headers: str) -> bytes:
    """`raw` as the reply mailbox's server hands it on: its headers added on top, in this order."""
    return b"".join(f"Authentication-Results: {value}\r\n".encode() for value in headers) + raw


def _take(store: SqliteStore, raw: bytes, authserv_id: str | None) -> Kept | Dropped:
    ingestion = Ingestion(SECRET, {"ncs": [replies.OFFICER]}, store, sender=replies.TIPBOX, authserv_id=authserv_id)
    return asyncio.run(ingestion.take(raw))


def _read(store: SqliteStore) -> list[str]:
    return [answer.text for answer in asyncio.run(answers_for(CODE, DerivationBound(SECRET), store))]


def test_a_forged_officer_from_is_dropped_with_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteStore(tmp_path / "answers.sqlite3", days=90)
    tip = replies.tip(keys.derive(CODE, SECRET).public)
    # Someone who saw the tip writes the officer's address in From, and an Authentication-Results of their own
    # under the one the receiving server adds.
    forged = _with(replies.gmail(tip, ANSWER), f"{GOOGLE}; dmarc=fail (p=NONE) header.from=post.test",
                   f"{GOOGLE}; dmarc=pass header.from=post.test")
    for raw in (replies.gmail(tip, ANSWER), forged):
        with caplog.at_level(logging.INFO, logger="app.answers"):
            caplog.clear()
            outcome = _take(store, raw, GOOGLE)
        assert outcome == Dropped(f"From not authenticated by {GOOGLE}")
        assert [record.getMessage() for record in caplog.records] == [
            f"answers: message dropped: From not authenticated by {GOOGLE}"
        ]
    assert _read(store) == []

    assert isinstance(_take(store, _with(replies.gmail(tip, ANSWER), GMAIL), GOOGLE), Kept)
    assert _read(store) == [ANSWER]


def test_unset_trusts_the_address_as_written(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "answers.sqlite3", days=90)
    raw = replies.thunderbird(replies.tip(keys.derive(CODE, SECRET).public), ANSWER)
    assert isinstance(_take(store, raw, None), Kept)
    assert _read(store) == [ANSWER]
