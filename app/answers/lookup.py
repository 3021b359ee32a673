"""A resident's receipt code → the answers sealed to it, newest first, opened and forgotten within one request."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from app.answers import keys
from app.answers.bound import DerivationBound
from app.answers.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    """One officer's answer as the resident reads it."""

    at: datetime  # UTC; the page shows it in Vietnam time
    text: str


async def answers_for(code: str, bound: DerivationBound, store: Store) -> list[Answer]:
    """The answers for the canonical `code`, newest first; raises `Busy` or `StoreUnavailable`."""
    pair = await bound.for_lookup(code)
    rows = await store.get(keys.lookup_id(pair.public))
    answers = []
    for row in rows:
        try:
            content = json.loads(keys.unseal(pair, row.sealed))
            answers.append(Answer(datetime.fromtimestamp(float(content["at"]), UTC), str(content["text"])))
        except (keys.SealError, ValueError, KeyError, TypeError):
            # Filed under this code's lookup id but not sealed to it: nothing a resident can read. Say so once.
            logger.warning("answers: a stored answer could not be opened")
    return sorted(answers, key=lambda answer: answer.at, reverse=True)
