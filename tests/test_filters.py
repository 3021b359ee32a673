"""`tipbox filters`: Gmail and Thunderbird rules read back and matched against real tipbox emails.

(Sieve runs in a real Dovecot: tests/test_filters_sieve.py.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pytest

from app import filters
from app.categories import CATEGORIES
from tests.tipmails import MAIL_FROM, POSTS_TOML, ROOT, Sent, expected_folder, folder, sent, tipbox_filters

__all__ = ["sent"]  # the module fixture, collected from here
ATOM = "{http://www.w3.org/2005/Atom}"
APPS = "{http://schemas.google.com/apps/2006}"


# --- Gmail -----------------------------------------------------------------------------------------------------
# How these tests model Gmail's matching, from its search help ("Search operators you can use with Gmail"):
# - text is split into words at spaces and punctuation, case ignored: brackets, commas and "·" are not searchable,
#   so the subject "[Tin báo] [Ma túy] Đồn …" is the words tin, báo, ma, túy, đồn, …;
# - a quoted phrase matches its words next to each other, in order;
# - `subject` looks in the Subject only; `hasTheWord` in the whole message (Subject and text); `from` is the
#   sender's address; `doesNotHaveTheWord` excludes a message matching any of its terms; all criteria must hold.
# - Whether Gmail folds Vietnamese diacritics (túy = tuy) is not documented, so every filter must pick the same
#   emails under both readings.
_TERM = re.compile(r'(?:(\w+):)?"([^"]*)"')


def _words(text: str, fold: bool) -> list[str]:
    if fold:
        text = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
        text = "".join(char for char in text if not unicodedata.combining(char))
    return re.findall(r"\w+", text.casefold())


def _has_phrase(text: str, phrase: str, fold: bool) -> bool:
    haystack, needle = _words(text, fold), _words(phrase, fold)
    assert needle, f"an empty phrase: {phrase!r}"
    return any(haystack[i : i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def _query_matches(query: str, email: Sent, fold: bool, *, any_term: bool = False) -> bool:
    terms = _TERM.findall(query)
    assert terms and _TERM.sub("", query).strip() == "", f"a query these tests cannot model: {query!r}"
    results = [
        _has_phrase(email.subject if operator == "subject" else f"{email.subject}\n{email.text}", phrase, fold)
        for operator, phrase in terms
    ]
    return any(results) if any_term else all(results)


def gmail_matches(properties: dict[str, str], email: Sent, fold: bool) -> bool:
    checks: dict[str, Callable[[str], bool]] = {
        "from": lambda value: value.casefold() in str(email.message["From"]).casefold(),
        "subject": lambda value: _query_matches(f'subject:"{value.strip(chr(34))}"', email, fold),
        "hasTheWord": lambda value: _query_matches(value, email, fold),
        "doesNotHaveTheWord": lambda value: not _query_matches(value, email, fold, any_term=True),
    }
    criteria = {name: value for name, value in properties.items() if name in checks}
    assert criteria, properties
    return all(checks[name](value) for name, value in criteria.items())


def gmail_filters(xml: str) -> list[dict[str, str]]:
    feed = ET.fromstring(xml)
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}title") == "Mail Filters"
    entries = feed.findall(f"{ATOM}entry")
    for entry in entries:
        category = entry.find(f"{ATOM}category")
        assert category is not None and category.get("term") == "filter"
        assert entry.findtext(f"{ATOM}id") and entry.findtext(f"{ATOM}updated")
    return [
        {prop.attrib["name"]: prop.attrib["value"] for prop in entry.findall(f"{APPS}property")} for entry in entries
    ]


@pytest.mark.parametrize("fold", [False, True], ids=["diacritics kept", "diacritics folded"])
def test_gmail_one_filter_per_category_each_matching_exactly_its_emails(
    sent: list[Sent], tmp_path: Path, fold: bool
) -> None:
    found = gmail_filters(tipbox_filters(tmp_path, "--format", "gmail"))
    wanted = {folder(label) for label in CATEGORIES.values()} | {folder(filters.FOLLOW_UPS)}
    assert sorted(f["label"] for f in found) == sorted(wanted)  # one filter per label, each label once
    for properties in found:
        assert properties["shouldNeverSpam"] == "true"
        picked = [email for email in sent if gmail_matches(properties, email, fold)]
        if properties["label"] == folder(filters.FOLLOW_UPS):
            expected = [email for email in sent if email.follow_up]
        else:
            # Labels add up in Gmail: a follow-up also carries its report's category label.
            expected = [email for email in sent if folder(CATEGORIES[email.category]) == properties["label"]]
        assert picked == expected, properties


def test_gmail_filters_for_one_post_leave_the_others_tips_alone(sent: list[Sent], tmp_path: Path) -> None:
    found = gmail_filters(tipbox_filters(tmp_path, "--format", "gmail", "--post", "ncs"))
    assert len(found) == len(CATEGORIES) + 1
    labelled = {id(email) for properties in found for email in sent if gmail_matches(properties, email, fold=False)}
    assert labelled == {id(email) for email in sent if email.post == "ncs"}


def test_gmail_excludes_a_category_whose_words_begin_another() -> None:
    # Were a category named "<smuggling's name> ma túy", the smuggling filter must not take its emails.
    rules = filters.sorting(MAIL_FROM)
    smuggling = next(f for f in rules.folders if f.category == "smuggling")
    tag = smuggling.tag[:-1] + " ma túy]"
    longer = filters.Folder(smuggling.name + " ma túy", "smuggling-drugs", tag)
    feed = gmail_filters(filters.gmail(filters.Sorting((*rules.folders, longer), None, MAIL_FROM, rules.adds_to)))
    assert next(f for f in feed if f["label"] == smuggling.name)["doesNotHaveTheWord"] == f'subject:"{tag}"'
    assert "doesNotHaveTheWord" not in next(f for f in feed if f["label"] == longer.name)


# --- Thunderbird -----------------------------------------------------------------------------------------------
_ATTRIBUTE = re.compile(r'^(\w+)="((?:[^"\\]|\\.)*)"$')
_CONDITION = re.compile(r'AND \("([^"]+)",(\w+),([^)]*)\)')


def thunderbird_rules(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The file's header and its rules, read back the way Thunderbird reads msgFilterRules.dat: one
    `key="value"` per line, backslash escapes, a rule starting at each `name`."""
    head: dict[str, str] = {}
    rules: list[dict[str, str]] = []
    for line in text.splitlines():
        match = _ATTRIBUTE.match(line)
        assert match, line
        key, value = match.group(1), re.sub(r"\\(.)", r"\1", match.group(2))
        if key == "name":
            rules.append({})
        (rules[-1] if rules else head)[key] = value
    return head, rules


def thunderbird_matches(condition: str, email: Sent) -> bool:
    terms = _CONDITION.findall(condition)
    assert terms and _CONDITION.sub("", condition).strip() == "", condition
    for header, operator, value in terms:
        assert operator == "is", condition
        if str(email.message[header] or "").casefold() != value.casefold():
            return False
    return True


@pytest.mark.parametrize("post", [None, "ncs"])
def test_thunderbird_rules_parse_back_and_each_condition_matches_exactly_its_emails(
    sent: list[Sent], tmp_path: Path, post: str | None
) -> None:
    base = "imap://officer%40example.vn@imap.example.vn/INBOX"
    args = ["--format", "thunderbird", "--folder-base", base] + (["--post", post] if post else [])
    head, rules = thunderbird_rules(tipbox_filters(tmp_path, *args))
    assert head == {"version": "9", "logging": "no"}
    assert [rule["name"] for rule in rules] == [folder(filters.FOLLOW_UPS)] + [folder(c) for c in CATEGORIES.values()]
    mine = [email for email in sent if post in (None, email.post)]
    for rule in rules:
        assert rule["enabled"] == "yes" and rule["type"] == "17" and rule["action"] == "Move to folder"
        assert unquote(rule["actionValue"]) == f"{unquote(base)}/{rule['name']}"
        picked = [email for email in sent if thunderbird_matches(rule["condition"], email)]
        assert picked == [email for email in mine if expected_folder(email) == rule["name"]], rule
    # Every email of those posts is moved by exactly one rule (Thunderbird stops at the first move anyway).
    for email in mine:
        assert sum(thunderbird_matches(rule["condition"], email) for rule in rules) == 1


def test_thunderbird_folder_uris_are_escaped_as_thunderbird_escapes_them() -> None:
    # Thunderbird builds a folder's URI with ESCAPE_URL_PATH: a space is %20, a comma %2C, UTF-8 bytes %XX.
    _, rules = thunderbird_rules(filters.thunderbird(filters.sorting(MAIL_FROM)))
    uris = {rule["name"]: rule["actionValue"] for rule in rules}
    assert uris["Tin báo - Báo thêm"] == "mailbox://nobody@Local%20Folders/Tin%20b%C3%A1o%20-%20B%C3%A1o%20th%C3%AAm"
    assert all(" " not in uri and "," not in uri and uri.isascii() for uri in uris.values())


# --- the command -----------------------------------------------------------------------------------------------
def test_an_unknown_post_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    posts = tmp_path / "posts.toml"
    posts.write_text(POSTS_TOML, encoding="utf-8")
    env = {**os.environ, "TIPBOX_POSTS_FILE": str(posts)}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "filters", "--format", "sieve", "--post", "nope"],
        cwd=ROOT, env=env, capture_output=True, timeout=60,
    )
    assert done.returncode == 1
    assert "no post 'nope'" in done.stderr.decode() and "ncs, apc" in done.stderr.decode()


def test_out_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "mailFilters.xml"
    printed = tipbox_filters(tmp_path, "--format", "gmail", "--out", str(out))
    assert printed.strip() == str(out)
    assert len(gmail_filters(out.read_text(encoding="utf-8"))) == len(CATEGORIES) + 1
