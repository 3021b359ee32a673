"""`tipbox answer`: one message on standard input from the MTA (a Postfix `pipe` transport or an alias).

Exit codes follow sysexits.h, which Postfix's pipe(8) and local(8) read: 0 for a stored answer and also for a
dropped message (a bounce would be backscatter to a forged sender), 75 (EX_TEMPFAIL) when the store cannot be
written now or the system failed (an OSError), so the MTA keeps the message and tries again later. Any other error
would fail the same way on every retry: it is logged and the message dropped (0).
"""

from __future__ import annotations

import logging
from typing import BinaryIO

from app.answers.ingest import MAX_MESSAGE_BYTES, Dropped, Ingestion, Send
from app.answers.store import StoreUnavailable

logger = logging.getLogger(__name__)

EX_OK = 0
EX_TEMPFAIL = 75


def read_message(stream: BinaryIO) -> bytes:
    """Standard input, up to one byte past the largest message ingestion takes (which it then drops)."""
    return stream.read(MAX_MESSAGE_BYTES + 1)


async def answer(raw: bytes, ingestion: Ingestion, send: Send | None) -> int:
    """Ingest `raw`; send the confirmation; return the exit code for the MTA."""
    try:
        outcome = await ingestion.take(raw)
    except StoreUnavailable as exc:
        logger.warning("answers: store unavailable (%s); the MTA will try again", exc)
        return EX_TEMPFAIL
    except OSError as exc:
        logger.warning("answers: could not ingest the message (%s); the MTA will try again", type(exc).__name__)
        return EX_TEMPFAIL
    except Exception as exc:
        # Not the store, not the system: the same bytes would fail again on every retry, and the MTA would end by
        # bouncing them to whoever wrote the envelope, a forger as likely as an officer (backscatter).
        logger.error("answers: message dropped: could not ingest it (%s)", type(exc).__name__)
        return EX_OK
    if isinstance(outcome, Dropped) or outcome.confirmation is None or send is None:
        return EX_OK
    recipient, data = outcome.confirmation
    try:
        await send(recipient, data)
    except Exception as exc:  # the answer is stored: retrying the whole message would only store it again
        logger.warning("answers: confirmation not sent (%s)", getattr(exc, "reason", type(exc).__name__))
    return EX_OK
