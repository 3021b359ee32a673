"""Composing the officer's email from a `Tip`: fixed headers from configuration, the sender's words in the body only."""

from __future__ import annotations

import email.policy
import email.utils
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from app import i18n, rendering, receipts
from app.tips import Tip

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
SUBJECT_TAG = "[Tin báo]"


@dataclass(frozen=True, slots=True)
class Composer:
    """Builds messages From `sender` To the tip's post; `secret` keys the thread ids."""

    sender: str
    secret: bytes
    locales_dir: Path | None = None

    @property
    def domain(self) -> str:
        return self.sender.rpartition("@")[2] or "localhost"

    def compose(self, tip: Tip) -> EmailMessage:
        """The message for `tip`: a plain-text part, an HTML part, and no trace of the sender."""
        env = rendering.environment(i18n.OFFICER_LANGUAGE, self.locales_dir)
        gettext = i18n.translations(i18n.OFFICER_LANGUAGE, self.locales_dir).gettext
        received = tip.received_at.astimezone(VIETNAM)
        context = {
            "tip": tip,
            "category": gettext(tip.category_label),
            "received": received.strftime("%d/%m/%Y %H:%M"),
            "sender_language": f"{i18n.language_name(tip.language, self.locales_dir)} ({tip.language})",
        }
        message = EmailMessage(policy=email.policy.SMTP)
        # Every header comes from configuration or from tipbox itself; nothing typed by the sender.
        message["From"] = self.sender
        message["To"] = tip.post.mailbox
        message["Subject"] = f"{SUBJECT_TAG} {context['category']} · {tip.post.name} · {tip.receipt}"
        message["Date"] = email.utils.format_datetime(received)
        message["Message-ID"] = receipts.thread_id(tip.receipt, self.secret, self.domain)
        message["X-Tipbox-Category"] = tip.category
        message["X-Tipbox-Post"] = tip.post.slug
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(env.get_template("email/tip.txt").render(context), cte="quoted-printable")
        message.add_alternative(
            env.get_template("email/tip.html").render(context), subtype="html", cte="quoted-printable"
        )
        return message
