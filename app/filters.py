"""Mail filters that sort tips into one folder (or Gmail label) per category, plus one for follow-ups.

`tipbox filters --format gmail|sieve|thunderbird` prints them. Each name comes from the officer-language catalog
that names the categories in the email's subject (`app.mail`), so a filter and the subject it matches cannot
drift apart when a category is reworded. Folder names are flat ("Tin báo - Ma túy"), not nested: servers
separate nested folders with "/" or "." as they please, and a Sieve `fileinto` to a name the server reads
differently files nothing.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from app import i18n
from app.categories import CATEGORIES
from app.i18n import N_
from app.mail import SUBJECT_TAG
from app.settings import Post

FORMATS = ("gmail", "sieve", "thunderbird")
# Folder names: the subject's tag without its brackets, then the category ("Tin báo - Ma túy").
FOLDER_PREFIX = SUBJECT_TAG.strip("[]")
FOLDER_SEPARATOR = " - "
FOLLOW_UPS = N_("Follow-ups")
# Made by hand by the officers, for the post's routine (receive, classify, verify, handle); no filter fills them.
VERIFIED = N_("Verified")
HANDLED = N_("Handled")
# The follow-up's first body line names the report it adds to (templates/email/tip.txt); Gmail matches it.
ADDS_TO = N_("Adds to report")
# The folder URI of Thunderbird's "Local Folders", the same in every profile.
LOCAL_FOLDERS = "mailbox://nobody@Local%20Folders"
ATOM = "http://www.w3.org/2005/Atom"
APPS = "http://schemas.google.com/apps/2006"
_THUNDERBIRD_VALUE = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True, slots=True)
class Folder:
    """One folder or label: tips of `category` (a `tips.CATEGORIES` slug), or follow-ups when it is None.

    `tag` is the category's subject tag ("[Tin báo] [Ma túy]"); empty for follow-ups, whose subjects carry the
    first tip's category.
    """

    name: str
    category: str | None
    tag: str


@dataclass(frozen=True, slots=True)
class Sorting:
    """Everything the three formats need: the folders (follow-ups first), and whose mail to sort."""

    folders: tuple[Folder, ...]
    post: Post | None
    mail_from: str
    adds_to: str


def folder_name(msgid: str, locales_dir: Path | None = None) -> str:
    """The folder for a category label or one of `FOLLOW_UPS`, `VERIFIED`, `HANDLED`, in the officers' language."""
    gettext = i18n.translations(i18n.OFFICER_LANGUAGE, locales_dir).gettext
    return f"{FOLDER_PREFIX}{FOLDER_SEPARATOR}{gettext(msgid)}"


def sorting(mail_from: str, post: Post | None = None, locales_dir: Path | None = None) -> Sorting:
    """The folders for tips sent From `mail_from`, of `post` only or of every post."""
    gettext = i18n.translations(i18n.OFFICER_LANGUAGE, locales_dir).gettext
    folders = [Folder(folder_name(FOLLOW_UPS, locales_dir), None, "")]
    folders += [
        Folder(folder_name(label, locales_dir), slug, f"{SUBJECT_TAG} [{gettext(label)}]")
        for slug, label in CATEGORIES.items()
    ]
    return Sorting(tuple(folders), post, mail_from, gettext(ADDS_TO))


def render(format_: str, rules: Sorting, *, folder_base: str = LOCAL_FOLDERS) -> str:
    """The filters in `format_` (one of `FORMATS`), as text to save and import."""
    if format_ == "gmail":
        return gmail(rules)
    if format_ == "sieve":
        return sieve(rules)
    if format_ == "thunderbird":
        return thunderbird(rules, folder_base)
    raise ValueError(f"unknown filter format {format_!r}")


def _words(text: str) -> list[str]:
    """`text` as a search engine splits it: runs of letters and digits, lower case; brackets and dots dropped."""
    return re.findall(r"\w+", text.casefold())


def _strip_marks(text: str) -> str:
    """`text` without diacritics ("Ma túy" → "Ma tuy", "đ" → "d"), for engines that fold them."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def gmail(rules: Sorting) -> str:
    """A Gmail filter export (`mailFilters.xml`) for Settings → Filters and Blocked Addresses → Import filters.

    Gmail cannot match X- headers, so each category's filter matches its subject tag as a quoted phrase: Gmail's
    search ignores the brackets and reads `"[Tin báo] [Ma túy]"` as the words "Tin báo Ma túy" in that order.
    A category whose words begin another's (under Gmail's reading, with or without diacritics) excludes the
    longer one. Labels add up in Gmail: a follow-up gets its report's category label and the follow-ups label.
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
    post_name = f" {rules.post.name}" if rules.post else ""
    tags = [folder.tag for folder in rules.folders if folder.category]
    for folder in rules.folders:
        properties: list[tuple[str, str]] = []
        if folder.category is None:
            properties += [("from", rules.mail_from), ("hasTheWord", _phrase(rules.adds_to))]
            if rules.post:
                properties.append(("subject", _phrase(rules.post.name)))
        else:
            properties.append(("subject", _phrase(folder.tag + post_name)))
            longer = [_phrase(tag + post_name) for tag in tags if _extends(tag, folder.tag)]
            if longer:
                properties.append(("doesNotHaveTheWord", " ".join(f"subject:{phrase}" for phrase in longer)))
        properties += [("label", folder.name), ("shouldNeverSpam", "true")]
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}category", term="filter")
        ET.SubElement(entry, f"{{{ATOM}}}title").text = "Mail Filter"
        filter_id = f"tag:mail.google.com,2008:filter:tipbox-{folder.category or 'more'}"
        ET.SubElement(entry, f"{{{ATOM}}}id").text = filter_id
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = now
        ET.SubElement(entry, f"{{{ATOM}}}content")
        for name, value in properties:
            ET.SubElement(entry, f"{{{APPS}}}property", name=name, value=value)
    ET.indent(feed, space="  ")
    return ET.tostring(feed, encoding="unicode", xml_declaration=True) + "\n"


def sieve(rules: Sorting) -> str:
    """A Sieve script (RFC 5228, `fileinto :create` from RFC 5490's "mailbox") matching the X-Tipbox-* headers.

    Each rule stands on its own (a tip's kind and category, or a follow-up), so the order does not matter; the
    folder names are UTF-8, as Sieve has them, and the server creates a missing folder.
    """
    only_post = [f'header :is "X-Tipbox-Post" {_sieve_string(rules.post.slug)}'] if rules.post else []
    lines = [
        "# tipbox: sort tips into one folder per category (made by `tipbox filters --format sieve`).",
        "# Tip categories come from the X-Tipbox-* headers that tipbox alone writes.",
        'require ["fileinto", "mailbox"];',
    ]
    for folder in rules.folders:
        if folder.category is None:
            tests = ['header :is "X-Tipbox-Kind" "follow-up"']
        else:
            category = _sieve_string(folder.category)
            tests = ['header :is "X-Tipbox-Kind" "tip"', f'header :is "X-Tipbox-Category" {category}']
        lines += [
            "",
            f"if allof ({', '.join(tests + only_post)}) {{",
            f"    fileinto :create {_sieve_string(folder.name)};",
            "    stop;",
            "}",
        ]
    return "\n".join(lines) + "\n"


def thunderbird(rules: Sorting, folder_base: str = LOCAL_FOLDERS) -> str:
    """A Thunderbird `msgFilterRules.dat` that moves each tip to its folder under `folder_base` (a folder URI).

    Conditions on X-Tipbox-* headers work once the headers are listed in the `mailnews.customHeaders` preference;
    the folders must exist when Thunderbird reads the file.
    """
    only_post = [("x-tipbox-post", rules.post.slug)] if rules.post else []
    lines = ['version="9"', 'logging="no"']
    for folder in rules.folders:
        terms = (
            [("x-tipbox-kind", "follow-up")]
            if folder.category is None
            else [("x-tipbox-kind", "tip"), ("x-tipbox-category", folder.category)]
        )
        condition = " ".join(f'AND ("{header}",is,{_thunderbird_value(value)})' for header, value in terms + only_post)
        lines += [
            f"name={_thunderbird_string(folder.name)}",
            'enabled="yes"',
            'type="17"',  # new mail (1) and run by hand (16)
            'action="Move to folder"',
            f"actionValue={_thunderbird_string(folder_base.rstrip('/') + '/' + _uri_path(folder.name))}",
            f"condition={_thunderbird_string(condition)}",
        ]
    return "\n".join(lines) + "\n"


def _phrase(text: str) -> str:
    """A Gmail search phrase: the words of `text`, in quotes (a quote inside would end it, so none is kept)."""
    return '"' + text.replace('"', "") + '"'


def _extends(longer: str, shorter: str) -> bool:
    """Whether `shorter`'s words begin `longer`'s, as Gmail may read them: with diacritics or without."""
    for fold in (str, _strip_marks):
        long_words, short_words = _words(fold(longer)), _words(fold(shorter))
        if len(long_words) > len(short_words) and long_words[: len(short_words)] == short_words:
            return True
    return False


def _sieve_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _thunderbird_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _thunderbird_value(value: str) -> str:
    # Slugs and header values tipbox writes are plain; anything else would need Thunderbird's own quoting.
    if not _THUNDERBIRD_VALUE.match(value):
        raise ValueError(f"not a plain header value for a Thunderbird condition: {value!r}")
    return value


def _uri_path(name: str) -> str:
    """`name` escaped as Thunderbird escapes a folder name in its URI (ESCAPE_URL_PATH: letters, digits, `*+-._@`
    and `/` stay; everything else, UTF-8 bytes included, becomes %XX), so the URI names the folder it made."""
    return quote(name, safe="*+@").replace("~", "%7E")
