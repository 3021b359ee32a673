"""The words on a poster: each language's texts from the catalogs, a font that can draw every letter of them, and
text fitted into a box (the largest size at which it wraps into it, lines balanced)."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont

from app import i18n
from app.i18n import N_
from app.poster.choices import PosterError

TITLE = N_("Online tip box — no name needed")
STEPS = (N_("Scan the code with Zalo or the camera"), N_("Write or say what you saw"), N_("Press Send"))
PROMISE = N_("No name, no login. Nobody will know who sent it.")
TYPE_ADDRESS = N_("Or type this address:")

LEADING = 1.18  # line height, in font sizes
PT = 25.4 / 72  # one point in millimetres
_PACKAGED_FONTS = ("Be Vietnam Pro", "Noto Sans")  # fontpkg-be-vietnam-pro, fontpkg-noto-sans on PyPI
_SYSTEM_FONTS = ((Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
                  Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")),)
_INSTALL_FONT = "pip install fontpkg-be-vietnam-pro (or apt-get install fonts-dejavu-core), or pass --font FILE.ttf"


@dataclass(frozen=True, slots=True)
class Texts:
    """Everything printed in one language, from the gettext catalogs (an operator's override included)."""

    lang: str
    name: str  # the language's own name, beside its code on a sheet of two languages
    title: str
    steps: tuple[str, str, str]
    promise: str
    type_address: str

    @classmethod
    def load(cls, lang: str, overrides: Path | None) -> Texts:
        gettext = i18n.translations(lang, overrides).gettext

        def text(msgid: str) -> str:
            # Precomposed letters: reportlab places glyphs one by one and cannot stack combining marks.
            return unicodedata.normalize("NFC", gettext(msgid)).strip()

        first, second, third = (text(step) for step in STEPS)
        name = unicodedata.normalize("NFC", i18n.language_name(lang, overrides))
        return cls(lang, name, text(TITLE), (first, second, third), text(PROMISE), text(TYPE_ADDRESS))

    def all(self) -> tuple[str, ...]:
        return (self.name, self.title, *self.steps, self.promise, self.type_address)


@dataclass(frozen=True, slots=True)
class Fonts:
    regular: str
    bold: str

    def check(self, texts: Sequence[str]) -> None:
        """Refuse any character the font cannot draw, before anything is drawn (no empty boxes on paper)."""
        for name in (self.regular, self.bold):
            font = pdfmetrics.getFont(name)
            for text in texts:
                for char in text:
                    if not char.isspace() and ord(char) not in font.face.charToGlyph:
                        raise PosterError(
                            f"font {font.face.filename} has no letter {char!r} (U+{ord(char):04X}, in {text!r}): "
                            + _INSTALL_FONT
                        )


@cache
def _register(path: Path) -> str:
    # reportlab's font registry is global: a name per file, so two fonts with the same file name never clash.
    name = f"tipbox-{path.stem}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
    try:
        pdfmetrics.registerFont(TTFont(name, str(path)))
    except (OSError, TTFError) as exc:
        raise PosterError(f"cannot use font {path}: {exc}") from exc
    return name


def _packaged_font(family: str) -> tuple[Path, Path] | None:
    try:
        import fontpkg

        return fontpkg.path(family, 400), fontpkg.path(family, 700)
    except (ImportError, LookupError, ValueError):  # fontpkg's errors are LookupErrors: not installed
        return None


def find_fonts(explicit: Path | None = None) -> Fonts:
    """`explicit` for everything, else the first of Be Vietnam Pro, Noto Sans (PyPI) or DejaVu Sans (Debian)."""
    if explicit is not None:
        if not explicit.is_file():
            raise PosterError(f"font file {explicit} not found")
        name = _register(explicit)
        return Fonts(name, name)
    candidates = [_packaged_font(family) for family in _PACKAGED_FONTS] + list(_SYSTEM_FONTS)
    for pair in candidates:
        if pair is not None and pair[0].is_file() and pair[1].is_file():
            return Fonts(_register(pair[0]), _register(pair[1]))
    raise PosterError(f"no font for Vietnamese and Hmong found: {_INSTALL_FONT}")


def wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """`text` broken into lines no wider than `width` (a single word wider than that stays on its own line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and pdfmetrics.stringWidth(f"{lines[-1]} {word}", font, size) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def fit(text: str, font: str, size: float, smallest: float, width: float, height: float) -> tuple[float, list[str]]:
    """The largest size (points) from `size` down to `smallest` at which `text` wraps into the box (mm): the size
    in millimetres and the lines."""
    while True:
        em = size * PT
        lines = wrap(text, font, em, width)
        widest = max((pdfmetrics.stringWidth(line, font, em) for line in lines), default=0.0)
        if widest <= width and len(lines) * em * LEADING <= height + 0.01:
            return em, _balance(text, font, em, width, len(lines))
        if size <= smallest:
            raise PosterError(f"{text!r} does not fit on the sheet even at {smallest} pt: shorten it in the catalog")
        size = max(smallest, size - 0.5)


def _balance(text: str, font: str, em: float, width: float, count: int) -> list[str]:
    """The same number of lines, as even as they go: no lone word left on the last line."""
    narrow, wide = width / count, width
    for _ in range(12):  # bisect for the narrowest measure that still needs no more lines
        middle = (narrow + wide) / 2
        lines = wrap(text, font, em, middle)
        fits = all(pdfmetrics.stringWidth(line, font, em) <= middle for line in lines)
        narrow, wide = (narrow, middle) if fits and len(lines) <= count else (middle, wide)
    return wrap(text, font, em, wide)
