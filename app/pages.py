"""The pages a resident sees: the form (fresh, or given back with a problem), the success page, an error page."""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from starlette.responses import HTMLResponse

from app import i18n, rendering
from app.settings import Post
from app.tips import CATEGORIES, Problem

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Where "Leave quickly" goes; its page says nothing about tips.
NEUTRAL_PATH = "/calendar"
_WEEKDAYS = ("T2", "T3", "T4", "T5", "T6", "T7", "CN")


@dataclass(frozen=True, slots=True)
class Pages:
    """Renders pages in a language; `dev_mode` adds the development footer."""

    dev_mode: bool
    locales_dir: Path | None = None

    def _render(self, template: str, language: str, status: int, context: Mapping[str, Any]) -> HTMLResponse:
        env = rendering.environment(language, self.locales_dir)
        defaults = {
            "lang": language,
            "dev_mode": self.dev_mode,
            "css": rendering.stylesheet(),
            "script": rendering.script_url(),
            "leave": NEUTRAL_PATH,
        }
        html = env.get_template(template).render({**defaults, **context})
        headers = {**NO_STORE, "Content-Language": language}
        return HTMLResponse(html, status_code=status, headers=headers)

    def _switch(self, post: Post, language: str, path: str) -> list[dict[str, str | bool]]:
        """One link per language the post offers, to the same form, for the language bar."""
        return [
            {
                "code": code,
                "name": i18n.language_name(code, self.locales_dir),
                "href": f"{path}?lang={code}",
                "current": code == language,
            }
            for code in post.languages
        ]

    def form(
        self,
        post: Post,
        language: str,
        path: str,
        *,
        values: Mapping[str, str] | None = None,
        problems: Sequence[Problem] = (),
        notice: str | None = None,
        hidden: Mapping[str, str] | None = None,
        status: int = 200,
        follow_up: bool = False,
    ) -> HTMLResponse:
        """The tip form for `post`; on a problem, every field comes back as typed.

        `follow_up` opens the "I have sent a report before" section (it also opens when a receipt was typed).
        """
        gettext = i18n.translations(language, self.locales_dir).gettext
        errors = {p.field: " ".join(gettext(m) % dict(p.params) for m in (p.message, *p.more)) for p in problems}
        context = {
            "post": post,
            "action": f"{path}?lang={language}",
            "languages": self._switch(post, language, path),
            "categories": list(CATEGORIES.items()),
            "values": dict(values or {}),
            "errors": errors,
            "notice": notice,
            "hidden": dict(hidden or {}),
            "follow_up": follow_up,
        }
        return self._render("form.html", language, status, context)

    def sent(self, post: Post, language: str, path: str, receipt: str) -> HTMLResponse:
        """The success page: shown only once the post's mail server accepted the tip."""
        context = {"post": post, "receipt": receipt, "back": f"{path}?lang={language}"}
        return self._render("sent.html", language, 200, context)

    def error(self, language: str, status: int, message: str, back: str | None = None) -> HTMLResponse:
        """A short page for a request that cannot be answered with the form (unknown post, bad body...)."""
        return self._render("error.html", language, status, {"message": message, "back": back})

    def neutral(self, today: date) -> HTMLResponse:
        """The page "Leave quickly" replaces the form with: this month's calendar, nothing else."""
        weeks = calendar.Calendar(firstweekday=0).monthdayscalendar(today.year, today.month)
        context = {
            "month": f"{today.month:02d}/{today.year}",
            "weekdays": _WEEKDAYS,
            "weeks": weeks,
            "today": today.day,
            "dev_mode": False,
            "script": None,
        }
        return self._render("neutral.html", "vi", 200, context)
