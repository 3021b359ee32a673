"""Composing the officer's email from a `Tip`: fixed headers from configuration, the sender's words in the body only."""

from __future__ import annotations

import email.policy
import email.utils
import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from app import i18n, receipts, rendering
from app.tips import CATEGORIES, Tip, category_for_tag

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
SUBJECT_TAG = "[Tin báo]"
# Python 3.11's header folder drops the space at a fold inside encoded words ("Na Cô" → "NaCô"), so headers
# are written unfolded (RFC 5322 allows up to 998 characters); bodies are already encoded at 76 columns.
_WIRE_POLICY = email.policy.SMTP.clone(max_line_length=998)


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

    def compose(self, tip: Tip) -> EmailMessage:
        """The message for `tip`: a plain-text part, an HTML part, and no trace of the sender."""
        env = rendering.environment(i18n.OFFICER_LANGUAGE, self.locales_dir)
        gettext = i18n.translations(i18n.OFFICER_LANGUAGE, self.locales_dir).gettext
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
            # Filled by the attachments step: one entry per file, each with `kind`, `size` (text) and, for an
            # image shown inline, `cid`. The templates render nothing while it is empty.
            "attachments": [],
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
        return message
