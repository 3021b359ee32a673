"""One submission, start to finish: fields → validated tip → cleaned files → email → SMTP hand-off → what the
sender sees."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from app import receipts, tips
from app.answers.bound import DerivationBound
from app.attachments import TOO_LARGE, AttachmentError, Busy, Cleaner, Upload
from app.categories import CATEGORIES, RECEIPT_TAGS
from app.delivery import DeliveryError, Mailer
from app.guard import Guard, Screening, Ticket
from app.i18n import N_
from app.mail import Composer
from app.metrics import UNKNOWN_CATEGORY, Metrics
from app.settings import Post

logger = logging.getLogger(__name__)

# A refused file is named by its position among the files sent (never by its name), at its input. A browser cannot
# fill a file input back in, so every form given back after files were chosen asks to choose them again.
FILE_POSITION = N_("File %(position)d:")
FILES_AGAIN = N_("The files were not sent: please choose them again.")
FILE_INPUTS = ("photo", "voice")


@dataclass(slots=True)
class Form:
    """A submitted form as `app.forms` read it: the text fields (last value wins) and the uploads, in the order they
    arrived.

    `over_budget`: the memory budget for uploads was full, so the files were dropped while the text was kept.
    `too_large`: the body was over its limit, so the files were dropped while the text was kept.
    `dropped`: the inputs whose files were dropped, in the order they came.
    """

    fields: dict[str, str] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    over_budget: bool = False
    too_large: bool = False
    dropped: list[str] = field(default_factory=list)

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a submission. Three end on the success page with a `receipt`: `delivered` (the mail server
    accepted the tip), `repeat` (this form was delivered before with the same content: its first receipt, nothing
    sent again) and `decoy` (a bot's: a made-up receipt, nothing sent). The others give the form back: `invalid`
    and `too_large` (the body was over its limit and its files were dropped) with `problems`; `failed` (not
    accepted by the mail server), `unconfirmed` (handed to the mail server, which never answered: it may have
    arrived), `expired` (open too long, or signed with another key), `changed` (this form was sent before with
    other content), `limited` (a rate limit) and `busy` (no memory left for files) with a notice; so do the mail
    server's refusals for good, which sending again cannot change: `too_large_to_mail` (the email was too big for
    it: fewer or smaller files may go) and `refused` (the post cannot receive tips for now); and `unavailable` (the
    guard's storage did not answer: nothing was sent, and sending again may work).
    A form given back carries `token`, and `files_again` when the sender's files must be chosen again."""

    status: Literal[
        "delivered", "repeat", "decoy", "invalid", "failed", "unconfirmed", "expired", "changed", "limited", "busy",
        "too_large", "too_large_to_mail", "refused", "unavailable",
    ]
    values: dict[str, str]
    receipt: str = ""
    problems: list[tips.Problem] = field(default_factory=list)
    token: str = ""
    files_again: bool = False


class Relay:
    """Validates and forwards tips; `mailer` is set once the SMTP target is known (the dev mailbox's port)."""

    def __init__(
        self, composer: Composer, mailer: Mailer | None, *, max_text_chars: int, guard: Guard, cleaner: Cleaner,
        answers: DerivationBound | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.answers = answers  # answers on: each tip's code gets its key pair (tens of ms, in a worker thread)
        self.composer = composer
        self.mailer = mailer
        self.max_text_chars = max_text_chars
        self.guard = guard
        self.cleaner = cleaner
        self.metrics = metrics

    async def submit(self, post: Post, form: Form, language: str, source: str | None = None) -> Outcome:
        """Take one submission to its end; what became of it is counted (by post, category and reason only)."""
        outcome = await self._submit(post, form, language, source)
        if self.metrics is not None:
            _count(self.metrics, post.slug, outcome)
        return outcome

    def _timed(self, started: float, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.smtp_seconds.labels(outcome).observe(time.perf_counter() - started)

    async def _submit(self, post: Post, form: Form, language: str, source: str | None) -> Outcome:
        # Bots get the page people get (with a decoy receipt), before anything is read; an expired form (or one
        # whose token another key signed) comes back with a fresh token.
        check = self.guard.screen(post, form.fields)
        if check.status == "decoy" and not check.nonce:
            return Outcome("decoy", {}, receipt=check.receipt)
        values = tips.read_fields(form.fields)
        had_files = bool(form.uploads)
        if check.status == "decoy":  # a bot's form with a token of ours: answered as its first sending was
            ticket = await self.guard.admit(post, check, values, form.uploads, source)
            return self._answer(ticket, values, check, had_files)
        if check.status != "ok":
            return Outcome(check.status, values, token=check.token)
        if form.too_large:
            # The files are gone; the text is not: every problem at once, the files' at their inputs.
            problems = tips.validate(values, self.max_text_chars, attached=bool(form.dropped))
            problems += dropped_problems(form.dropped, self.cleaner)
            return Outcome("too_large", values, problems=problems, token=check.token)
        if form.over_budget:
            return Outcome("busy", values, token=check.token)
        # Every problem at once: the text's, and the files' that need no decoding (how many, how big, what).
        problems = tips.validate(values, self.max_text_chars, attached=bool(form.uploads))
        try:
            self.cleaner.check(form.uploads)
        except AttachmentError as error:
            problems += file_problems(form.uploads, error)
        else:
            problems += file_problems(form.uploads) if problems else []
        if problems:
            return Outcome("invalid", values, problems=problems, token=check.token)
        # A follow-up keeps the code the sender typed; a new report gets a code carrying its category (hidden), made
        # from the token's nonce and the text: the same form sent again gets the same code, and no store holds one.
        follow_up_to = tips.follow_up_code(values)
        tag = RECEIPT_TAGS[values["category"]]
        seed = self.guard.receipt_seed(post, values, check.nonce)
        receipt = follow_up_to or receipts.new_code(tag, self.composer.secret, seed=seed)
        ticket = await self.guard.admit(post, check, values, form.uploads, source, receipt)
        if ticket.status != "send":
            return self._answer(ticket, values, check, had_files)
        # Sent again after an unconfirmed hand-off, the form keeps its token: the next Send keeps its receipt too.
        token = check.sent if ticket.again else check.token
        result: Literal["delivered", "unconfirmed", "failed"] = "failed"
        try:
            # Decoding and re-encoding runs after the rate limits, so a flood cannot spend the CPU on it.
            try:
                attachments = await self.cleaner.clean(form.uploads)
            except AttachmentError as error:
                return Outcome("invalid", values, problems=file_problems(form.uploads, error), token=token)
            except Busy:  # a decode's memory does not fit in the upload budget now: as when the uploads did not
                return Outcome("busy", values, token=token)
            form.uploads.clear()  # the originals are not needed any more: their memory is free before the email's
            tip = tips.make_tip(values, post, language, datetime.now(UTC), ticket.receipt, follow_up_to, ticket.nonce)
            # Only now, past the guard's limits: the derivation is the costly step a flood must not reach.
            answer_key = (await self.answers.for_tip(ticket.receipt)).public if self.answers is not None else None
            message = self.composer.compose(tip, attachments, answer_key=answer_key)
            del attachments  # the email holds them now: no second copy while it is handed over
            if self.mailer is None:
                raise RuntimeError("the mailer is not started")
            # Only a tip handed to the mail server counts against the post's limit (a refused file does not).
            spent = await self.guard.spend(post, ticket)
            if spent != "send":
                refused: Literal["unavailable", "limited"] = "unavailable" if spent == "failed" else "limited"
                return Outcome(refused, values, token=token, files_again=had_files)
            started = time.perf_counter()
            try:
                await self.mailer.send(message)
            except DeliveryError:
                self._timed(started, "failed")
                raise
            self._timed(started, "delivered")
            result = "delivered"
        except DeliveryError as exc:
            # One line, the reason only: no content, no receipt, nothing about the sender.
            if exc.handed_over:
                result = "unconfirmed"
                logger.error("tip for post %s handed over, NOT confirmed: %s", post.slug, exc.reason)
                return Outcome("unconfirmed", values, token=check.sent, files_again=had_files)
            logger.error("tip for post %s NOT delivered: %s", post.slug, exc.reason)
            # Refused for good: sending the same again cannot work, so the sender is told what can.
            if exc.transient:
                return Outcome("failed", values, token=token, files_again=had_files)
            refusal: Literal["too_large_to_mail", "refused"] = "too_large_to_mail" if exc.too_large and had_files \
                else "refused"
            return Outcome(refusal, values, token=token, files_again=had_files)
        finally:
            await self.guard.settle(ticket, result)
        logger.info("tip for post %s delivered", post.slug)
        return Outcome("delivered", values, receipt=ticket.receipt)

    @staticmethod
    def _answer(ticket: Ticket, values: dict[str, str], check: Screening, had_files: bool) -> Outcome:
        """The answer to a form not sent now: its first sending's receipt, a decoy's, or the form back. When the
        guard could not decide (its storage did not answer) nothing was sent, and sending again may work."""
        if ticket.status in ("repeat", "decoy"):
            return Outcome(ticket.status, values, receipt=ticket.receipt)
        status: Literal["changed", "limited", "unavailable"] = "unavailable" if ticket.status == "failed" else (
            "changed" if ticket.status == "changed" else "limited"
        )
        return Outcome(status, values, token=check.token, files_again=had_files)


# What each outcome is counted as: a counter of its own, or a reason tips were refused for (app/metrics.py).
_REFUSED = {"invalid": "invalid", "too_large": "too_large", "busy": "busy", "expired": "expired", "changed": "changed",
            "failed": "mail_transient", "too_large_to_mail": "mail_too_large", "refused": "mail_refused",
            "unavailable": "unavailable", "unconfirmed": "mail_unconfirmed"}


def _count(metrics: Metrics, post: str, outcome: Outcome) -> None:
    if outcome.status == "delivered":
        metrics.delivered.labels(post, outcome.values["category"]).inc()
    elif outcome.status == "decoy":
        metrics.decoys.labels(post).inc()
    elif outcome.status == "repeat":
        metrics.repeats.labels(post).inc()
    elif outcome.status == "limited":
        metrics.rate_limited.labels(post).inc()
    else:
        category = outcome.values.get("category", "")
        category = category if category in CATEGORIES else UNKNOWN_CATEGORY
        metrics.refused.labels(post, category, _REFUSED[outcome.status]).inc()


def file_problems(uploads: list[Upload], error: AttachmentError | None = None) -> list[tips.Problem]:
    """One problem for each file input that sent files: the refused file's (by position) or "choose them again"."""
    inputs = dict.fromkeys(_input(upload.field) for upload in uploads)
    if error is None:
        return [tips.Problem(name, FILES_AGAIN) for name in inputs]
    refused = _input(uploads[error.position - 1].field) if error.position <= len(uploads) else FILE_INPUTS[0]
    inputs.setdefault(refused)
    params = {**error.params, "position": error.position}
    return [
        tips.Problem(name, FILE_POSITION, params, more=(error.reason, FILES_AGAIN))
        if name == refused
        else tips.Problem(name, FILES_AGAIN)
        for name in inputs
    ]


def dropped_problems(dropped: list[str], cleaner: Cleaner) -> list[tips.Problem]:
    """The body was too large: "too big" at the first input that sent files, "choose them again" at each."""
    inputs = list(dict.fromkeys(_input(name) for name in dropped)) or [FILE_INPUTS[0]]
    params = cleaner.too_large_params()
    return [
        tips.Problem(inputs[0], TOO_LARGE, params, more=(FILES_AGAIN,)),
        *(tips.Problem(name, FILES_AGAIN) for name in inputs[1:]),
    ]


def _input(field: str) -> str:
    """The form's file input a part came from (a hand-made request may name another)."""
    return field if field in FILE_INPUTS else FILE_INPUTS[0]
