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
from app.i18n import N_
from app.pagecache import Prepared, SlottedPage
from app.settings import Post
from app.tips import Problem

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# A pre-compressed page says so itself; app.compression leaves a response with a Content-Encoding alone.
GZIPPED = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
HTML = "text/html; charset=utf-8"
# Marks a form page for app.privacy, which lets it use the microphone (the recorder) and drops the mark.
FORM_PAGE_HEADER = b"x-tipbox-form-page"
# Where "Leave quickly" goes; its page says nothing about tips.
NEUTRAL_PATH = "/calendar"
_WEEKDAYS = ("T2", "T3", "T4", "T5", "T6", "T7", "CN")
# Answers given before a language is known (app.hardening: the HTTP layer, before any route): every page is in
# Vietnamese and Hmong at once, by status.
BEFORE_LANGUAGE = ("vi", "hmn")
BILINGUAL = {
    400: N_("The request could not be read. Please go back and try again."),
    408: N_("The connection was too slow. Please try again."),
    500: N_("Something went wrong. Your tip may not have been sent: please go back and press Send again."),
    503: N_("Too many people are using the tip box right now. Please try again in a few minutes."),
}


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

    def _render(
        self, template: str, language: str, status: int, context: Mapping[str, Any], *, form: bool = False
    ) -> HTMLResponse:
        html = self._html(template, language, context)
        headers = {**NO_STORE, "Content-Language": language, **(_FORM_MARK if form else {})}
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
        self, key: tuple[str | bool, ...], render: Callable[[str], str], value: str, language: str, gzip: bool,
        *, form: bool = False,
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
        return Prepared(body, _kept_headers(language, gzip=gzip, form=form))

    def _switch(self, post: Post, language: str, path: str) -> list[dict[str, str | bool]]:
        """One link per language the post offers, to the same form, for the language bar."""
        return [
            {
                "code": code,
                "name": i18n.language_name(code, self.locales_dir),
                "href": address(path, code),
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
            "action": address(path, language),
            "draft": path,  # the draft the script keeps is the same form's in every language
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
        return self._render("form.html", language, status, context, form=True)

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
        cached = self._cached(key, render, token, language, gzip, form=True)
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
        back = address(path, language)

        def render(value: str) -> str:
            return self._html("sent.html", language, {"post": post, "receipt": value, "back": back, **answers})

        answers = {"answers_on": self.answers_on}
        cached = self._cached(("sent", post.slug, language, path), render, receipt, language, gzip)
        context = {"post": post, "receipt": receipt, "back": back, **answers}
        return cached or self._render("sent.html", language, 200, context)

    def error(self, language: str, status: int, message: str, back: str | None = None) -> HTMLResponse:
        """A short page for a request that cannot be answered with the form (unknown post, bad body...)."""
        return self._render("error.html", language, status, {"message": message, "back": back})

    def before_language(self, status: int) -> HTMLResponse:
        """A page for `status` (a key of BILINGUAL) in Vietnamese and Hmong at once, when nothing says which."""
        headers = {**NO_STORE, "Content-Language": ", ".join(BEFORE_LANGUAGE)}
        return HTMLResponse(bilingual(status, self.locales_dir), status_code=status, headers=headers)

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


_FORM_MARK = {FORM_PAGE_HEADER.decode(): "1"}


def address(path: str, language: str) -> str:
    """The address of the form at `path` in `language`, for every link that must keep the language: a post's form
    has it in its path (`/p/ncs/hmn`, as the posters' codes), the others (`/`, the follow-up forms) as `?lang=`."""
    if path.startswith("/p/") and path.count("/") == 2:
        return f"{path}/{language}"
    return f"{path}?lang={language}"


def bilingual(status: int, locales_dir: Path | None = None) -> str:
    """The page for `status` (a key of BILINGUAL) in every language of BEFORE_LANGUAGE, one after the other."""
    parts = []
    for language in BEFORE_LANGUAGE:
        gettext = i18n.translations(language, locales_dir).gettext
        parts.append({
            "lang": language, "title": gettext("Anonymous tip box"), "message": gettext(BILINGUAL[status]),
            "leave": gettext("Leave quickly"),
        })
    env = rendering.environment(BEFORE_LANGUAGE[0], locales_dir)
    context = {
        "lang": BEFORE_LANGUAGE[0], "dev_mode": False, "css": rendering.stylesheet(), "script": None,
        "leave": NEUTRAL_PATH, "parts": parts,
    }
    return env.get_template("bilingual.html").render(context)


@functools.cache  # one entry per language, encoding and kind
def _kept_headers(language: str, *, gzip: bool, form: bool = False) -> tuple[tuple[bytes, bytes], ...]:
    """A kept page's headers, as `_render` gives a page rendered in full (and, compressed, as app.compression)."""
    headers = {
        "Content-Type": HTML, **NO_STORE, "Content-Language": language, **(GZIPPED if gzip else {}),
        **(_FORM_MARK if form else {}),
    }
    return tuple((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())
