"""Turning submitted fields into a validated tip (`mail.Tip`) or a list of problems shown beside their fields."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from app import receipts
from app.categories import CATEGORIES
from app.i18n import N_
from app.mail import Tip
from app.settings import Post

RECEIPT_FIELD = "receipt"
_RECEIPT_MAX_CHARS = 64
BAD_RECEIPT = N_("This code is not right. Check the 16 digits, or leave it empty to send a new tip.")
WRITE_OR_RECORD = N_("Write what happened, or record your voice.")

# Field → (maximum characters, single line?)
SHORT_FIELDS: dict[str, int] = {"where": 300, "when": 200, "contact": 200}
TEXT_FIELDS = ("what", *SHORT_FIELDS)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"\r\n?|\n")


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with one field, as a msgid with its parameters; shown next to that field.

    `more`: msgids shown after `message`, one sentence each, with the same parameters.
    """

    field: str
    message: str
    params: Mapping[str, int] = dataclasses.field(default_factory=dict)
    more: tuple[str, ...] = ()


def clean_text(value: str, *, multiline: bool) -> str:
    """NFC, no control or bidi-override characters, LF line breaks (or none for one-line fields), trimmed."""
    value = unicodedata.normalize("NFC", value)
    value = _LINE_BREAKS.sub("\n" if multiline else " ", value)
    value = _CONTROL.sub("", value.replace("\t", " "))
    if multiline:
        value = "\n".join(line.rstrip() for line in value.split("\n"))
        value = re.sub(r"\n{3,}", "\n\n", value)
    else:
        value = re.sub(r" {2,}", " ", value)
    return value.strip()


def read_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """The tip's own fields from a submitted form, cleaned (what the form shows back on a problem)."""
    values = {name: clean_text(fields.get(name, ""), multiline=name == "what") for name in TEXT_FIELDS}
    values["category"] = fields.get("category", "").strip()
    values[RECEIPT_FIELD] = clean_text(fields.get(RECEIPT_FIELD, ""), multiline=False)
    return values


def follow_up_code(values: Mapping[str, str]) -> str | None:
    """The canonical receipt code the sender typed to add to an earlier report, or None for a new report."""
    typed = values.get(RECEIPT_FIELD, "")
    return receipts.parse_code(typed) if typed and len(typed) <= _RECEIPT_MAX_CHARS else None


def validate(values: Mapping[str, str], max_text_chars: int, *, attached: bool = False) -> list[Problem]:
    """Problems with the cleaned fields, in form order; an empty list means the tip can be sent.

    `attached`: the sender attached a voice note or a photo, which is then the tip: "what happened" may be empty
    (many residents speak but do not write). A category is still needed; every other rule holds.
    """
    problems: list[Problem] = []
    # The follow-up section comes first on the form once it is open (it is open whenever a code was typed).
    if values.get(RECEIPT_FIELD) and follow_up_code(values) is None:
        problems.append(Problem(RECEIPT_FIELD, BAD_RECEIPT))
    if values.get("category", "") not in CATEGORIES:
        problems.append(Problem("category", N_("Choose what it is about.")))
    what = values.get("what", "")
    if not what and not attached:
        problems.append(Problem("what", WRITE_OR_RECORD))
    elif len(what) > max_text_chars:
        problems.append(Problem("what", N_("Too long: at most %(max)d letters."), {"max": max_text_chars}))
    for name, limit in SHORT_FIELDS.items():
        if len(values.get(name, "")) > limit:
            problems.append(Problem(name, N_("Too long: at most %(max)d letters."), {"max": limit}))
    return problems


def make_tip(
    values: Mapping[str, str],
    post: Post,
    language: str,
    received_at: datetime,
    receipt: str,
    follow_up_to: str | None = None,
    form_key: str = "",
) -> Tip:
    """A `Tip` from fields that `validate` passed; a follow-up has `receipt == follow_up_to`; `form_key` is the
    served form's (its token's nonce), the same each time that form is sent."""
    return Tip(
        post=post,
        category=values["category"],
        what=values["what"],
        where=values.get("where", ""),
        when=values.get("when", ""),
        contact=values.get("contact", ""),
        language=language,
        received_at=received_at,
        receipt=receipt,
        follow_up_to=follow_up_to,
        form_key=form_key,
    )
