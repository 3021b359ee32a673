"""Mail filters that sort tips into one folder (or Gmail label) per category, plus one for follow-ups.

`tipbox filters --format gmail|sieve|thunderbird` prints them; `--format folders` lists the folders to make by hand
first. Each name comes from the officer-language catalog that names the categories in the email's subject
(`app.mail.subject_start`), so a filter and the subject it matches cannot drift apart when a category is reworded.
Every rule also checks that the email comes from tipbox's own address, so that nobody can borrow a tip's subject
(or its X-Tipbox-* headers) to get past the spam filter or into a tip folder.

With `--post` (once or more) each post listed gets folders of its own ("Tin báo - Đồn Biên phòng Na Cô Sa - Ma
túy"), all in one file, and other posts' tips stay where they land. Folder names are flat, with no "/" or ".": a
server or client that reads one of them as a subfolder separator would file elsewhere. Servers that keep every
folder under "INBOX." (Courier, Cyrus, some Dovecot set-ups) need that prefix in a Sieve `fileinto`
(`--folder-prefix`); Thunderbird's folder URI (`--folder-base`) already says where its folders are.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from app import i18n
from app.categories import CATEGORIES
from app.i18n import N_
from app.mail import SUBJECT_TAG, subject_start
from app.settings import Post

FORMATS = ("gmail", "sieve", "thunderbird", "folders")
# Folder names: the subject's tag without its brackets, (the post,) then the category ("Tin báo - Ma túy").
FOLDER_PREFIX = SUBJECT_TAG.strip("[]")
FOLDER_SEPARATOR = " - "
FOLLOW_UPS = N_("Follow-ups")
# Made by hand by the officers, for the post's routine (receive, classify, verify, handle); no filter fills them.
VERIFIED = N_("Verified")
HANDLED = N_("Handled")
# The follow-up's first body line names the report it adds to (templates/email/tip.txt); Gmail matches it.
ADDS_TO = N_("Adds to report")
ATOM = "http://www.w3.org/2005/Atom"
APPS = "http://schemas.google.com/apps/2006"
# Gmail's "Categorize as: Primary": with inbox tabs on, a tip must not sink into Updates or Promotions.
PRIMARY = "^smartlabel_personal"
_THUNDERBIRD_VALUE = re.compile(r"^[A-Za-z0-9._+@-]+$")


@dataclass(frozen=True, slots=True)
class Subject:
    """How the subjects of one post's tips of one category begin (`text`), and its two parts."""

    category: str
    post: str  # the post's slug
    tags: str  # "[Tin báo] [Ma túy]"
    post_name: str
    text: str  # "[Tin báo] [Ma túy] Đồn Biên phòng Na Cô Sa"


@dataclass(frozen=True, slots=True)
class Folder:
    """One folder or label: tips of `category` (an `app.categories.CATEGORIES` slug), or follow-ups when it is None;
    of `post` only, or of every post when it is None.

    `subject` is what its Gmail filter looks for in the subject: the subject's start ("[Tin báo] [Ma túy]", then the
    post's name if any); for follow-ups, the post's name, or nothing.
    """

    name: str
    category: str | None
    post: Post | None
    subject: str

    def takes(self, subject: Subject) -> bool:
        """Whether emails whose subject begins with `subject` belong here."""
        return self.category in (None, subject.category) and (self.post is None or self.post.slug == subject.post)


@dataclass(frozen=True, slots=True)
class Sorting:
    """Everything the formats need: the folders (each post's follow-ups first), the folders officers make by hand,
    whose mail to sort, and how every post's subjects begin (which Gmail's phrases must tell apart)."""

    folders: tuple[Folder, ...]
    by_hand: tuple[str, ...]
    mail_from: str
    adds_to: str
    subjects: tuple[Subject, ...]


def folder_name(msgid: str, post: Post | None = None, locales_dir: Path | None = None) -> str:
    """The folder for a category label or one of `FOLLOW_UPS`, `VERIFIED`, `HANDLED`, in the officers' language,
    for one post's tips or (without `post`) for every post's."""
    gettext = i18n.translations(i18n.OFFICER_LANGUAGE, locales_dir).gettext
    name = FOLDER_SEPARATOR.join([FOLDER_PREFIX, *([post.name] if post else []), gettext(msgid)])
    # "." and "/" separate subfolders on some servers and in Gmail: a space keeps the name flat and readable.
    return " ".join(re.sub(r"[./]", " ", name).split())


def sorting(
    mail_from: str, posts: Sequence[Post] = (), only: Sequence[str] = (), locales_dir: Path | None = None
) -> Sorting:
    """The folders for tips sent From `mail_from`: one set for every post, or one set for each post whose slug is in
    `only`. `posts` are all the configured posts, whose subjects Gmail's filters must tell apart."""
    gettext = i18n.translations(i18n.OFFICER_LANGUAGE, locales_dir).gettext
    by_slug = {post.slug: post for post in posts}
    unknown = [slug for slug in only if slug not in by_slug]
    if unknown:
        raise ValueError(f"no post {unknown[0]!r}")
    labels = {slug: gettext(label) for slug, label in CATEGORIES.items()}
    folders: list[Folder] = []
    chosen: list[Post | None] = [by_slug[slug] for slug in dict.fromkeys(only)]
    for post in chosen or [None]:
        name = post.name if post else None
        folders.append(Folder(folder_name(FOLLOW_UPS, post, locales_dir), None, post, name or ""))
        folders += [
            Folder(folder_name(msgid, post, locales_dir), slug, post, subject_start(labels[slug], name))
            for slug, msgid in CATEGORIES.items()
        ]
    subjects = tuple(
        Subject(slug, post.slug, subject_start(label), post.name, subject_start(label, post.name))
        for post in posts
        for slug, label in labels.items()
    )
    by_hand = (folder_name(VERIFIED, None, locales_dir), folder_name(HANDLED, None, locales_dir))
    return Sorting(tuple(folders), by_hand, mail_from, gettext(ADDS_TO), subjects)


def render(format_: str, rules: Sorting, *, folder_base: str | None = None, folder_prefix: str = "") -> str:
    """The filters in `format_` (one of `FORMATS`), as text to save and import."""
    if format_ == "gmail":
        return gmail(rules)
    if format_ == "sieve":
        return sieve(rules, folder_prefix)
    if format_ == "thunderbird":
        if folder_base is None:
            raise ValueError("Thunderbird filters need the folder URI their folders are in")
        return thunderbird(rules, folder_base)
    if format_ == "folders":
        return "".join(f"{name}\n" for name in [folder.name for folder in rules.folders] + list(rules.by_hand))
    raise ValueError(f"unknown filter format {format_!r}")


def gmail(rules: Sorting) -> str:
    """A Gmail filter export (`mailFilters.xml`) for Settings → Filters and Blocked Addresses → Import filters.

    Gmail cannot match X- headers, so each filter matches tipbox's address and the subject's start as a quoted
    phrase: Gmail's search ignores the brackets and reads `"[Tin báo] [Ma túy]"` as the words "Tin báo Ma túy" in
    that order, anywhere in the subject. Where that phrase is also in another folder's subjects (a category or post
    name whose words begin another's, with or without diacritics), the filter excludes them. Labels add up in Gmail:
    a follow-up gets its report's category label and the follow-ups label.
    """
    ET.register_namespace("", ATOM)
    ET.register_namespace("apps", APPS)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = "Mail Filters"
    ET.SubElement(feed, f"{{{ATOM}}}id").text = "tag:mail.google.com,2008:filters:tipbox"
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = now
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    ET.SubElement(author, f"{{{ATOM}}}name").text = "tipbox"
    for folder in rules.folders:
        properties = [("from", rules.mail_from)]
        if folder.category is None:
            properties.append(("hasTheWord", _phrase(rules.adds_to)))
        if folder.subject:
            properties.append(("subject", _phrase(folder.subject)))
        excluded = _excluded(folder, rules.subjects)
        if excluded:
            # OR, spelt out: Gmail reads "Doesn't have" as one negated query, where a space would mean AND.
            properties.append(("doesNotHaveTheWord", " OR ".join(f"subject:{_phrase(text)}" for text in excluded)))
        properties += [("label", folder.name), ("shouldNeverSpam", "true"), ("smartLabelToApply", PRIMARY)]
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}category", term="filter")
        ET.SubElement(entry, f"{{{ATOM}}}title").text = "Mail Filter"
        key = "-".join(([folder.post.slug] if folder.post else []) + [folder.category or "more"])
        ET.SubElement(entry, f"{{{ATOM}}}id").text = f"tag:mail.google.com,2008:filter:tipbox-{key}"
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = now
        ET.SubElement(entry, f"{{{ATOM}}}content")
        for name, value in properties:
            ET.SubElement(entry, f"{{{APPS}}}property", name=name, value=value)
    ET.indent(feed, space="  ")
    return ET.tostring(feed, encoding="unicode", xml_declaration=True) + "\n"


def sieve(rules: Sorting, prefix: str = "") -> str:
    """A Sieve script (RFC 5228) that files each tip by its X-Tipbox-* headers into `prefix` + its folder's name.

    Each rule stands on its own (a tip's kind and category, or a follow-up), so the order does not matter; the
    folder names are UTF-8, as Sieve has them. No `:create`: a folder the server made would not be subscribed
    (Dovecot's default), so phones and Thunderbird would not show it and its tips would vanish from view; a
    missing folder leaves its tips in the Inbox instead, where someone sees them.
    """
    lines = [
        "# tipbox: sort tips into one folder per category (made by `tipbox filters --format sieve`).",
        "# Make the folders first (`tipbox filters --format folders` lists them): a missing one's tips stay in INBOX.",
        "# To add this to a script in use, this require line goes up to its require lines, these rules after its own.",
        'require ["fileinto"];',
    ]
    for folder in rules.folders:
        tests = [f'address :is "from" {_quoted(rules.mail_from)}']
        if folder.category is None:
            tests.append('header :is "X-Tipbox-Kind" "follow-up"')
        else:
            tests += ['header :is "X-Tipbox-Kind" "tip"', f'header :is "X-Tipbox-Category" {_quoted(folder.category)}']
        if folder.post:
            tests.append(f'header :is "X-Tipbox-Post" {_quoted(folder.post.slug)}')
        lines += ["", "if allof (" + ",\n          ".join(tests) + ") {"]
        lines += [f"    fileinto {_quoted(prefix + folder.name)};", "    stop;", "}"]
    return "\n".join(lines) + "\n"


def thunderbird(rules: Sorting, folder_base: str) -> str:
    """A Thunderbird `msgFilterRules.dat` that moves each tip to its folder under `folder_base` (a folder URI).

    Conditions on X-Tipbox-* headers work once the headers are listed in the `mailnews.customHeaders` preference;
    the folders must exist, named exactly so, when Thunderbird reads the file.
    """
    lines = ['version="9"', 'logging="no"']
    for folder in rules.folders:
        terms = [("from", rules.mail_from)]  # a built-in attribute: Thunderbird compares each address in From
        if folder.category is None:
            terms.append(('"x-tipbox-kind"', "follow-up"))
        else:
            terms += [('"x-tipbox-kind"', "tip"), ('"x-tipbox-category"', folder.category)]
        if folder.post:
            terms.append(('"x-tipbox-post"', folder.post.slug))
        condition = " ".join(f"AND ({header},is,{_thunderbird_value(value)})" for header, value in terms)
        lines += [
            f"name={_quoted(folder.name)}",
            'enabled="yes"',
            'type="17"',  # new mail (1) and run by hand (16)
            'action="Move to folder"',
            f"actionValue={_quoted(folder_base.rstrip('/') + '/' + _uri_path(folder.name))}",
            f"condition={_quoted(condition)}",
        ]
    return "\n".join(lines) + "\n"


def _excluded(folder: Folder, subjects: Sequence[Subject]) -> list[str]:
    """What the Gmail filter for `folder` must exclude: for each other folder's subject that its phrase is in, the
    shortest part of that subject (its post's name, its tags, or all of it) that is in none of its own subjects."""
    own = [subject.text for subject in subjects if folder.takes(subject)]
    excluded: list[str] = []
    for other in subjects:
        if not folder.subject or folder.takes(other) or not _contains(other.text, folder.subject):
            continue
        parts = (other.post_name, other.tags, other.text)
        part = next((part for part in parts if not any(_contains(text, part) for text in own)), None)
        if part is None:
            raise ValueError(f"Gmail cannot tell {other.text!r} from {folder.subject!r}: rename a category or post")
        if part not in excluded:
            excluded.append(part)
    return excluded


def _contains(text: str, phrase: str) -> bool:
    """Whether Gmail may find `phrase` in `text`: its words next to each other, with diacritics or without."""
    for fold in (str, _strip_marks):
        words, wanted = _words(fold(text)), _words(fold(phrase))
        if any(words[i : i + len(wanted)] == wanted for i in range(len(words) - len(wanted) + 1)):
            return True
    return False


def _words(text: str) -> list[str]:
    """`text` as a search engine splits it: runs of letters and digits, lower case; brackets and dots dropped."""
    return re.findall(r"\w+", text.casefold())


def _strip_marks(text: str) -> str:
    """`text` without diacritics ("Ma túy" → "Ma tuy", "đ" → "d"), for engines that fold them."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _phrase(text: str) -> str:
    """A Gmail search phrase: the words of `text`, in quotes (a quote inside would end it, so none is kept)."""
    return '"' + text.replace('"', "") + '"'


def _quoted(value: str) -> str:
    """A quoted string as Sieve and Thunderbird's rules file both read it: backslash and quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _thunderbird_value(value: str) -> str:
    # Slugs, addresses and header values tipbox writes are plain; anything else would need Thunderbird's quoting.
    if not _THUNDERBIRD_VALUE.match(value):
        raise ValueError(f"not a plain value for a Thunderbird condition: {value!r}")
    return value


def _uri_path(name: str) -> str:
    """`name` escaped as Thunderbird escapes a folder name in its URI (ESCAPE_URL_PATH: letters, digits, `*+-._@`
    and `/` stay; everything else, UTF-8 bytes included, becomes %XX), so the URI names the folder it made."""
    return quote(name, safe="*+@").replace("~", "%7E")
