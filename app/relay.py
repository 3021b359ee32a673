"""One submission, start to finish: fields → validated tip → email → SMTP hand-off → what the sender sees."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from app import receipts, tips
from app.delivery import DeliveryError, Mailer
from app.forms import Form
from app.guard import Guard
from app.mail import Composer
from app.settings import Post

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """`sent` (with the receipt), `invalid` (with problems), `failed` (not accepted by the mail server), `expired`
    (the form was open too long) or `limited` (a rate limit). A form given back carries `token`."""

    status: Literal["sent", "invalid", "failed", "expired", "limited"]
    values: dict[str, str]
    receipt: str = ""
    problems: list[tips.Problem] = field(default_factory=list)
    token: str = ""


class Relay:
    """Validates and forwards tips; `mailer` is set once the SMTP target is known (the dev mailbox's port)."""

    def __init__(self, composer: Composer, mailer: Mailer | None, *, max_text_chars: int, guard: Guard) -> None:
        self.composer = composer
        self.mailer = mailer
        self.max_text_chars = max_text_chars
        self.guard = guard

    async def submit(self, post: Post, form: Form, language: str, source: str | None = None) -> Outcome:
        values = tips.read_fields(form.fields)
        # Bots get the page people get (with a decoy receipt); an expired form comes back with a fresh token.
        check = self.guard.screen(post, form.fields)
        if check.status != "ok":
            return Outcome(check.status, values, receipt=check.receipt, token=check.token)
        problems = tips.validate(values, self.max_text_chars)
        if problems:
            return Outcome("invalid", values, problems=problems, token=check.token)
        # A follow-up keeps the code the sender typed; a new report gets a code carrying its category (hidden).
        follow_up_to = tips.follow_up_code(values)
        receipt = follow_up_to or receipts.new_code(tips.RECEIPT_TAGS[values["category"]], self.composer.secret)
        ticket = await self.guard.admit(post, check, values, form.uploads, source, receipt)
        if ticket.status != "send":
            return Outcome(ticket.status, values, receipt=ticket.receipt, token=check.token)
        delivered = False
        try:
            tip = tips.make_tip(values, post, language, datetime.now(UTC), receipt, follow_up_to)
            message = self.composer.compose(tip)
            if self.mailer is None:
                raise RuntimeError("the mailer is not started")
            await self.mailer.send(message)
            delivered = True
        except DeliveryError as exc:
            # One line, the reason only: no content, no receipt, nothing about the sender.
            logger.error("tip for post %s NOT delivered: %s", post.slug, exc.reason)
            return Outcome("failed", values, token=check.token)
        finally:
            await self.guard.settle(ticket, delivered=delivered)
        logger.info("tip for post %s delivered", post.slug)
        return Outcome("sent", values, receipt=receipt)
