"""`tipbox filters --format sieve` in a real Dovecot: compiled by Pigeonhole's `sievec`, run on real tipbox emails
delivered over LMTP, each found in its folder over IMAP."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from app.categories import CATEGORIES
from tests.lmtp import SieveMailbox, imap_utf7, sieve_mailbox
from tests.tipmails import Sent, expected_folder, folder, sent, tipbox_filters

pytestmark = pytest.mark.e2e
__all__ = ["sent", "sieve_mailbox"]  # fixtures, collected from here
STRAY = b"From: someone@example.vn\r\nTo: all@post.test\r\nSubject: [Tin bao] [Ma tuy]\r\n\r\nNot from tipbox.\r\n"


def _receipts(messages: list[bytes]) -> list[tuple[str, str]]:
    parsed = [email.message_from_bytes(raw, policy=email.policy.default) for raw in messages]
    return sorted((str(m["X-Tipbox-Receipt"]), str(m["X-Tipbox-Kind"])) for m in parsed)


def _expected(emails: list[Sent]) -> dict[str, list[tuple[str, str]]]:
    expected: dict[str, list[tuple[str, str]]] = {}
    for item in emails:
        kind = "follow-up" if item.follow_up else "tip"
        expected.setdefault(expected_folder(item), []).append((str(item.message["X-Tipbox-Receipt"]), kind))
    return {name: sorted(found) for name, found in expected.items()}


def test_the_script_compiles_and_files_each_tip_in_its_folder(
    sieve_mailbox: SieveMailbox, sent: list[Sent], tmp_path: Path
) -> None:
    mailbox = sieve_mailbox.start(["all", "ncs"])
    for user, args in (("all", []), ("ncs", ["--post", "ncs"])):
        script = tipbox_filters(tmp_path, "--format", "sieve", *args)
        compiled = mailbox.install_script(user, script)
        assert compiled.returncode == 0, compiled.stdout + compiled.stderr
        assert "error" not in (compiled.stdout + compiled.stderr).lower(), compiled.stderr
    # Three categories and a follow-up (and, for the post-limited script, another post's tip), plus a stray.
    chosen = [item for item in sent if item.follow_up or item.post == "apc" or item.category in ("theft", "drugs")]
    chosen.append(next(item for item in sent if item.category == "border" and item.post == "ncs"))
    assert {item.category for item in chosen if not item.follow_up} >= {"theft", "drugs", "border"}
    for user in ("all", "ncs"):
        for item in chosen:
            mailbox.deliver(user, item.raw)
        mailbox.deliver(user, STRAY)

    everything = mailbox.folders("all")
    assert _receipts(everything.pop("INBOX")) == [("None", "None")], mailbox.log()  # only the stray stays
    assert {name: _receipts(found) for name, found in everything.items()} == _expected(chosen)

    one_post = mailbox.folders("ncs")
    inbox = _receipts(one_post.pop("INBOX"))
    others = [item for item in chosen if item.post != "ncs"]
    assert inbox == sorted([("None", "None"), *[(str(i.message["X-Tipbox-Receipt"]), "tip") for i in others]])
    assert {name: _receipts(found) for name, found in one_post.items()} == _expected(
        [item for item in chosen if item.post == "ncs"]
    )
    # Folder names are Vietnamese, stored as IMAP's modified UTF-7 of the UTF-8 names in the script.
    assert folder(CATEGORIES["drugs"]) in everything
    assert imap_utf7(folder(CATEGORIES["drugs"])).isascii()


def test_sievec_rejects_a_broken_script(sieve_mailbox: SieveMailbox, tmp_path: Path) -> None:
    # The compile check can fail: a script without `require ["mailbox"]` may not use `fileinto :create`.
    mailbox = sieve_mailbox.start(["all"])
    script = tipbox_filters(tmp_path, "--format", "sieve")
    script = script.replace('require ["fileinto", "mailbox"];', 'require "fileinto";')
    compiled = mailbox.install_script("all", script)
    assert compiled.returncode != 0
    assert "create" in compiled.stdout + compiled.stderr
