"""`tipbox filters`: Gmail and Thunderbird rules read back and matched against real tipbox emails.

(Sieve runs in a real Dovecot: tests/test_filters_sieve.py.)
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable
from email.utils import getaddresses
from pathlib import Path
from urllib.parse import unquote

import pytest

from app import filters
from app.categories import CATEGORIES
from app.settings import Post
from tests.tipmails import (
    MAIL_FROM,
    POSTS_TOML,
    STRAY,
    Sent,
    expected_folder,
    folder,
    run_filters,
    sent,
    settings_for,
    tipbox_filters,
)

__all__ = ["sent"]  # the module fixture, collected from here
ATOM = "{http://www.w3.org/2005/Atom}"
APPS = "{http://schemas.google.com/apps/2006}"


# --- Gmail -----------------------------------------------------------------------------------------------------
# How these tests model Gmail's matching, from its search help ("Search operators you can use with Gmail"):
# - text is split into words at spaces and punctuation, case ignored: brackets, commas and "·" are not searchable,
#   so the subject "[Tin báo] [Ma túy] Đồn …" is the words tin, báo, ma, túy, đồn, …;
# - a quoted phrase matches its words next to each other, in order, anywhere in the text;
# - `subject` looks in the Subject only; `hasTheWord` in the whole message (Subject and text); `from` is the
#   sender's address; `doesNotHaveTheWord` excludes a message matching its query (terms joined by OR here, so the
#   result is the same whether Gmail negates it as a group or term by term); all criteria must hold.
# - Whether Gmail folds Vietnamese diacritics (túy = tuy) is not documented, so every filter must pick the same
#   emails under both readings.
_TERM = re.compile(r'^(?:(\w+):)?"([^"]*)"$')
FOLDS = pytest.mark.parametrize("fold", [False, True], ids=["diacritics kept", "diacritics folded"])
POSTS = {slug: table["name"] for slug, table in tomllib.loads(POSTS_TOML)["posts"].items()}


def _words(text: str, fold: bool) -> list[str]:
    if fold:
        text = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
        text = "".join(char for char in text if not unicodedata.combining(char))
    return re.findall(r"\w+", text.casefold())


def _has_phrase(text: str, phrase: str, fold: bool) -> bool:
    haystack, needle = _words(text, fold), _words(phrase, fold)
    assert needle, f"an empty phrase: {phrase!r}"
    return any(haystack[i : i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def _query_matches(query: str, email: Sent, fold: bool) -> bool:
    """Whether `email` matches `query`: one quoted phrase, or several joined by OR, each maybe `subject:`."""
    results = []
    for term in query.split(" OR "):
        match = _TERM.match(term)
        assert match, f"a query these tests cannot model: {query!r}"
        operator, phrase = match.groups()
        assert operator in (None, "subject"), query
        results.append(_has_phrase(email.subject if operator else f"{email.subject}\n{email.text}", phrase, fold))
    return any(results)


def _from(email: Sent) -> list[str]:
    return [address.casefold() for _, address in getaddresses([str(email.message["From"])])]


def gmail_matches(properties: dict[str, str], email: Sent, fold: bool) -> bool:
    checks: dict[str, Callable[[str], bool]] = {
        "from": lambda value: value.casefold() in _from(email),
        "subject": lambda value: _query_matches(f"subject:{value}", email, fold),
        "hasTheWord": lambda value: _query_matches(value, email, fold),
        "doesNotHaveTheWord": lambda value: not _query_matches(value, email, fold),
    }
    criteria = {name: value for name, value in properties.items() if name in checks}
    assert "from" in criteria and len(criteria) > 1, properties  # never the address alone, never without it
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
    assert len({entry.findtext(f"{ATOM}id") for entry in entries}) == len(entries)
    return [
        {prop.attrib["name"]: prop.attrib["value"] for prop in entry.findall(f"{APPS}property")} for entry in entries
    ]


def _expected(label: str, sent: list[Sent], posts: list[str]) -> list[Sent]:
    """The emails of those posts (or of every post) that should get `label`: their category's, and for a follow-up
    the follow-ups label too (labels add up in Gmail)."""

    def labels(email: Sent) -> set[str]:
        name = POSTS[email.post] if posts else None
        more = {folder(filters.FOLLOW_UPS, name)} if email.follow_up else set()
        return {folder(CATEGORIES[email.category], name)} | more

    return [email for email in sent if (not posts or email.post in posts) and label in labels(email)]


@FOLDS
@pytest.mark.parametrize("posts", [[], ["ncs"], ["ncs", "apc"]], ids=["every post", "ncs", "ncs and apc"])
def test_gmail_one_filter_per_folder_each_matching_exactly_its_emails(
    sent: list[Sent], tmp_path: Path, fold: bool, posts: list[str]
) -> None:
    found = gmail_filters(tipbox_filters(tmp_path, "--format", "gmail", *[f"--post={slug}" for slug in posts]))
    names = [POSTS[slug] for slug in posts] or [None]
    wanted = [folder(label, name) for name in names for label in (filters.FOLLOW_UPS, *CATEGORIES.values())]
    assert [f["label"] for f in found] == wanted
    emails = [*sent, STRAY]  # someone else's email, dressed as a tip
    for properties in found:
        assert properties["shouldNeverSpam"] == "true" and properties["smartLabelToApply"] == "^smartlabel_personal"
        picked = [email for email in emails if gmail_matches(properties, email, fold)]
        assert picked == _expected(properties["label"], sent, posts), properties
    labelled = {id(email) for properties in found for email in emails if gmail_matches(properties, email, fold)}
    assert labelled == {id(email) for email in sent if not posts or email.post in posts}


def test_gmail_tells_apart_a_post_whose_name_begins_another(sent: list[Sent], tmp_path: Path) -> None:
    # "Đồn Biên phòng Na Cô Sa - Trạm Pa Pỏm" begins with "Đồn Biên phòng Na Cô Sa": Na Cô Sa's filters exclude it.
    found = gmail_filters(tipbox_filters(tmp_path, "--format", "gmail", "--post", "ncs"))
    drugs = next(f for f in found if f["label"] == folder(CATEGORIES["drugs"], POSTS["ncs"]))
    assert drugs["doesNotHaveTheWord"] == f'subject:"{POSTS["ncs-pp"]}"'
    station = next(email for email in sent if email.post == "ncs-pp")
    assert _has_phrase(station.subject, drugs["subject"].strip('"'), fold=False)  # the phrase alone would take it
    assert not gmail_matches(drugs, station, fold=False)


def test_gmail_excludes_a_category_whose_words_begin_another(tmp_path: Path) -> None:
    # Were a category named "<smuggling's name> ma túy", the smuggling filter must not take its emails.
    posts = list(settings_for(tmp_path).load_posts().values())
    rules = filters.sorting(MAIL_FROM, posts)
    smuggling = next(f for f in rules.folders if f.category == "smuggling")
    tag = smuggling.subject[:-1] + " ma túy]"
    longer = filters.Folder(smuggling.name + " ma túy", "smuggling-drugs", None, tag)
    subjects = [filters.Subject("smuggling-drugs", p.slug, tag, p.name, f"{tag} {p.name}") for p in posts]
    rules = filters.Sorting(
        (*rules.folders, longer), rules.by_hand, MAIL_FROM, rules.adds_to, (*rules.subjects, *subjects)
    )
    feed = gmail_filters(filters.gmail(rules))
    assert next(f for f in feed if f["label"] == smuggling.name)["doesNotHaveTheWord"] == f'subject:"{tag}"'
    assert "doesNotHaveTheWord" not in next(f for f in feed if f["label"] == longer.name)


def test_gmail_refuses_posts_it_cannot_tell_apart(tmp_path: Path) -> None:
    # Two posts of the same name (or names equal once Gmail drops the diacritics) cannot have filters of their own.
    posts = [Post("ncs", "Đồn Na Cô Sa", "a@example.vn", ("vi",)), Post("nco", "Đồn Na Cổ Sa", "a@example.vn", ("vi",))]
    with pytest.raises(ValueError, match="Gmail cannot tell"):
        filters.gmail(filters.sorting(MAIL_FROM, posts, ["ncs"]))
    filters.sieve(filters.sorting(MAIL_FROM, posts, ["ncs"]))  # the headers tell them apart


# --- Thunderbird -----------------------------------------------------------------------------------------------
_ATTRIBUTE = re.compile(r'^(\w+)="((?:[^"\\]|\\.)*)"$')
_CONDITION = re.compile(r'AND \(("[^"]+"|\w+),(\w+),([^)]*)\)')


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
    """As Thunderbird matches: a custom header ("x-…") by its value, `from` by each address in From."""
    terms = _CONDITION.findall(condition)
    assert terms and _CONDITION.sub("", condition).strip() == "", condition
    assert ("from", "is", MAIL_FROM) in terms, condition  # every rule checks who sent it
    for header, operator, value in terms:
        assert operator == "is", condition
        found = _from(email) if header == "from" else [str(email.message[header.strip('"')] or "").casefold()]
        if value.casefold() not in found:
            return False
    return True


@pytest.mark.parametrize("posts", [[], ["ncs"], ["ncs", "apc"]], ids=["every post", "ncs", "ncs and apc"])
def test_thunderbird_rules_parse_back_and_each_condition_matches_exactly_its_emails(
    sent: list[Sent], tmp_path: Path, posts: list[str]
) -> None:
    base = "imap://officer%40example.vn@imap.example.vn/INBOX"
    args = ["--format", "thunderbird", "--folder-base", base, *[f"--post={slug}" for slug in posts]]
    head, rules = thunderbird_rules(tipbox_filters(tmp_path, *args))
    assert head == {"version": "9", "logging": "no"}
    names = [POSTS[slug] for slug in posts] or [None]
    assert [rule["name"] for rule in rules] == [
        folder(label, name) for name in names for label in (filters.FOLLOW_UPS, *CATEGORIES.values())
    ]
    mine = [email for email in sent if not posts or email.post in posts]
    for rule in rules:
        assert rule["enabled"] == "yes" and rule["type"] == "17" and rule["action"] == "Move to folder"
        assert unquote(rule["actionValue"]) == f"{unquote(base)}/{rule['name']}"
        picked = [email for email in [*sent, STRAY] if thunderbird_matches(rule["condition"], email)]
        assert picked == [email for email in mine if expected_folder(email, bool(posts)) == rule["name"]], rule
    # Every email of those posts is moved by exactly one rule (Thunderbird stops at the first move anyway).
    for email in mine:
        assert sum(thunderbird_matches(rule["condition"], email) for rule in rules) == 1


def test_thunderbird_folder_uris_are_escaped_as_thunderbird_escapes_them() -> None:
    # Thunderbird builds a folder's URI with ESCAPE_URL_PATH: a space is %20, a comma %2C, UTF-8 bytes %XX.
    _, rules = thunderbird_rules(filters.thunderbird(filters.sorting(MAIL_FROM), "mailbox://nobody@Local%20Folders"))
    uris = {rule["name"]: rule["actionValue"] for rule in rules}
    assert uris["Tin báo - Báo thêm"] == "mailbox://nobody@Local%20Folders/Tin%20b%C3%A1o%20-%20B%C3%A1o%20th%C3%AAm"
    assert all(" " not in uri and "," not in uri and uri.isascii() for uri in uris.values())


# --- the command -----------------------------------------------------------------------------------------------
def test_folders_lists_every_folder_to_make_first(tmp_path: Path) -> None:
    listed = tipbox_filters(tmp_path, "--format", "folders", "--post", "ncs", "--post", "apc").splitlines()
    labels = (filters.FOLLOW_UPS, *CATEGORIES.values())
    per_post = [folder(label, POSTS[slug]) for slug in ("ncs", "apc") for label in labels]
    assert listed == [*per_post, folder(filters.VERIFIED), folder(filters.HANDLED)]
    assert all(unicodedata.is_normalized("NFC", name) for name in listed)  # what officers copy into their client


def test_folder_names_stay_flat_whatever_the_post_is_called() -> None:
    # "." and "/" make subfolders on some servers and in Gmail; the post's name is the operator's free text.
    post = Post("bp", "Đồn B.P. Na Cô Sa/Trạm 2", "a@example.vn", ("vi",))
    assert filters.folder_name(CATEGORIES["drugs"], post) == "Tin báo - Đồn B P Na Cô Sa Trạm 2 - Ma túy"


@pytest.mark.parametrize(
    ("args", "settings", "said"),
    [
        (["--format", "sieve", "--post", "nope"], {}, "no post 'nope' (posts: ncs, apc, ncs-pp)"),
        (["--format", "thunderbird"], {}, "thunderbird needs --folder-base"),
        (["--format", "gmail", "--folder-base", "imap://x"], {}, "--folder-base is for --format thunderbird only"),
        (["--format", "gmail", "--folder-prefix", "INBOX."], {}, "--folder-prefix is for --format sieve only"),
        # A development run (no SMTP host) sends From tipbox@localhost: filters for it would match no real tip.
        (["--format", "gmail"], {"smtp_host": None, "mail_from": None}, "set TIPBOX_MAIL_FROM"),
    ],
    ids=["unknown post", "thunderbird without base", "base elsewhere", "prefix elsewhere", "no sending address"],
)
def test_options_that_cannot_make_working_filters_are_refused(
    tmp_path: Path, args: list[str], settings: dict[str, str | None], said: str
) -> None:
    done = run_filters(tmp_path, *args, **settings)
    assert done.returncode == 1 and done.stdout == b""
    assert said in done.stderr.decode()


def test_out_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "mailFilters.xml"
    printed = tipbox_filters(tmp_path, "--format", "gmail", "--out", str(out))
    assert printed.strip() == str(out)
    assert len(gmail_filters(out.read_text(encoding="utf-8"))) == len(CATEGORIES) + 1
