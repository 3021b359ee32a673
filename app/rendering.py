"""Jinja2 environments, one per language, over the shipped templates and static files."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from app import i18n

_PACKAGE = Path(__file__).parent


def resource_dir(name: str) -> Path:
    """`templates`, `static` or `poster`: inside an installed wheel, or beside `app/` in a checkout."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"tipbox resource folder {name!r} is missing from the installation")


@cache
def environment(language: str, overrides: Path | None = None) -> Environment:
    """The template environment for `language`, with `_`/`gettext` bound to its catalog."""
    env = Environment(
        loader=FileSystemLoader(resource_dir("templates")),
        autoescape=select_autoescape(["html"], default_for_string=True, default=False),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates do not change while the service runs: no stat() of every template file on every render.
        auto_reload=False,
    )
    env.install_gettext_translations(i18n.translations(language, overrides), newstyle=True)  # type: ignore[attr-defined]
    return env


@cache
def stylesheet() -> Markup:
    """The page's CSS, inlined into every page so the form is one response."""
    css = (resource_dir("static") / "tipbox.css").read_text(encoding="utf-8")
    return Markup(css.strip())  # noqa: S704 - our own file, not input


@cache
def script() -> bytes:
    """The optional same-origin script (draft kept across reloads, photos shrunk); the form works without it."""
    return (resource_dir("static") / "tipbox.js").read_bytes()


@cache
def script_url() -> str:
    """The script's address, named by its content so browsers may cache it for a year."""
    return f"/static/tipbox.{script_digest()}.js"


def script_digest() -> str:
    return hashlib.sha256(script()).hexdigest()[:16]


def csp_hash(text: str) -> str:
    """The CSP source expression that allows exactly this inline `<style>` text."""
    digest = hashlib.sha256(text.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"
