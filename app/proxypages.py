"""The reverse proxy's own pages, so that nothing a resident sees comes from nginx or Caddy in English.

The kit sets the proxy's body limit so that tipbox answers every body over its own limit itself (`app.sizes`).
What is left for the proxy to answer: a body past even that (413), and tipbox not answering at all (502, 504),
a per-address connection limit (429), a broken request (400). For those it serves these static files, written
from the catalogs by `tipbox proxy-pages DIR` (every language on one page: the proxy cannot choose one), with the
sender's way forward: fewer or smaller files, or going back and sending again in a few minutes.
"""

from __future__ import annotations

from pathlib import Path

from app import i18n, rendering
from app.i18n import N_
from app.routes import FORM_ERRORS

TITLE = N_("Anonymous tip box")
UNAVAILABLE = N_("The tip box cannot answer right now. Please go back and press Send again in a few minutes.")
PAGES = {"too-large.html": FORM_ERRORS[413], "unavailable.html": UNAVAILABLE}


def languages(locales_dir: Path | None = None) -> list[str]:
    """Every language with a catalog, Vietnamese first (the officers' and most residents' language)."""
    available = i18n.available_languages(locales_dir)
    return sorted(available, key=lambda code: (code != i18n.OFFICER_LANGUAGE, code))


def render(message: str, locales_dir: Path | None = None) -> str:
    """One page: `message` under the title, in every language."""
    sections = []
    for language in languages(locales_dir):
        gettext = i18n.translations(language, locales_dir).gettext
        sections.append({"lang": language, "title": gettext(TITLE), "message": gettext(message)})
    env = rendering.environment(sections[0]["lang"], locales_dir)
    context = {"lang": sections[0]["lang"], "sections": sections, "css": rendering.stylesheet(), "script": None}
    return env.get_template("proxy.html").render(context)


def write(directory: Path, locales_dir: Path | None = None) -> list[Path]:
    """Write every page into `directory` (created if needed); returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, message in PAGES.items():
        path = directory / name
        path.write_text(render(message, locales_dir), encoding="utf-8")
        path.chmod(0o644)  # read by the proxy's own user
        written.append(path)
    return written
