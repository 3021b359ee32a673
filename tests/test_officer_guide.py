"""The duty guide (docs/can-bo.md) and its English translation (docs/officers.md) say only what is true: every
category name, folder, header and email line they mention exists in the catalogs and in real tipbox emails, and
every one there is in the guide."""

from __future__ import annotations

import re
import shlex
from datetime import datetime
from pathlib import Path

import pytest

from app import filters, i18n
from app.categories import CATEGORIES
from app.cli import build_parser
from app.i18n import VIETNAM_TIME
from app.mail import Attachment, Composer, Tip
from app.settings import Post
from tests.helpers import SECRET
from tests.test_filters import thunderbird_rules
from tests.tipmails import MAIL_FROM, Sent, sent

__all__ = ["sent"]  # the module fixture, collected from here
DOCS = Path(__file__).parent.parent / "docs"
GUIDE = (DOCS / "can-bo.md").read_text(encoding="utf-8")
TRANSLATION = (DOCS / "officers.md").read_text(encoding="utf-8")
NA_CO_SA = Post("ncs", "Đồn Biên phòng Na Cô Sa", "nacosa@example.vn", ("vi", "hmn"))
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
    rules = filters.sorting(MAIL_FROM)
    made = [folder.name for folder in rules.folders]
    named = set(re.findall(r"`(Tin báo - [^`]+)`", text))
    assert named == set(made) | set(rules.by_hand)
    assert rules.by_hand == (filters.folder_name(filters.VERIFIED), filters.folder_name(filters.HANDLED))
    count = len(made)  # what Gmail and Thunderbird list after the import
    assert re.findall(r"(\d+) (?:bộ lọc|filters)\b", text) == [str(count), str(count)]
    # The example of a post's own folder (`--post`) is one the command makes.
    per_post = filters.sorting(MAIL_FROM, [NA_CO_SA], [NA_CO_SA.slug]).folders
    example = re.findall(r'"(Tin báo - Đồn [^"]+)"', text)
    assert example and set(example) <= {folder.name for folder in per_post}


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
    rules = filters.sorting(MAIL_FROM, [NA_CO_SA], [NA_CO_SA.slug])  # --post adds X-Tipbox-Post
    _, found = thunderbird_rules(filters.thunderbird(rules, "imap://officer@imap.example.vn/INBOX"))
    used = {header for rule in found for header in re.findall(r'"(x-tipbox-[\w-]+)"', rule["condition"])}
    assert listed == used


@GUIDES
def test_the_sample_email_is_what_tipbox_writes(text: str) -> None:
    blocks = re.findall(r"```\n(.*?)```", text, re.DOTALL)
    subject, body = blocks[0].strip(), blocks[1]
    # The guide's example, written by tipbox's own templates: every line, blank line and footer as officers see it.
    what = "Sáng chủ nhật có hai người lạ bán ma túy ở góc chợ phiên, gần hàng thịt.\nHọ đi xe máy, biển số tỉnh khác."
    received = datetime(2026, 11, 30, 6, 30, tzinfo=VIETNAM_TIME)
    tip = Tip(
        NA_CO_SA, "drugs", what, "Chợ phiên bản Na Cô Sa", "Chủ nhật, khoảng 7 giờ sáng", "", "vi", received,
        "4821 0937 5512 9634",
    )
    photo = Attachment("photo", 1, "photo-1.jpg", "image/jpeg", bytes(352_000))
    draft = Composer(MAIL_FROM, SECRET.encode()).draft(tip, [photo])
    assert body == draft.plain + "\n"
    assert subject == dict(draft.headers)["Subject"]


def test_the_outlook_rules_match_what_the_guide_says(sent: list[Sent]) -> None:
    # "Subject includes" and "Message body includes" look for the exact characters.
    outlook = _section(GUIDE, "### Outlook", "### Máy chủ thư")
    tags = re.findall(r"`(\[Tin báo\] \[[^`]+\])`", outlook)
    assert tags == ["[Tin báo] [Ma túy]"]
    for label in CATEGORIES.values():
        tag = f"[Tin báo] [{_vi(label)}]"
        assert [email for email in sent if tag in email.subject] == [
            email for email in sent if CATEGORIES[email.category] == label
        ]
    body = re.findall(r"`(Bổ sung[^`]+)`", outlook)
    assert body and [email for email in sent if body[0] in email.text] == [email for email in sent if email.follow_up]


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
