"""The pages a resident sees: the form (fresh, or given back with a problem), the success page, an error page."""

from __future__ import annotations

import calendar
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from starlette.responses import HTMLResponse, Response

from app import i18n, rendering
from app.attachments import megabytes
from app.categories import CATEGORIES
from app.pagecache import Prepared, SlottedPage
from app.settings import Post
from app.tips import Problem

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# A pre-compressed page says so itself; app.compression leaves a response with a Content-Encoding alone.
GZIPPED = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
HTML = "text/html; charset=utf-8"
# Where "Leave quickly" goes; its page says nothing about tips.
NEUTRAL_PATH = "/calendar"
_WEEKDAYS = ("T2", "T3", "T4", "T5", "T6", "T7", "CN")


@dataclass(frozen=True, slots=True)
class Pages:
    """Renders pages in a language; `dev_mode` adds the development footer.

    The fresh form and the success page are rendered once per post, language and address, and kept
    (`app.pagecache`); a form given back with what was typed is rendered in full. The form tells the optional
    script two settings: `min_fill_seconds` (it holds back a Send tapped sooner, as the guard would take it for a
    bot's) and `max_upload_bytes` (it says "too big" before sending files that would be refused).
    """

    dev_mode: bool
    locales_dir: Path | None = None
    min_fill_seconds: float = 3.0
    max_upload_bytes: int = 20_000_000
    answers_on: bool = False  # the success page says the post may answer
    kept: dict[tuple[str | bool, ...], SlottedPage] = field(default_factory=dict, repr=False, compare=False)

    def _render(self, template: str, language: str, status: int, context: Mapping[str, Any]) -> HTMLResponse:
        html = self._html(template, language, context)
        headers = {**NO_STORE, "Content-Language": language}
        return HTMLResponse(html, status_code=status, headers=headers)

    def _html(self, template: str, language: str, context: Mapping[str, Any]) -> str:
        env = rendering.environment(language, self.locales_dir)
        defaults = {
            "lang": language,
            "dev_mode": self.dev_mode,
            "css": rendering.stylesheet(),
            "script": rendering.script_url(),
            "leave": NEUTRAL_PATH,
        }
        return env.get_template(template).render({**defaults, **context})

    def _cached(
        self, key: tuple[str | bool, ...], render: Callable[[str], str], value: str, language: str, gzip: bool
    ) -> Response | None:
        """The kept page for `key` with `value` in its slot; None if `value` cannot go in the slot unescaped.

        The slot is as long as the first value (a form token, a receipt code: each always the same length).
        """
        page = self.kept.get(key)
        if page is None:
            # Keys come from the configuration (posts, their languages, four addresses), never from a request.
            page = self.kept[key] = SlottedPage.render(render, len(value))
        try:
            body = page.gzip(value) if gzip else page.identity(value)
        except ValueError:  # the value does not fit the slot
            return None
        return Prepared(body, _kept_headers(language, gzip=gzip))

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
        code: str = "",
        code_error: str | None = None,
        answers: Sequence[tuple[str, str]] | None = None,
    ) -> HTMLResponse:
        """The tip form for `post`; on a problem, every field comes back as typed.

        `follow_up` opens the "I have sent a report before" section (it also opens when a receipt was typed) and
        shows "Read answers" above the form: `code` in its field, `answers` (date, text) once looked up, newest
        first (an empty list: "No answer yet").
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
            "code": code,
            "code_error": code_error,
            "answers": answers,
            "min_fill": f"{self.min_fill_seconds:g}",
            "max_upload": self.max_upload_bytes,
            "max_upload_mb": megabytes(self.max_upload_bytes),
        }
        return self._render("form.html", language, status, context)

    def fresh_form(
        self, post: Post, language: str, path: str, hidden: tuple[str, str], *, follow_up: bool = False,
        gzip: bool = False,
    ) -> Response:
        """The form as first served, from the kept page: the bytes `form` renders with this `hidden` field.

        `hidden` is the form token's (name, value); `gzip` answers with the page compressed.
        """
        name, token = hidden

        def render(value: str) -> str:
            html = self.form(post, language, path, hidden={name: value}, follow_up=follow_up).body
            return bytes(html).decode("utf-8")

        key = ("form", post.slug, language, path, name, follow_up)
        cached = self._cached(key, render, token, language, gzip)
        return cached or self.form(post, language, path, hidden={name: token}, follow_up=follow_up)

    def answers(
        self, post: Post, language: str, path: str, *, code: str, status: int, notice: str | None = None,
        code_error: str | None = None,
    ) -> HTMLResponse:
        """A small page for a lookup that was not done (busy, limited, a mistyped code): "Read answers", code kept.

        A tenth of the full form's rendering: a hammered lookup costs the service little more than its answer.
        """
        here = f"{path}?lang={language}"
        context = {
            "post": post, "action": here, "languages": self._switch(post, language, path), "code": code,
            "code_error": code_error, "answers": None, "notice": notice, "back": here,
        }
        return self._render("answers.html", language, status, context)

    def sent(self, post: Post, language: str, path: str, receipt: str, *, gzip: bool = False) -> Response:
        """The success page: shown only once the post's mail server accepted the tip."""
        back = f"{path}?lang={language}"

        def render(value: str) -> str:
            return self._html("sent.html", language, {"post": post, "receipt": value, "back": back, **answers})

        answers = {"answers_on": self.answers_on}
        cached = self._cached(("sent", post.slug, language, path), render, receipt, language, gzip)
        context = {"post": post, "receipt": receipt, "back": back, **answers}
        return cached or self._render("sent.html", language, 200, context)

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


@functools.cache  # one entry per language and encoding
def _kept_headers(language: str, *, gzip: bool) -> tuple[tuple[bytes, bytes], ...]:
    """A kept page's headers, as `_render` gives a page rendered in full (and, compressed, as app.compression)."""
    headers = {"Content-Type": HTML, **NO_STORE, "Content-Language": language, **(GZIPPED if gzip else {})}
    return tuple((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())
