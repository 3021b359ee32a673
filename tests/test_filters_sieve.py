"""`tipbox filters --format sieve` in a real Dovecot: compiled by Pigeonhole's `sievec`, run on real tipbox emails
delivered over LMTP, each found over IMAP where an officer's client shows it (INBOX and the subscribed folders)."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from app.categories import CATEGORIES
from tests.lmtp import SieveMailbox, imap_utf7, sieve_mailbox
from tests.tipmails import STRAY, Sent, expected_folder, folder, sent, tipbox_filters

pytestmark = pytest.mark.e2e
__all__ = ["sent", "sieve_mailbox"]  # fixtures, collected from here
# Courier's and Cyrus's layout, also some Dovecot set-ups: every folder sits under the INBOX.
INBOX_NAMESPACE = """
namespace inbox {
  inbox = yes
  prefix = INBOX.
  separator = .
}
"""
SPAM = b"From: shop@example.com\r\nTo: all@post.test\r\nSubject: Sale\r\nX-Spam-Flag: YES\r\n\r\nBuy now.\r\n"


def _receipts(messages: list[bytes]) -> list[tuple[str, str]]:
    parsed = [email.message_from_bytes(raw, policy=email.policy.default) for raw in messages]
    return sorted((str(m["X-Tipbox-Receipt"]), str(m["X-Tipbox-Kind"])) for m in parsed)


def _expected(emails: list[Sent], per_post: bool = False, prefix: str = "") -> dict[str, list[tuple[str, str]]]:
    expected: dict[str, list[tuple[str, str]]] = {}
    for item in emails:
        kind = "follow-up" if item.follow_up else "tip"
        where = prefix + expected_folder(item, per_post)
        expected.setdefault(where, []).append((str(item.message["X-Tipbox-Receipt"]), kind))
    return {name: sorted(found) for name, found in expected.items()}


def _filled(view: dict[str, list[bytes]]) -> dict[str, list[tuple[str, str]]]:
    return {name: _receipts(found) for name, found in view.items() if found}


def _install(
    mailbox: SieveMailbox, tmp_path: Path, user: str, *args: str, prefix: str = "", forgotten: str = ""
) -> list[str]:
    """As the guide says: make the folders (`--format folders` lists them; all but `forgotten`), then install the
    script. Returns the folders made."""
    names = [name for name in tipbox_filters(tmp_path, "--format", "folders", *args).splitlines() if name != forgotten]
    mailbox.create_folders(user, [prefix + name for name in names])
    script = tipbox_filters(tmp_path, "--format", "sieve", *args, *(["--folder-prefix", prefix] if prefix else []))
    compiled = mailbox.install_script(user, script)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    assert "error" not in (compiled.stdout + compiled.stderr).lower(), compiled.stderr
    return names


def test_the_script_files_each_tip_in_its_folder(
    sieve_mailbox: SieveMailbox, sent: list[Sent], tmp_path: Path
) -> None:
    mailbox = sieve_mailbox.start(["all", "two"])
    made = {"all": _install(mailbox, tmp_path, "all")}
    made["two"] = _install(mailbox, tmp_path, "two", "--post=ncs", "--post=apc")
    for user in made:
        for item in [*sent, STRAY]:  # every category, follow-ups of two posts, a third post's tip, a forged tip
            mailbox.deliver(user, item.raw)

    everything = mailbox.folders("all")
    assert set(everything) == {"INBOX", *made["all"]}, mailbox.log()
    assert _receipts(everything.pop("INBOX")) == _receipts([STRAY.raw])  # only the forged tip stays
    assert _filled(everything) == _expected(sent)

    two_posts = mailbox.folders("two")
    assert set(two_posts) == {"INBOX", *made["two"]}, mailbox.log()
    others = [item for item in sent if item.post not in ("ncs", "apc")]
    assert _receipts(two_posts.pop("INBOX")) == _receipts([STRAY.raw, *[item.raw for item in others]])
    assert _filled(two_posts) == _expected([item for item in sent if item.post in ("ncs", "apc")], per_post=True)
    # Folder names are Vietnamese, stored as IMAP's modified UTF-7 of the UTF-8 names in the script.
    assert folder(CATEGORIES["drugs"]) in everything
    assert imap_utf7(folder(CATEGORIES["drugs"])).isascii()


def test_a_folder_not_made_yet_leaves_its_tips_in_the_inbox(
    sieve_mailbox: SieveMailbox, sent: list[Sent], tmp_path: Path
) -> None:
    # A folder the server made on its own would not be subscribed: clients would not show it, nor its tips.
    mailbox = sieve_mailbox.start(["all"])
    _install(mailbox, tmp_path, "all", forgotten=folder(CATEGORIES["drugs"]))
    drugs = [item for item in sent if item.category == "drugs" and not item.follow_up]
    for item in sent:
        mailbox.deliver("all", item.raw)
    view = mailbox.folders("all")
    assert _receipts(view.pop("INBOX")) == _receipts([item.raw for item in drugs])
    assert _filled(view) == _expected([item for item in sent if item not in drugs])
    assert mailbox.all_folders("all") == set(view) | {"INBOX"}  # nothing made behind the officers' backs


def test_folders_under_the_inbox_need_the_folder_prefix(
    sieve_mailbox: SieveMailbox, sent: list[Sent], tmp_path: Path
) -> None:
    mailbox = sieve_mailbox.start(["prefixed", "flat"], INBOX_NAMESPACE)
    _install(mailbox, tmp_path, "prefixed", prefix="INBOX.")
    names = tipbox_filters(tmp_path, "--format", "folders").splitlines()
    mailbox.create_folders("flat", ["INBOX." + name for name in names])  # what the webmail made
    mailbox.install_script("flat", tipbox_filters(tmp_path, "--format", "sieve"))
    for user in ("prefixed", "flat"):
        for item in sent:
            mailbox.deliver(user, item.raw)
    prefixed = mailbox.folders("prefixed")
    assert prefixed.pop("INBOX") == [] and _filled(prefixed) == _expected(sent, prefix="INBOX.")
    # Without the prefix every `fileinto` fails ("Mailbox can't be created") and the server keeps the tip in INBOX.
    flat = mailbox.folders("flat")
    assert _receipts(flat.pop("INBOX")) == _receipts([item.raw for item in sent]) and _filled(flat) == {}


def test_added_to_a_script_in_use_both_work(sieve_mailbox: SieveMailbox, sent: list[Sent], tmp_path: Path) -> None:
    # The guide: the require line goes up to the script's own require lines, the rules after its own rules.
    in_use = 'require ["fileinto"];\n\nif header :contains "X-Spam-Flag" "YES" {\n    fileinto "Junk";\n    stop;\n}\n'
    ours = tipbox_filters(tmp_path, "--format", "sieve")
    require = next(line for line in ours.splitlines() if line.startswith("require "))
    mailbox = sieve_mailbox.start(["all", "pasted"])
    names = tipbox_filters(tmp_path, "--format", "folders").splitlines()
    mailbox.create_folders("all", ["Junk", *names])
    head, rules = in_use.split("\n", 1)
    merged = mailbox.install_script("all", f"{head}\n{require}\n{rules}\n{ours.replace(require, '')}")
    assert merged.returncode == 0, merged.stderr
    # Pasted whole at the end, the script does not compile: `require` must come before every rule.
    pasted = mailbox.install_script("pasted", in_use + "\n" + ours)
    assert pasted.returncode != 0 and "require" in pasted.stdout + pasted.stderr
    for raw in [SPAM, *[item.raw for item in sent]]:
        mailbox.deliver("all", raw)
    view = mailbox.folders("all")
    assert view.pop("INBOX") == []
    junk = [email.message_from_bytes(raw, policy=email.policy.default) for raw in view.pop("Junk")]
    assert [str(message["Subject"]) for message in junk] == ["Sale"]
    assert _filled(view) == _expected(sent)


def test_sievec_rejects_a_broken_script(sieve_mailbox: SieveMailbox, tmp_path: Path) -> None:
    # The compile check can fail: without `require ["fileinto"]`, `fileinto` is an unknown command.
    mailbox = sieve_mailbox.start(["all"])
    script = tipbox_filters(tmp_path, "--format", "sieve")
    compiled = mailbox.install_script("all", script.replace('require ["fileinto"];', ""))
    assert compiled.returncode != 0
    assert "fileinto" in compiled.stdout + compiled.stderr
