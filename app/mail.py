"""Composing the officer's email from a `Tip`: fixed headers from configuration, the sender's words in the body only.

The relay sends `Composer.compose_wire`, written straight to bytes by `app.mime`; `Composer.compose` builds the same
message with Python's `email` package, the reference tests/test_mail.py compares the wire form with.
"""

from __future__ import annotations

import email.policy
import email.utils
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Template, pass_eval_context
from jinja2.nodes import EvalContext
from markupsafe import Markup

from app import i18n, mime, receipts, rendering
from app.attachments import Attachment
from app.i18n import N_
from app.tips import CATEGORIES, Tip, category_for_tag

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
SUBJECT_TAG = "[Tin báo]"
# Python 3.11's header folder drops the space at a fold inside encoded words ("Na Cô" → "NaCô"), so the reference
# writes headers unfolded (RFC 5322 allows up to 998 characters; app/mime.py folds them right); bodies are already
# encoded at 76 columns.
_WIRE_POLICY = email.policy.SMTP.clone(max_line_length=998)
# How the email names a file's type, e.g. "Ảnh JPEG", "Ghi âm M4A".
KIND_LABELS = {"photo": N_("Photo %(format)s"), "voice": N_("Voice recording %(format)s")}
_FORMAT_NAMES = {"jpg": "JPEG"}


def serialize(message: EmailMessage) -> bytes:
    """The message as it goes over SMTP: CRLF line ends, headers intact."""
    return message.as_bytes(policy=_WIRE_POLICY)


@dataclass(frozen=True, slots=True)
class Composer:
    """Builds messages From `sender` To the tip's post; `secret` keys the thread ids."""

    sender: str
    secret: bytes
    locales_dir: Path | None = None

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

    def compose(self, tip: Tip, attachments: Sequence[Attachment] = ()) -> EmailMessage:
        """The message for `tip`: a plain-text part, an HTML part, the cleaned files, and no trace of the sender.

        The structure is the one Thunderbird writes and Gmail, Outlook and Apple Mail all show as meant:
        multipart/mixed > [multipart/alternative > [text/plain, multipart/related > [text/html, photos]], voice
        notes]. Each photo is in the HTML part's multipart/related, shown in place through its Content-ID (Gmail,
        Outlook and Thunderbird resolve `cid:` there; Thunderbird only there) and named `photo-N.jpg` so it can be
        saved; it is sent once, not also as a separate attachment, which would double its size and show it twice
        in clients that display attachments inline. Voice notes are ordinary attachments (`voice-N.m4a`).
        """
        return as_message(self.draft(tip, attachments))

    def compose_wire(self, tip: Tip, attachments: Sequence[Attachment] = ()) -> Wire:
        """The same message as `compose`, written straight to its wire form (a tenth of the time), with its envelope.

        An address outside ASCII (an internationalised domain) takes the `email` package's way, as before.
        """
        draft = self.draft(tip, attachments)
        data = as_bytes(draft) if (self.sender + tip.post.mailbox).isascii() else serialize(as_message(draft))
        return Wire(self.sender, (tip.post.mailbox,), data)

    def draft(self, tip: Tip, attachments: Sequence[Attachment] = ()) -> Draft:
        """Everything the message says, before it is written: both `compose` and `compose_wire` write this."""
        plain, html = email_templates(self.locales_dir)
        gettext = i18n.translations(i18n.OFFICER_LANGUAGE, self.locales_dir).gettext
        # Photos are shown in the HTML part; a random Content-ID each, so no two emails share one.
        cids = [
            f"{attachment.filename}.{secrets.token_hex(8)}@{self.domain}" if attachment.kind == "photo" else None
            for attachment in attachments
        ]
        received = tip.received_at.astimezone(VIETNAM)
        filed_under, code_possible = self.report_category(tip)
        context = {
            "tip": tip,
            "category": gettext(tip.category_label),
            "report_category": gettext(CATEGORIES[filed_under]),
            "follow_up": tip.follow_up_to is not None,
            "code_possible": code_possible,
            "received": received.strftime("%d/%m/%Y %H:%M"),
            "sender_language": f"{i18n.language_name(tip.language, self.locales_dir)} ({tip.language})",
            # One entry per file, each with `kind`, `size` (text) and, for an image shown inline, `cid`.
            "attachments": [
                {"kind": _kind(attachment, gettext), "size": _size(len(attachment.data)), "cid": cid}
                for attachment, cid in zip(attachments, cids, strict=True)
            ],
        }
        # Every header comes from configuration or from tipbox itself; nothing typed by the sender.
        headers = [("From", self.sender), ("To", tip.post.mailbox), ("Date", email.utils.format_datetime(received))]
        subject = f"{SUBJECT_TAG} [{context['report_category']}] {tip.post.name} · {tip.receipt}"
        if tip.follow_up_to is None:
            headers += [("Subject", subject), ("Message-ID", receipts.thread_id(tip.receipt, self.secret, self.domain))]
        else:
            # A reply to the first tip, whose Message-ID only the code and the secret key can give.
            first = receipts.thread_id(tip.follow_up_to, self.secret, self.domain)
            headers += [
                ("Subject", f"Re: {subject}"),
                ("Message-ID", f"<{secrets.token_hex(16)}@{self.domain}>"),
                ("In-Reply-To", first),
                ("References", first),
            ]
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


@dataclass(frozen=True, slots=True)
class Draft:
    """A message's headers (name, value), its two texts, and its files, each with a Content-ID if shown inline."""

    headers: tuple[tuple[str, str], ...]
    plain: str
    html: str
    files: tuple[tuple[Attachment, str | None], ...]


@dataclass(frozen=True, slots=True)
class Wire:
    """A message as it goes over SMTP (`data`), with its envelope."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes


def as_message(draft: Draft) -> EmailMessage:
    """`draft` built with Python's `email` package: the reference `as_bytes` is tested against."""
    message = EmailMessage(policy=email.policy.SMTP)
    for name, value in draft.headers:
        message[name] = value
    message.set_content(draft.plain, cte="quoted-printable")
    message.add_alternative(draft.html, subtype="html", cte="quoted-printable")
    html = message.get_body(("html",))
    assert html is not None
    for attachment, cid in draft.files:
        maintype, _, subtype = attachment.content_type.partition("/")
        if cid is not None:
            html.add_related(
                attachment.data, maintype, subtype, cid=f"<{cid}>", disposition="inline", filename=attachment.filename
            )
        else:
            message.add_attachment(attachment.data, maintype, subtype, filename=attachment.filename)
    if html.get_content_type() == "multipart/related":
        html.set_param("type", "text/html")  # RFC 2387: the type of the part the others are related to
    return message


def as_bytes(draft: Draft) -> bytes:
    """`draft` in its wire form, written directly (`app.mime`): the same message as `serialize(as_message(draft))`."""
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

    # Its own globals (the pages' environment keeps Jinja's `_`), and no cache: a template the pages' environment
    # already compiled would come with that environment's globals.
    env = base.overlay(cache_size=0)
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
