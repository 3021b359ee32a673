"""An officer's reply → only the new text: no quoted tip, no "On … wrote:" line, no Outlook "From: … Sent: …" block.

The splitting is mail-parser-reply's (maintained, MIT). It knows English and other languages' quote headers but not
Vietnamese, so this module teaches it the headers that Gmail, Outlook and Thunderbird write with a Vietnamese
interface ("Vào … đã viết:", "Từ: … Đã gửi: … Đến: … Chủ đề:"). An HTML-only reply is turned into text with the
stdlib's parser, leaving out the quoted blocks each client marks (blockquote, Gmail's gmail_quote, Thunderbird's
moz-cite-prefix). Attachments are counted, never kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cache
from html.parser import HTMLParser
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailparser_reply import EmailReplyParser

MAX_TEXT_CHARS = 10_000


@cache
def _parser() -> EmailReplyParser:
    """mail-parser-reply, taught Vietnamese; loaded with the first reply, not in every process that never gets one.

    Gmail (vi): "Vào Th 2, 6 thg 5, 2024 vào lúc 10:15 Tipbox <tipbox@…> đã viết:" (may be wrapped once);
    Thunderbird (vi): "Vào 06/05/2024 10:15, Tipbox đã viết:". Outlook (vi): Từ / Đã gửi / Đến / Chủ đề / Cc.
    """
    from mailparser_reply import EmailReplyParser
    from mailparser_reply.constants import MAIL_LANGUAGES, QUOTED_MATCH_INCLUDE

    MAIL_LANGUAGES.setdefault(
        "vi",
        {
            "wrote_header": r"^(" + QUOTED_MATCH_INCLUDE + r"Vào\s(?:.+?\s?.+?)\s?đã viết:)$",
            "from_header": r"((?:(?:^|\n|\n" + QUOTED_MATCH_INCLUDE
            + r")[* ]*(?:Từ|Đã gửi|Gửi|Đến|Chủ đề|Ngày|Cc|Tiêu đề):[ *]*(?:\s{,2}).*){2,}(?:\n.*){,1})",
            "disclaimers": [],
            "signatures": [],
            "sent_from": "Gửi từ",
        },
    )
    return EmailReplyParser(languages=["vi", "en"])


_QUOTED = re.compile(r"^\s*>")
_ATTRIBUTION_END = re.compile(r"(?:wrote|đã viết|schrieb|a écrit|escribió)\s*:\s*$", re.IGNORECASE)
_RULE = re.compile(r"^\s*[_\-=]{20,}\s*$")
_SIGNATURE = re.compile(r"^-- ?$")


@dataclass(frozen=True, slots=True)
class ReplyText:
    """The officer's new words (empty if there are none) and how many files came with them (not passed on)."""

    text: str
    files: int


def reply_text(message: EmailMessage) -> ReplyText:
    """The new text of an officer's reply, preferring its plain part; HTML only when there is no plain part."""
    body = message.get_body(("plain", "html"))
    content = ""
    if body is not None:
        try:
            content = str(body.get_content())
        except (LookupError, ValueError, AssertionError):  # an unknown charset or a broken transfer encoding
            payload = body.get_payload(decode=True)
            content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        if body.get_content_subtype() == "html":
            content = html_to_text(content)
    return ReplyText(new_text(content), _count_files(message, body))


def new_text(text: str) -> str:
    """`text` without its quoted part: the first fragment that says something, quote lines and headers removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for reply in _parser().read(text).replies:
        kept = _unquoted(reply.full_body)
        if kept:
            return kept[:MAX_TEXT_CHARS]
    return ""


def _unquoted(fragment: str) -> str:
    lines = fragment.split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _SIGNATURE.match(line):
            break  # "-- " starts a signature, by convention (RFC 3676)
        if _QUOTED.match(line) or _RULE.match(line):
            continue
        following = next((later for later in lines[index + 1 :] if later.strip()), "")
        if _ATTRIBUTION_END.search(line) and _QUOTED.match(following):
            continue  # an attribution line in a language the parser does not know, right above a quote
        kept.append(line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _count_files(message: EmailMessage, body: object) -> int:
    count = 0
    for part in message.walk():
        if part is body or part.is_multipart():
            continue
        attached = part.get_filename() or part.get_content_disposition() == "attachment"
        if part.get_content_maintype() != "text" or attached:
            count += 1
    return count


_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "footer", "h1", "h2", "h3", "h4",
    "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})
_HIDDEN = frozenset({"head", "script", "style", "title", "template"})
_QUOTE_CLASSES = ("gmail_quote", "moz-cite-prefix", "yahoo_quoted")
_QUOTE_IDS = ("divRplyFwdMsg", "appendonsend")


class _TextOf(HTMLParser):
    """Text the way a mail client shows it, without the quoted blocks and everything after Outlook's reply header."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0  # depth inside a skipped element
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._done:
            return
        if self._skip:
            self._skip += tag not in _VOID
            return
        values = dict(attrs)
        classes = (values.get("class") or "").split()
        if values.get("id") in _QUOTE_IDS:
            self._done = True  # Outlook: the quoted original follows this element to the end of the body
            return
        if tag == "blockquote" or tag in _HIDDEN or any(name in classes for name in _QUOTE_CLASSES):
            self._skip = 0 if tag in _VOID else 1
            return
        if tag in _BLOCKS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            self._skip -= tag not in _VOID
        elif tag in _BLOCKS and not self._done:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip and not self._done:
            self.chunks.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _TextOf()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.chunks).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
