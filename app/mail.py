"""The officer's email for a tip: fixed headers from configuration, the sender's words in the body only; and the
short confirmation an officer gets for an answer (`confirmation`). tipbox writes no email anywhere else.

`Composer.draft` says everything the message says; `as_bytes` writes it to its wire form with `app.mime`. The
stdlib `email` package is not used to write it (it spends milliseconds refolding headers it was given whole, and
Python 3.11's folder drops a space inside encoded words): tests/reference.py builds the same message with it, as
the reference the tests compare the wire form with.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Literal

from jinja2 import Template, pass_eval_context
from jinja2.nodes import EvalContext
from markupsafe import Markup

from app import i18n, mime, receipts, rendering
from app.answers import threads
from app.categories import CATEGORIES, category_for_tag
from app.delivery import Wire
from app.i18n import N_, VIETNAM_TIME
from app.settings import Post

SUBJECT_TAG = "[Tin báo]"
# How the email names a file's type, e.g. "Ảnh JPEG", "Ghi âm M4A".
KIND_LABELS = {"photo": N_("Photo %(format)s"), "voice": N_("Voice recording %(format)s")}
CONFIRMATION = N_(
    "Your answer is stored. The sender sees it when they enter their receipt code on the tip box page."
)
FILES_NOT_PASSED_ON = N_("Attached files are not passed on to the sender: write what they need to know.")
_MESSAGE_ID = re.compile(r"<[!-;=?-~]+>")  # printable ASCII between < and >, as a References header holds ids
_FORMAT_NAMES = {"jpg": "JPEG"}

Kind = Literal["photo", "voice"]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A cleaned file, safe to forward (`app.attachments` makes it): named by its kind and position, never by the
    phone's name."""

    kind: Kind
    index: int
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Tip:
    """A validated tip: what the sender wrote, and nothing about who they are."""

    post: Post
    category: str
    what: str
    where: str
    when: str
    contact: str
    language: str
    received_at: datetime
    receipt: str
    # The receipt code of the report this adds to (then `receipt` is the same code), or None for a new report.
    follow_up_to: str | None = None
    # The served form's key (its token's nonce): the same form sent again (its first hand-off never confirmed)
    # makes the same follow-up Message-ID, as a first tip's derives from its receipt. Empty: a random one.
    form_key: str = ""

    @property
    def category_label(self) -> str:
        return CATEGORIES[self.category]


@dataclass(frozen=True, slots=True)
class Composer:
    """Builds messages From `sender` To the tip's post; `secret` keys the thread ids."""

    sender: str
    secret: bytes
    locales_dir: Path | None = None
    # Answers on: officers' replies go here (Reply-To), and each tip's Message-ID carries its code's public key.
    reply_to: str | None = None

    @property
    def domain(self) -> str:
        return self.sender.rpartition("@")[2] or "localhost"

    def report_category(self, tip: Tip) -> tuple[str, bool]:
        """The category the report is filed under, and False for a follow-up whose code tipbox cannot have made.

        A follow-up is filed under the first tip's category, read back from its code, so that its subject is the
        first one's with `Re: ` (Gmail and Outlook thread on the subject, not only on References).
        """
        if tip.follow_up_to is None:
            return tip.category, True
        first = category_for_tag(receipts.read_tag(tip.follow_up_to, self.secret))
        return (first, True) if first is not None else (tip.category, False)

    def _form_seed(self, tip: Tip) -> bytes:
        """What a follow-up's own Message-ID is made from: its form's key under the secret key (the same each time
        that form is sent, unguessable without the key), or nothing (a random one)."""
        if not tip.form_key:
            return b""
        return hmac.new(self.secret, b"tipbox-follow-up:" + tip.form_key.encode(), hashlib.sha256).digest()

    def compose(self, tip: Tip, attachments: Sequence[Attachment] = (), *, answer_key: bytes | None = None) -> Wire:
        """The message for `tip` in its wire form, with its envelope: a plain-text part, an HTML part, the cleaned
        files, and no trace of the sender.

        The structure is the one Thunderbird writes and Gmail, Outlook and Apple Mail all show as meant:
        multipart/mixed > [multipart/alternative > [text/plain, multipart/related > [text/html, photos]], voice
        notes]. Each photo is in the HTML part's multipart/related, shown in place through its Content-ID (Gmail,
        Outlook and Thunderbird resolve `cid:` there; Thunderbird only there) and named `photo-N.jpg` so it can be
        saved; it is sent once, not also as a separate attachment, which would double its size and show it twice
        in clients that display attachments inline. Voice notes are ordinary attachments (`voice-N.m4a`).
        """
        return Wire(self.sender, (tip.post.mailbox,), as_bytes(self.draft(tip, attachments, answer_key=answer_key)))

    def draft(self, tip: Tip, attachments: Sequence[Attachment] = (), *, answer_key: bytes | None = None) -> Draft:
        """Everything the message says, before it is written (`as_bytes`).

        `answer_key` (the code's public key, when answers are on) goes into the thread's Message-ID.
        """
        plain, html = email_templates(self.locales_dir)
        gettext = i18n.translations(i18n.OFFICER_LANGUAGE, self.locales_dir).gettext
        # Photos are shown in the HTML part; a random Content-ID each, so no two emails share one.
        cids = [
            f"{attachment.filename}.{secrets.token_hex(8)}@{self.domain}" if attachment.kind == "photo" else None
            for attachment in attachments
        ]
        received = tip.received_at.astimezone(VIETNAM_TIME)
        filed_under, code_possible = self.report_category(tip)
        report_category = gettext(CATEGORIES[filed_under])
        context = {
            "tip": tip,
            "category": gettext(tip.category_label),
            "report_category": report_category,
            "follow_up": tip.follow_up_to is not None,
            "code_possible": code_possible,
            "received": received.strftime("%d/%m/%Y %H:%M"),
            "sender_language": f"{i18n.language_name(tip.language, self.locales_dir)} ({tip.language})",
            "answers_on": answer_key is not None and self.reply_to is not None,
            # One entry per file, each with `kind`, `size` (text) and, for an image shown inline, `cid`.
            "attachments": [
                {"kind": _kind(attachment, gettext), "size": _size(len(attachment.data)), "cid": cid}
                for attachment, cid in zip(attachments, cids, strict=True)
            ],
        }
        # Every header comes from configuration or from tipbox itself; nothing typed by the sender.
        headers = [("From", self.sender), ("To", tip.post.mailbox), ("Date", email.utils.format_datetime(received))]
        subject = f"{subject_start(report_category, tip.post.name)} · {tip.receipt}"
        if context["answers_on"] and self.reply_to is not None and answer_key is not None:
            # Officers answer by replying: the thread's id carries the code's public key under a MAC (app.answers).
            headers.append(("Reply-To", self.reply_to))
            first = threads.message_id(tip.post.slug, answer_key, self.secret, self.domain)
            own = threads.message_id(
                tip.post.slug, answer_key, self.secret, self.domain, follow_up=True, seed=self._form_seed(tip)
            )
        else:
            first = receipts.thread_id(tip.follow_up_to or tip.receipt, self.secret, self.domain)
            # The same form sent again (its first hand-off never confirmed) makes the same Message-ID: a mailbox that
            # drops a repeated one shows it once.
            seed = self._form_seed(tip)
            own = f"<{seed.hex()[:32] if seed else secrets.token_hex(16)}@{self.domain}>"
        if tip.follow_up_to is None:
            headers += [("Subject", subject), ("Message-ID", first)]
        else:
            # A reply to the first tip, whose Message-ID only the code and the secret key can give.
            headers += [("Subject", f"Re: {subject}"), ("Message-ID", own)]
            headers += [("In-Reply-To", first), ("References", first)]
        headers += [
            ("X-Tipbox-Kind", "follow-up" if tip.follow_up_to else "tip"),
            ("X-Tipbox-Receipt", tip.receipt),
            ("X-Tipbox-Category", filed_under),
            ("X-Tipbox-Post", tip.post.slug),
            ("X-Tipbox-Language", tip.language),
            ("Auto-Submitted", "auto-generated"),
        ]
        return Draft(
            headers=tuple(headers),
            plain=plain.render(context),
            html=html.render(context),
            files=tuple(zip(attachments, cids, strict=True)),
        )


def subject_start(category: str, post_name: str | None = None) -> str:
    """How a tip's subject begins, before its receipt code: "[Tin báo] [Ma túy] Đồn Biên phòng Na Cô Sa", the
    category as officers read it; without a post name, the tags alone. Mail filters match it (`app.filters`)."""
    tags = f"{SUBJECT_TAG} [{category}]"
    return tags if post_name is None else f"{tags} {post_name}"


@dataclass(frozen=True, slots=True)
class Draft:
    """A message's headers (name, value), its two texts, and its files, each with a Content-ID if shown inline."""

    headers: tuple[tuple[str, str], ...]
    plain: str
    html: str
    files: tuple[tuple[Attachment, str | None], ...]


def as_bytes(draft: Draft) -> bytes:
    """`draft` in its wire form, written with `app.mime` (tests/reference.py builds the same with `email`)."""
    headers = [mime.header(name, value, text=name == "Subject") for name, value in draft.headers]
    html = mime.text_part("html", draft.html)
    photos = [
        mime.file_part(file.content_type, file.data, filename=file.filename, inline=True, cid=cid)
        for file, cid in draft.files
        if cid is not None
    ]
    if photos:
        html = mime.multipart("related", [html, *photos], params='type="text/html"')
    root = mime.multipart("alternative", [mime.text_part("plain", draft.plain), html])
    voices = [
        mime.file_part(file.content_type, file.data, filename=file.filename, inline=False)
        for file, cid in draft.files
        if cid is None
    ]
    if voices:
        root = mime.multipart("mixed", [root, *voices])
    return mime.message(headers, root)


def confirmation(
    sender: str, officer: str, *, subject: str, answer_id: str, references: str, files: int, at: float,
    locales_dir: Path | None = None,
) -> bytes:
    """The note an officer gets once their answer is stored, in its thread (the answer's Message-ID `answer_id` and
    its `references`), saying so and, if the answer had `files`, that they are not passed on. It quotes nothing."""
    gettext = i18n.translations(i18n.OFFICER_LANGUAGE, locales_dir).gettext
    lines = [gettext(CONFIRMATION)] + ([gettext(FILES_NOT_PASSED_ON)] if files else [])
    subject = " ".join(subject.split())[:200]
    domain = sender.rpartition("@")[2] or "localhost"
    headers = [
        ("From", sender), ("To", officer),
        ("Subject", subject if subject.lower().startswith("re:") else f"Re: {subject}".strip()),
        ("Date", email.utils.formatdate(at, localtime=False)),
        ("Message-ID", email.utils.make_msgid(domain=domain)),
    ]
    parent = answer_id.strip()
    if _MESSAGE_ID.fullmatch(parent):
        thread = [*_MESSAGE_ID.findall(references), parent]
        while len(" ".join(thread)) > 900:  # the newest ids, within a line's 998 characters
            thread.pop(0)
        headers += [("In-Reply-To", parent), ("References", " ".join(thread))]
    headers.append(("Auto-Submitted", "auto-replied"))  # RFC 3834: no auto-reply comes back to it
    written = [mime.header(name, value, text=name == "Subject") for name, value in headers]
    return mime.message(written, mime.text_part("plain", "\n\n".join(lines)))


@cache
def email_templates(locales_dir: Path | None = None) -> tuple[Template, Template]:
    """The email's plain and HTML templates, with a `_` that does in one call what Jinja's does in three.

    They call `_` about forty times per email, and `jinja2.ext`'s newstyle alias goes through `Context.call` three
    times for each: a third of the render. This `_` is that gettext (translation, marked safe where autoescaping,
    then `%` formatting), called directly; tests/test_mail.py renders both ways and compares.
    """
    base = rendering.environment(i18n.OFFICER_LANGUAGE, locales_dir)
    translate = i18n.translations(i18n.OFFICER_LANGUAGE, locales_dir).gettext

    @pass_eval_context
    def gettext(eval_ctx: EvalContext, string: str, **variables: object) -> str:
        text = translate(string)
        # Safe as jinja2.ext marks it: a translation from tipbox's own catalog, not input.
        return (Markup(text) if eval_ctx.autoescape else text) % variables  # noqa: S704

    # Its own globals (the pages' environment keeps Jinja's `_`), and a cache of its own: the pages' environment's
    # templates come with that environment's globals, and with no cache at all every `{% include %}` of the email
    # would be compiled again for each tip (it was: two thirds of a tip's CPU).
    env = base.overlay(cache_size=50)
    env.globals = {**base.globals, "_": gettext}
    return env.get_template("email/tip.txt"), env.get_template("email/tip.html")


def _kind(attachment: Attachment, gettext: Callable[[str], str]) -> str:
    extension = attachment.filename.rpartition(".")[2]
    return gettext(KIND_LABELS[attachment.kind]) % {"format": _FORMAT_NAMES.get(extension, extension.upper())}


def _size(size: int) -> str:
    """A size as an officer reads it in Vietnamese: "1,2 MB", "350 KB"."""
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB".replace(".", ",")
    return f"{max(1, round(size / 1000))} KB"
