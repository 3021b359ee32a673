"""One submission, start to finish: fields → validated tip → email → SMTP hand-off → what the sender sees."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from app import receipts, tips
from app.delivery import DeliveryError, Mailer
from app.forms import Form
from app.mail import Composer
from app.settings import Post

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """`sent` (with the receipt), `invalid` (with problems) or `failed` (not accepted by the mail server)."""

    status: Literal["sent", "invalid", "failed"]
    values: dict[str, str]
    receipt: str = ""
    problems: list[tips.Problem] = field(default_factory=list)


class Relay:
    """Validates and forwards tips; `mailer` is set once the SMTP target is known (the dev mailbox's port)."""

    def __init__(self, composer: Composer, mailer: Mailer | None, *, max_text_chars: int) -> None:
        self.composer = composer
        self.mailer = mailer
        self.max_text_chars = max_text_chars

    async def submit(self, post: Post, form: Form, language: str) -> Outcome:
        values = tips.read_fields(form.fields)
        problems = tips.validate(values, self.max_text_chars)
        if problems:
            return Outcome("invalid", values, problems=problems)
        receipt = receipts.new_code()
        tip = tips.make_tip(values, post, language, datetime.now(UTC), receipt)
        message = self.composer.compose(tip)
        if self.mailer is None:
            raise RuntimeError("the mailer is not started")
        try:
            await self.mailer.send(message)
        except DeliveryError as exc:
            # One line, the reason only: no content, no receipt, nothing about the sender.
            logger.error("tip for post %s NOT delivered: %s", post.slug, exc.reason)
            return Outcome("failed", values)
        logger.info("tip for post %s delivered", post.slug)
        return Outcome("sent", values, receipt=receipt)
