"""One officer's reply (RFC 5322 bytes) → a sealed answer in the store, or a drop reason; and the confirmation.

An answer is kept only if it references a Message-ID tipbox made (a valid MAC under the secret key), comes From one
of that post's officers, and says something once the quoted tip is removed. Anything else is dropped with one log
line that names the reason and nothing of the content, and no email goes back (no backscatter to forged senders).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from app import mail
from app.answers import authentication, keys, threads
from app.answers.store import Store
from app.answers.text import reply_text

logger = logging.getLogger(__name__)

# Mails a confirmation: (recipient, wire bytes); the service's mailer, or none in a development run without one.
Send = Callable[[str, bytes], Awaitable[None]]

MAX_MESSAGE_BYTES = 30 * 1024 * 1024
# Answers to answers would loop: anything a program wrote is not an officer's answer (RFC 3834).
_AUTOMATIC = re.compile(r"^\s*(?!no\b)\S", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Kept:
    """An answer stored now (`repeat` False) or before (True), and the confirmation to send for a new one."""

    repeat: bool
    files: int
    confirmation: tuple[str, bytes] | None  # (recipient, wire bytes)


@dataclass(frozen=True, slots=True)
class Dropped:
    """Not an answer; `reason` is safe to log."""

    reason: str


def officer_allowed(address: str, officers: Sequence[str]) -> bool:
    """True if `address` is one of `officers` (exact addresses, or `*@domain` for a whole domain)."""
    address = address.strip().lower()
    _, _, domain = address.rpartition("@")
    for allowed in officers:
        allowed = allowed.strip().lower()
        if address == allowed or (allowed.startswith("*@") and domain == allowed[2:]):
            return True
    return False


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _single_address(value: str | None) -> str | None:
    """The one address in `value` with a local part and a domain, or None."""
    pairs = email.utils.getaddresses([value or ""])
    addresses = [address for _, address in pairs if address]
    if len(addresses) != 1:
        return None
    local, at, domain = addresses[0].rpartition("@")
    return addresses[0] if at and local and domain else None


def _header(message: EmailMessage, name: str) -> str:
    """A header's value as text, or "" for one missing or too broken to read."""
    try:
        values = message.get_all(name) or []
        return " ".join(str(value) for value in values)
    except Exception:  # the email package's header parser raises AttributeError too, on crafted addresses
        return ""


def _raw_headers(message: EmailMessage, name: str) -> list[str]:
    """Every `name` header's value as written (folded, comments kept), top first."""
    return [str(value) for key, value in message.raw_items() if key.lower() == name.lower()]


@dataclass
class Ingestion:
    """Reads replies against the posts' officers and files them in `store`; `send` mails the confirmations."""

    secret: bytes
    officers: Mapping[str, Sequence[str]]  # slug → allowed addresses
    store: Store
    sender: str
    locales_dir: Path | None = None
    clock: Callable[[], float] = time.time
    # The reply mailbox's server (`TIPBOX_ANSWERS_AUTHSERV_ID`): when set, it must vouch for the From domain.
    authserv_id: str | None = None

    def read(self, raw: bytes) -> tuple[EmailMessage, threads.Thread, str] | Dropped:
        """The message, its thread and its officer, or why it is not an answer."""
        if len(raw) > MAX_MESSAGE_BYTES:
            return Dropped("too large")
        try:
            return self._read(parse(raw))
        except Exception:  # the email package is lenient; anything it still cannot read is simply not an answer
            return Dropped("unreadable")

    def _read(self, message: EmailMessage) -> tuple[EmailMessage, threads.Thread, str] | Dropped:
        if _AUTOMATIC.match(_header(message, "Auto-Submitted")):
            return Dropped("automatic (Auto-Submitted)")
        references = [_header(message, "In-Reply-To"), _header(message, "References")]
        if not any(references):
            return Dropped("no thread reference")
        thread = threads.find(references, self.secret)
        if thread is None:
            return Dropped("not a reply to a tipbox message (or its MAC is wrong)")
        # One From header with one address: with two, mail systems disagree about which one they checked.
        officer = _single_address(_header(message, "From")) if len(message.get_all("From") or []) == 1 else None
        allowed = self.officers.get(thread.slug)
        if allowed is None:
            return Dropped("the post is not configured")
        if officer is None or not officer_allowed(officer, allowed):
            return Dropped("From is not one of the post's officers")
        if self.authserv_id is not None and not authentication.authenticated(
            _raw_headers(message, "Authentication-Results"), self.authserv_id, officer
        ):
            return Dropped(f"From not authenticated by {self.authserv_id}")
        return message, thread, officer

    async def take(self, raw: bytes) -> Kept | Dropped:
        """Ingest one message; raises `StoreUnavailable` when it should be retried later."""
        read = self.read(raw)
        if isinstance(read, Dropped):
            logger.info("answers: message dropped: %s", read.reason)
            return read
        message, thread, officer = read
        try:
            reply = reply_text(message)
        except Exception:  # a body the email package cannot walk: not an answer (retrying would not change it)
            logger.info("answers: message dropped: unreadable body")
            return Dropped("unreadable body")
        if not reply.text:
            logger.info("answers: message dropped: no new text in the reply")
            return Dropped("no new text")
        sealed = keys.seal(
            # To the millisecond, inside the sealed box: two answers in the same second still read newest first.
            thread.public, json.dumps({"at": round(self.clock(), 3), "text": reply.text}, ensure_ascii=False).encode()
        )
        # The answer's own Message-ID (or, without one, its bytes) makes storing it idempotent.
        identity = (_header(message, "Message-ID").strip() or raw.decode("latin-1")).encode("utf-8", "replace")
        dedupe = keys.keyed_hash(self.secret, "answer-dedupe", identity)
        stored = await self.store.put(keys.lookup_id(thread.public), sealed, dedupe)
        if not stored:
            logger.info("answers: answer already stored (collected again)")
            return Kept(repeat=True, files=reply.files, confirmation=None)
        logger.info("answers: answer stored%s", f" ({reply.files} files not passed on)" if reply.files else "")
        note = self.confirmation(message, officer, reply.files)
        return Kept(repeat=False, files=reply.files, confirmation=None if note is None else (officer, note))

    def confirmation(self, answer: EmailMessage, officer: str, files: int) -> bytes | None:
        """The officer's note for a stored answer (`app.mail` writes it), or None if it cannot be written."""
        try:
            return mail.confirmation(
                self.sender, officer, subject=_header(answer, "Subject"), answer_id=_header(answer, "Message-ID"),
                references=_header(answer, "References"), files=files, at=self.clock(), locales_dir=self.locales_dir,
            )
        except Exception as exc:  # e.g. an address outside ASCII: the answer is stored, only the note is not sent
            logger.warning("answers: confirmation not written (%s)", type(exc).__name__)
            return None
