"""What a tip can be about: the categories in form order, their labels (msgids) and their digits in receipt codes."""

from __future__ import annotations

from app.i18n import N_

# Slug → label msgid. The order is the order on the form.
CATEGORIES: dict[str, str] = {
    "theft": N_("Theft or robbery"),
    "drugs": N_("Drugs"),
    "weapons": N_("Weapons or explosives"),
    "border": N_("Illegal border crossing or residence"),
    "trafficking": N_("Human trafficking"),
    "smuggling": N_("Smuggling"),
    "other": N_("Something else"),
}

# Each category's digit in receipt codes (hidden under the secret key, see `receipts.new_code`), so a follow-up's
# subject names the first tip's category and threads under it. Never renumber: codes already handed out would
# name the wrong category. A new category takes an unused digit (0-9).
RECEIPT_TAGS: dict[str, int] = {
    "theft": 0, "drugs": 1, "weapons": 2, "border": 3, "trafficking": 4, "smuggling": 5, "other": 6,
}


def category_for_tag(tag: int) -> str | None:
    """The category whose receipt tag is `tag`, or None (no code for any category carries that digit)."""
    return next((slug for slug, digit in RECEIPT_TAGS.items() if digit == tag), None)
