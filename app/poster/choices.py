"""What to print and where its codes lead: the options of a poster, and the form's address in each language."""

from __future__ import annotations

import re
from dataclasses import dataclass

from reportlab.lib.pagesizes import A3, A4, A5

from app.settings import Post, Settings

SIZES = {"A4": A4, "A3": A3, "A5": A5}
# The languages a poster is printed in (the texts come from these catalogs); "both" is Vietnamese and Hmong.
LANGUAGES = ("vi", "hmn", "both")
BOTH = ("vi", "hmn")
LAYOUTS = ("poster", "cards")
_ALPHANUMERIC = re.compile(r"[0-9A-Z $%*+\-./:]+")


class PosterError(Exception):
    """A poster cannot be made; the message is one line saying why and what to do."""


@dataclass(frozen=True, slots=True)
class Choice:
    """What to print: `lang` is vi, hmn or both; `size` A4, A3 or A5; `layout` poster or cards."""

    lang: str
    size: str
    layout: str

    @classmethod
    def parse(cls, post: Post, lang: str | None, size: str | None, layout: str | None) -> Choice:
        """Validate the options (case-insensitively); a wrong one raises ValueError naming it."""
        lang = (lang or default_language(post)).lower()
        size, layout = (size or "A4").upper(), (layout or "poster").lower()
        for value, allowed in ((lang, LANGUAGES), (size, tuple(SIZES)), (layout, LAYOUTS)):
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return cls(lang, size, layout)

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages on the sheet, in print order; each has its own code."""
        return BOTH if self.lang == "both" else (self.lang,)

    def filename(self, post: Post) -> str:
        return f"tipbox-{self.layout}-{post.slug}-{self.lang}-{self.size}.pdf"


def default_language(post: Post) -> str:
    """Both languages where the post offers both, else its own default (Vietnamese if that has no layout)."""
    if set(BOTH) <= set(post.languages):
        return "both"
    return post.default_language if post.default_language in LANGUAGES else "vi"


def form_url(settings: Settings, post: Post, lang: str) -> str:
    """What a code encodes: the post's form in `lang`, in capitals when QR alphanumeric mode can hold it.

    The language is in the address, so a Hmong poster opens the Hmong form on a phone set to Vietnamese. Capitals
    make a smaller code (5.5 bits a character instead of 8); only a URL without a path prefix is capitalised: scheme
    and host are case-insensitive, and the service routes `/P/{SLUG}/{LANG}` as `/p/{slug}/{lang}`, but a reverse
    proxy's prefix may not be.
    """
    url = f"{settings.base_url}/p/{post.slug}/{lang}"
    bare = re.sub(r"^https?://", "", settings.base_url, flags=re.IGNORECASE)
    if "/" not in bare and _ALPHANUMERIC.fullmatch(url.upper()):
        return url.upper()
    return url


def address(settings: Settings, post: Post, lang: str) -> str:
    """The form's address as printed under its code, for typing by hand (no `https://`, small letters)."""
    return re.sub(r"^https://", "", f"{settings.base_url}/p/{post.slug}/{lang}", flags=re.IGNORECASE)


def alphanumeric(text: str) -> bool:
    """Whether QR alphanumeric mode can hold `text`."""
    return _ALPHANUMERIC.fullmatch(text) is not None
