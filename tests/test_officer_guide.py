"""The duty guide (docs/can-bo.md) and its English translation (docs/officers.md) say only what is true: every
category name, folder, header and email line they mention exists in the catalogs and in real tipbox emails, and
every one there is in the guide."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from app import filters, i18n
from app.categories import CATEGORIES
from app.cli import build_parser
from tests.test_filters import thunderbird_rules
from tests.tipmails import MAIL_FROM, Sent, sent

__all__ = ["sent"]  # the module fixture, collected from here
DOCS = Path(__file__).parent.parent / "docs"
GUIDE = (DOCS / "can-bo.md").read_text(encoding="utf-8")
TRANSLATION = (DOCS / "officers.md").read_text(encoding="utf-8")
GUIDES = pytest.mark.parametrize("text", [GUIDE, TRANSLATION], ids=["can-bo.md", "officers.md"])


def _vi(msgid: str) -> str:
    translated = i18n.translations("vi").gettext(msgid)
    assert translated != msgid, f"no Vietnamese for {msgid!r} in the catalog"
    return translated


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)]


def test_the_readme_links_the_guide_first_and_the_translation_says_what_it_is() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)]+\.md)\)", readme)
    assert links[0] == "docs/can-bo.md"
    assert "English translation of the duty guide [can-bo.md](can-bo.md)" in TRANSLATION
    assert "[officers.md](officers.md)" in GUIDE


@GUIDES
def test_every_category_tag_is_the_catalogs_and_the_subjects(text: str, sent: list[Sent]) -> None:
    names = {_vi(label) for label in CATEGORIES.values()}
    tags = set(re.findall(r"`\[([^\]`]+)\]`", text)) - {"Tin báo"}
    assert tags == names
    for email in sent:
        assert f"[Tin báo] [{_vi(CATEGORIES[email.category])}] " in email.subject


@GUIDES
def test_every_folder_is_one_the_filters_make_and_each_is_named(text: str) -> None:
    made = [folder.name for folder in filters.sorting(MAIL_FROM).folders]
    by_hand = [filters.folder_name(filters.VERIFIED), filters.folder_name(filters.HANDLED)]
    named = set(re.findall(r"`(Tin báo - [^`]+)`", text))
    assert named == set(made) | set(by_hand)
    count = len(made)  # what Gmail and Thunderbird list after the import
    assert re.findall(r"(\d+) (?:bộ lọc|filters)\b", text) == [str(count), str(count)]


@GUIDES
def test_every_header_is_in_real_emails_with_the_values_the_guide_gives(text: str, sent: list[Sent]) -> None:
    in_emails = {name for email in sent for name in email.message if name.startswith("X-Tipbox-")}
    assert set(re.findall(r"X-Tipbox-[A-Za-z]+", text)) == in_emails
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(X-Tipbox-\w+)` \| (.*) \|$", text, re.MULTILINE)}
    assert set(re.findall(r"`([\w-]+)`", rows["X-Tipbox-Category"])) == set(CATEGORIES)
    kinds = {str(email.message["X-Tipbox-Kind"]) for email in sent}
    assert set(re.findall(r"`([\w-]+)`", rows["X-Tipbox-Kind"])) == kinds == {"tip", "follow-up"}
    languages = {str(email.message["X-Tipbox-Language"]) for email in sent}
    assert set(re.findall(r"`([\w-]+)`", rows["X-Tipbox-Language"])) == languages


@GUIDES
def test_thunderbird_custom_headers_are_the_ones_its_rules_use(text: str) -> None:
    match = re.search(r"`mailnews\.customHeaders`\. [^`]*`([^`]+)`", text)
    assert match, "the guide gives the mailnews.customHeaders value"
    listed = {header.strip().casefold() for header in match.group(1).split(":")}
    _, rules = thunderbird_rules(filters.thunderbird(filters.sorting(MAIL_FROM, None)))
    used = {header for rule in rules for header in re.findall(r'"(x-tipbox-[\w-]+)"', rule["condition"])}
    used |= {"x-tipbox-post"}  # --post adds it
    assert listed == used


@GUIDES
def test_each_line_of_the_sample_email_is_a_line_of_real_emails(text: str, sent: list[Sent]) -> None:
    blocks = re.findall(r"```\n(.*?)```", text, re.DOTALL)
    subject, body = blocks[0].strip(), blocks[1]
    assert re.fullmatch(r"\[Tin báo\] \[[^\]]+\] Đồn Biên phòng Na Cô Sa · \d{4} \d{4} \d{4} \d{4}", subject)
    texts = "\n".join(email.text for email in sent)
    labels = [re.split(r" — |:| \(\d", line)[0] for line in body.splitlines() if line]
    assert len(labels) == 10
    for label in labels:
        assert re.search(rf"^{re.escape(label)}\b", texts, re.MULTILINE), label


def test_the_follow_up_lines_the_guide_quotes_are_in_a_real_follow_up(sent: list[Sent]) -> None:
    follow_up = next(email for email in sent if email.follow_up).text
    receiving = re.sub(r"^!\[.*$", "", _section(GUIDE, "## 1.", "## 2."), flags=re.MULTILINE)  # not image captions
    quoted = re.findall(r'"([^"]+?)(?: …)?"', receiving) + re.findall(r"\*\*(BÁO THÊM)\*\*", receiving)
    assert len(quoted) >= 4
    for phrase in quoted:
        assert phrase in follow_up, phrase
    assert _vi(filters.ADDS_TO) in follow_up


@GUIDES
def test_the_filters_commands_in_the_guide_run(text: str) -> None:
    commands = re.findall(r"`?(tipbox filters [^`\n#]+)", text)
    assert len(commands) >= 4
    for command in commands:
        args = build_parser().parse_args(shlex.split(command.replace("…", "x"))[1:])
        assert args.format in filters.FORMATS


def test_the_screenshots_are_there_and_small() -> None:
    for name in set(re.findall(r"\]\(([\w-]+\.png)\)", GUIDE + TRANSLATION)):
        path = DOCS / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size < 150_000, name
