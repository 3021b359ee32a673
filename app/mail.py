"""Composing the officer's email from a `Tip`: fixed headers from configuration, the sender's words in the body only."""

from __future__ import annotations

import email.policy
import email.utils
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from app import i18n, receipts, rendering
from app.attachments import Attachment
from app.i18n import N_
from app.tips import CATEGORIES, Tip, category_for_tag

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
SUBJECT_TAG = "[Tin báo]"
# Python 3.11's header folder drops the space at a fold inside encoded words ("Na Cô" → "NaCô"), so headers
# are written unfolded (RFC 5322 allows up to 998 characters); bodies are already encoded at 76 columns.
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
        env = rendering.environment(i18n.OFFICER_LANGUAGE, self.locales_dir)
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
        message = EmailMessage(policy=email.policy.SMTP)
        # Every header comes from configuration or from tipbox itself; nothing typed by the sender.
        message["From"] = self.sender
        message["To"] = tip.post.mailbox
        subject = f"{SUBJECT_TAG} [{context['report_category']}] {tip.post.name} · {tip.receipt}"
        message["Date"] = email.utils.format_datetime(received)
        if tip.follow_up_to is None:
            message["Subject"] = subject
            message["Message-ID"] = receipts.thread_id(tip.receipt, self.secret, self.domain)
        else:
            # A reply to the first tip, whose Message-ID only the code and the secret key can give.
            first = receipts.thread_id(tip.follow_up_to, self.secret, self.domain)
            message["Subject"] = f"Re: {subject}"
            message["Message-ID"] = f"<{secrets.token_hex(16)}@{self.domain}>"
            message["In-Reply-To"] = first
            message["References"] = first
        message["X-Tipbox-Kind"] = "follow-up" if tip.follow_up_to else "tip"
        message["X-Tipbox-Receipt"] = tip.receipt
        message["X-Tipbox-Category"] = filed_under
        message["X-Tipbox-Post"] = tip.post.slug
        message["X-Tipbox-Language"] = tip.language
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(env.get_template("email/tip.txt").render(context), cte="quoted-printable")
        message.add_alternative(
            env.get_template("email/tip.html").render(context), subtype="html", cte="quoted-printable"
        )
        html = message.get_body(("html",))
        assert html is not None
        for attachment, cid in zip(attachments, cids, strict=True):
            maintype, _, subtype = attachment.content_type.partition("/")
            if cid is not None:
                html.add_related(
                    attachment.data, maintype, subtype, cid=f"<{cid}>", disposition="inline",
                    filename=attachment.filename,
                )  # fmt: skip
            else:
                message.add_attachment(attachment.data, maintype, subtype, filename=attachment.filename)
        if html.get_content_type() == "multipart/related":
            html.set_param("type", "text/html")  # RFC 2387: the type of the part the others are related to
        return message


def _kind(attachment: Attachment, gettext: Callable[[str], str]) -> str:
    extension = attachment.filename.rpartition(".")[2]
    return gettext(KIND_LABELS[attachment.kind]) % {"format": _FORMAT_NAMES.get(extension, extension.upper())}


def _size(size: int) -> str:
    """A size as an officer reads it in Vietnamese: "1,2 MB", "350 KB"."""
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB".replace(".", ",")
    return f"{max(1, round(size / 1000))} KB"
