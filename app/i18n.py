"""Languages: the gettext catalogs shipped in app/locales, an operator's overrides, and choosing one per request.

Hmong (`hmn`, RPA orthography) has no Latin-script locale in Babel's CLDR data, so nothing here goes through
`babel.Locale`: catalogs are plain gettext, read from `.mo` files or compiled from `.po` in memory.
"""

from __future__ import annotations

import gettext
import io
import logging
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # Babel is loaded only to compile a .po in memory (an operator's, or one newer than its .mo)
    from babel.messages.catalog import Catalog

logger = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).parent / "locales"
DOMAIN = "messages"
OFFICER_LANGUAGE = "vi"
# Every date a person reads (the officer's email, the resident's pages) is in Vietnam's time.
VIETNAM_TIME = ZoneInfo("Asia/Ho_Chi_Minh")
# Other codes a phone may send for the same language.
_ALIASES = {"hnj": "hmn", "mww": "hmn", "blu": "hmn", "hmv": "hmn"}


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated where it is shown."""
    return message


# Each catalog translates this to the language's own name, shown on the language switch.
LANGUAGE_NAME = N_("language-name")


def _po_paths(directory: Path) -> dict[str, Path]:
    """Catalogs in `directory`, as `<lang>/LC_MESSAGES/messages.po` or a flat `<lang>.po`."""
    found: dict[str, Path] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        found[path.parent.parent.name] = path
    for path in sorted(directory.glob("*.po")):
        found[path.stem] = path
    return found


def available_languages(overrides: Path | None = None) -> frozenset[str]:
    """Every language with a catalog, shipped or dropped into the overrides directory."""
    languages = set(_po_paths(BUILTIN_DIR))
    if overrides is not None:
        languages |= set(_po_paths(overrides))
    return frozenset(languages)


def _read_catalog(path: Path) -> Catalog:
    from babel.messages.pofile import read_po

    with path.open("rb") as handle:
        return read_po(handle, domain=DOMAIN)


def _compile(catalog: Catalog) -> gettext.GNUTranslations:
    from babel.messages.mofile import write_mo

    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def _builtin(language: str) -> gettext.GNUTranslations | None:
    po = _po_paths(BUILTIN_DIR).get(language)
    if po is None:
        return None
    mo = po.with_suffix(".mo")
    # `make` compiles the .mo; a .po edited since is compiled in memory so the two never disagree.
    if mo.is_file() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as handle:
            return gettext.GNUTranslations(handle)
    return _compile(_read_catalog(po))


@cache
def translations(language: str, overrides: Path | None = None) -> gettext.NullTranslations:
    """The catalog for `language`: the operator's `.po` (if any) first, then the shipped one, then English."""
    result: gettext.NullTranslations = gettext.NullTranslations()
    builtin = _builtin(language)
    if builtin is not None:
        result = builtin
    if overrides is not None:
        po = _po_paths(overrides).get(language)
        if po is not None:
            custom = _compile(_read_catalog(po))
            custom.add_fallback(result)
            result = custom
            logger.info("language %s: strings from %s override the shipped catalog", language, po)
    return result


def language_name(language: str, overrides: Path | None = None) -> str:
    """The language's name in itself ("Tiếng Việt", "Hmoob"), from its own catalog."""
    name = translations(language, overrides).gettext(LANGUAGE_NAME)
    return language if name == LANGUAGE_NAME else name


def choose(requested: str | None, accept_language: str | None, offered: tuple[str, ...]) -> str:
    """The language for a page: `?lang=` first, then the phone's Accept-Language, then the post's default."""
    if requested:
        # The whole tag first, so an operator's `hmn-vn` catalog (another orthography) is not taken for `hmn`.
        for code in (_tag(requested), _normalise(requested)):
            if code in offered:
                return code
    return _preferred(accept_language or "", offered) or offered[0]


def _tag(tag: str) -> str:
    return tag.strip().lower().replace("_", "-")


def _normalise(tag: str) -> str:
    primary = _tag(tag).split("-", 1)[0]
    return _ALIASES.get(primary, primary)


def _preferred(header: str, offered: tuple[str, ...]) -> str | None:
    """The offered language the Accept-Language header rates highest (the earliest of equals); malformed parts are
    skipped. One pass, no sorting, and it stops at the first offered language rated 1 (nothing can beat it):
    this runs for every page served."""
    best, best_quality = None, 0.0
    for part in header[:512].split(","):
        tag, _, params = part.partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
            if quality > 1.0:  # malformed (RFC 9110: q is at most 1)
                continue
        if quality > best_quality:
            code = _normalise(tag)
            if code in offered:
                best, best_quality = code, quality
                if quality == 1.0:
                    break
    return best
