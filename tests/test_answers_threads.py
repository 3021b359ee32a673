"""The tip's Message-ID when answers are on: slug and public key under a MAC that nobody else can make."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

from app.answers import threads
from tests.replies import SECRET

PUBLIC = bytes(range(32))


def test_a_message_id_reads_back_as_its_post_and_public_key() -> None:
    value = threads.message_id("ncs", PUBLIC, SECRET, "bienphong.test")
    assert value.startswith("<ncs.") and value.endswith("@bienphong.test>")
    assert threads.read(value, SECRET) == threads.Thread("ncs", PUBLIC)
    # The first tip's id is the same every time (follow-ups reply to it); a follow-up's own id is fresh.
    assert threads.message_id("ncs", PUBLIC, SECRET, "bienphong.test") == value
    follow_up = threads.message_id("ncs", PUBLIC, SECRET, "bienphong.test", follow_up=True)
    assert follow_up != value and threads.read(follow_up, SECRET) == threads.Thread("ncs", PUBLIC)


def test_it_is_a_valid_message_id_that_survives_a_mail_system() -> None:
    value = threads.message_id("a-pa-chai", PUBLIC, SECRET, "bienphong.test", follow_up=True)
    message = EmailMessage(policy=email.policy.SMTP)
    message["Message-ID"] = value
    message.set_content("x")
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert str(parsed["Message-ID"]) == value
    assert parsed["Message-ID"].defects == ()
    assert len(value) < 200 and value.isascii()


def test_changed_or_foreign_ids_are_refused() -> None:
    value = threads.message_id("ncs", PUBLIC, SECRET, "bienphong.test")
    slug, public, mac = value[1:].split("@")[0].split(".")
    assert threads.read(value, SECRET + b"other") is None
    assert threads.read(value.replace("<ncs.", "<apc."), SECRET) is None  # another post's officers
    other_public = threads.message_id("ncs", bytes(32), SECRET, "x").split(".")[1]
    assert threads.read(f"<{slug}.{other_public}.{mac}@bienphong.test>", SECRET) is None
    flipped = mac[:-1] + ("a" if mac[-1] != "a" else "b")
    assert threads.read(f"<{slug}.{public}.{flipped}@bienphong.test>", SECRET) is None
    for stray in ("", "<CAabc@mail.gmail.com>", "<0123456789abcdef0123456789abcdef@bienphong.test>", "<@>", "<" * 300):
        assert threads.read(stray, SECRET) is None


def test_find_looks_through_in_reply_to_and_references() -> None:
    first = threads.message_id("ncs", PUBLIC, SECRET, "bienphong.test")
    forged = threads.message_id("ncs", bytes(32), b"someone else's key", "bienphong.test")
    references = f"<CAold@mail.gmail.com> {first} <CAnewer@mail.gmail.com>"
    assert threads.find(["<CAnewer@mail.gmail.com>", references], SECRET) == threads.Thread("ncs", PUBLIC)
    assert threads.find([forged, f"<x@y> {forged}"], SECRET) is None
    assert threads.find(["", ""], SECRET) is None
