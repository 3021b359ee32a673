"""HTTP routes: thin glue between a request and the modules that do the work."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response

from app import i18n, receipts, rendering
from app.answers.bound import Busy
from app.answers.lookup import Answer
from app.answers.service import Answers
from app.answers.store import StoreUnavailable
from app.budget import MemoryBudget
from app.compression import accepts_gzip
from app.forms import FormError, read_form
from app.guard import SOURCE_KEY, TOKEN_FIELD, Guard
from app.i18n import N_, VIETNAM_TIME
from app.pages import NEUTRAL_PATH, Pages, address
from app.relay import FILES_AGAIN, Relay
from app.settings import Post, Settings
from app.tips import BAD_RECEIPT, RECEIPT_FIELD

logger = logging.getLogger(__name__)

FORM_ERRORS = {
    413: N_("Too much was sent at once. Send fewer or smaller files."),
    400: N_("The form could not be read. Please go back and send it again."),
    415: N_("The form could not be read. Please go back and send it again."),
    408: N_("The connection was too slow. Please go back and press Send again."),
    503: N_("Too many files are being sent right now. Please go back and press Send again in a few minutes."),
}
NOT_SENT = N_("Not sent yet. Please press Send again.")
# The mail server took the whole tip and never answered: it may have arrived. Said as it is; the form keeps its
# token, so Send again makes the same email (the same Message-ID), which mailboxes that drop repeats show once.
UNCONFIRMED = N_(
    "The post's mail server did not confirm your tip. It may have arrived; sending it again may deliver it twice."
)
UNCONFIRMED_FILES = N_("To send it again with its files, choose the same files again.")
EXPIRED = N_("This form was open a long time. Check it and press Send again.")
CHANGED = N_("This form was already sent. Check it and press Send again to send it as a new message.")
LIMITED = N_("Many tips were sent in the last hour. Not sent yet: please wait a while, then press Send again.")
BUSY = N_(
    "Too many files are being sent right now. Not sent yet: please wait a few minutes, choose the files again "
    "and press Send."
)
# The mail server refused the tip for good: sending the same again cannot work, so the sender is told what can.
MAIL_TOO_LARGE = N_(
    "Not sent: the post's mailbox cannot take this much. Send a shorter voice recording or fewer photos."
)
MAIL_REFUSED = N_(
    "Not sent: the post cannot receive tips right now. Keep what you wrote and try again another day."
)
# Form given back, by outcome: (notice, HTTP status). An expired form is a 409: the text is fine, the token is stale.
# A form sent again with other content (edited after a lost answer) is a 409 too: sending it makes a new message.
GIVEN_BACK = {
    "expired": (EXPIRED, 409), "changed": (CHANGED, 409), "limited": (LIMITED, 429), "failed": (NOT_SENT, 503),
    "busy": (BUSY, 503), "unavailable": (NOT_SENT, 503), "too_large_to_mail": (MAIL_TOO_LARGE, 413),
    "refused": (MAIL_REFUSED, 503), "unconfirmed": (UNCONFIRMED, 504),
}
# Form given back with problems at their fields, by outcome: HTTP status (a body over its limit lost its files).
WITH_PROBLEMS = {"invalid": 422, "too_large": 413}
# Outcomes answered with the success page: a delivered tip, a form delivered before (its first receipt), a bot's.
SUCCESS = frozenset({"delivered", "repeat", "decoy"})
ANSWERS_BUSY = N_("Busy, try again in a minute.")
LOOKUPS_LIMITED = N_("Many tries in the last hour. Please wait a while, then press Read answers again.")
READ_FIELD, CODE_FIELD = "read", "code"
MAX_CODE_CHARS = 40  # as the field allows: 16 digits with any spaces, dots or dashes between
NOT_FOUND = N_("This page does not exist. Scan the code on the poster again.")
# The script's URL carries its content hash, so it never changes under a cached copy.
SCRIPT_CACHE = {"Cache-Control": "public, max-age=31536000, immutable"}


class LanguageConvertor(Convertor[str]):
    """A language tag in a form's address (`/p/ncs/hmn`, `/P/NCS/HMN`): "more" and "poster.pdf" are not one."""

    regex = "[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*"

    def convert(self, value: str) -> str:
        return value.lower()

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("tipbox_language", LanguageConvertor())


@dataclass(frozen=True, slots=True)
class Site:
    """What the routes need: the posts, the page renderer, the relay, the guard (form tokens), the settings and the
    memory for uploads."""

    settings: Settings
    posts: dict[str, Post]
    pages: Pages
    relay: Relay
    guard: Guard
    budget: MemoryBudget
    answers: Answers | None = None  # None: answers are off

    @property
    def default_post(self) -> Post:
        return next(iter(self.posts.values()))

    def lookup(self, slug: str) -> Post | None:
        return self.posts.get(slug.lower())

    def find(self, slug: str) -> Post:
        post = self.lookup(slug)
        if post is None:
            raise HTTPException(404)
        return post

    def error_page(self, request: Request, status: int) -> Response:
        """The page for an address or method the site does not have, in the visitor's language."""
        language = self.language(request, self.default_post)
        message = i18n.translations(language, self.settings.locales_dir).gettext(NOT_FOUND)
        page = self.pages.error(language, status, message, back=address("/", language))
        if status == 405:
            page.headers["Allow"] = "GET, HEAD, POST"
        return page

    def language(self, request: Request, post: Post) -> str:
        """The language in the address (`/p/ncs/hmn`, else `?lang=`), else the phone's, else the post's default."""
        requested = request.path_params.get("lang")
        if requested is None and request.scope["query_string"]:  # most requests have no query to parse
            requested = request.query_params.get("lang")
        return i18n.choose(requested, request.headers.get("accept-language"), post.languages)


def add_form_routes(app: FastAPI, site: Site) -> None:
    """The form's addresses: GET (and HEAD) shows the form, POST sends a tip.

    Plain Starlette routes on the app: they take nothing FastAPI would parse or validate, so no validation layer
    runs for them. Another method gets Starlette's 405, which the app's error handler turns into a page.
    """

    async def default_page(request: Request) -> Response:
        return await _page(request, site.default_post, "/")

    async def post_page(request: Request) -> Response:
        post = site.find(request.path_params["slug"])
        return await _page(request, post, f"/p/{post.slug}")

    # "I have sent a report before": the same form with the receipt-code section open.
    async def default_more_page(request: Request) -> Response:
        return await _page(request, site.default_post, "/more", follow_up=True)

    async def post_more_page(request: Request) -> Response:
        post = site.find(request.path_params["slug"])
        return await _page(request, post, f"/p/{post.slug}/more", follow_up=True)

    methods = ["GET", "POST"]  # and HEAD, which Starlette adds to every GET route
    app.add_route("/", default_page, methods=methods)
    app.add_route("/p/{slug}", post_page, methods=methods)
    app.add_route("/P/{slug}", post_page, methods=methods)  # the poster's QR code spells the URL in capitals (smaller)
    app.add_route("/more", default_more_page, methods=methods)
    app.add_route("/p/{slug}/more", post_more_page, methods=methods)
    # The language in the address: each code on a poster opens the form in the language printed beside it.
    app.add_route("/p/{slug}/{lang:tipbox_language}", post_page, methods=methods)
    app.add_route("/P/{slug}/{lang:tipbox_language}", post_page, methods=methods)

    async def _page(request: Request, post: Post, path: str, follow_up: bool = False) -> Response:
        if request.method == "POST":
            return await _submit(request, post, path, follow_up)
        language = site.language(request, post)
        token = site.guard.form_token(post)
        return site.pages.fresh_form(post, language, path, token, follow_up=follow_up, gzip=_gzip(request))

    async def _submit(request: Request, post: Post, path: str, follow_up: bool = False) -> Response:
        language = site.language(request, post)
        gettext = i18n.translations(language, site.settings.locales_dir).gettext
        source = request.scope.get(SOURCE_KEY)
        # The request's files count against the budget until it is answered, and only behind a token of ours.
        with site.budget.hold(source) as hold:
            try:
                form = await read_form(
                    request, site.settings.max_body_bytes, hold,
                    files_allowed=lambda fields: site.guard.token_verifies(post, fields.get(TOKEN_FIELD, "")),
                )
            except FormError as exc:
                back = address(path, language)
                return site.pages.error(language, exc.status, gettext(FORM_ERRORS[exc.status]), back)
            if follow_up and form.fields.get(READ_FIELD):
                typed = form.fields.get(CODE_FIELD, "")
                return await _read_answers(request, post, path, language, typed)
            outcome = await site.relay.submit(post, form, language, source=source)
            del form  # its files leave memory as their bytes leave the budget
        if outcome.status in SUCCESS:
            # "Send another tip" leads to the plain form, also after a follow-up.
            back = path.removesuffix("/more") or "/"
            return site.pages.sent(post, language, back, outcome.receipt, gzip=_gzip(request))
        hidden = {TOKEN_FIELD: outcome.token}
        if outcome.status in WITH_PROBLEMS:
            return site.pages.form(
                post, language, path, values=outcome.values, problems=outcome.problems, hidden=hidden,
                status=WITH_PROBLEMS[outcome.status], follow_up=follow_up,
            )
        notice, status = GIVEN_BACK[outcome.status]
        files = UNCONFIRMED_FILES if outcome.status == "unconfirmed" else FILES_AGAIN
        text = f"{gettext(notice)} {gettext(files)}" if outcome.files_again else gettext(notice)
        return site.pages.form(
            post, language, path, values=outcome.values, notice=text, hidden=hidden, status=status,
            follow_up=follow_up,
        )


    async def _read_answers(request: Request, post: Post, path: str, language: str, typed: str) -> Response:
        """The answers for a receipt code, above the follow-up form with the code kept. A wrong code, a code with
        no answer yet and answers switched off give the same page (apart from the form's token)."""
        gettext = i18n.translations(language, site.settings.locales_dir).gettext
        code = receipts.parse_code(typed) if len(typed) <= MAX_CODE_CHARS else None
        kept = code or typed[:MAX_CODE_CHARS]

        def page(status: int = 200, **context: Any) -> Response:
            name, token = site.guard.form_token(post)
            return site.pages.form(
                post, language, path, values={RECEIPT_FIELD: kept}, hidden={name: token}, follow_up=True,
                code=kept, status=status, **context,
            )

        def refused(status: int, **context: Any) -> Response:
            return site.pages.answers(post, language, path, code=kept, status=status, **context)

        if code is None:  # the check digit catches a typo before any key is derived
            return refused(422, code_error=gettext(BAD_RECEIPT))
        if not await site.guard.admit_lookup(request.scope.get(SOURCE_KEY)):
            return refused(429, notice=gettext(LOOKUPS_LIMITED))
        found: list[Answer] = []
        if site.answers is not None:
            try:
                found = await site.answers.read(code)
            except (Busy, StoreUnavailable) as exc:
                if isinstance(exc, StoreUnavailable):
                    logger.error("answers lookup failed: the store is unavailable (%s)", exc)
                return refused(503, notice=gettext(ANSWERS_BUSY))
        shown = [(answer.at.astimezone(VIETNAM_TIME).strftime("%d/%m/%Y %H:%M"), answer.text) for answer in found]
        return page(answers=shown)


def _gzip(request: Request) -> bool:
    """Whether the phone takes gzip: kept pages are stored compressed."""
    return accepts_gzip(request.scope["headers"])


def build_router(site: Site) -> APIRouter:
    """The other addresses: health, the script, the neutral page, the posters."""
    router = APIRouter()

    @router.api_route("/healthz", methods=["GET", "HEAD"])  # load balancers often probe with HEAD
    async def healthz() -> Response:
        return PlainTextResponse("ok", headers={"Cache-Control": "no-store"})

    @router.get("/static/tipbox.{digest}.js")
    async def script(digest: str) -> Response:
        if digest != rendering.script_digest():
            raise HTTPException(404)
        return Response(rendering.script(), media_type="text/javascript; charset=utf-8", headers=SCRIPT_CACHE)

    @router.get(NEUTRAL_PATH)
    async def neutral() -> Response:
        return site.pages.neutral(datetime.now(VIETNAM_TIME).date())

    @router.get("/p/{slug}/poster.pdf")
    def poster_pdf(slug: str, lang: str | None = None, size: str | None = None, layout: str | None = None) -> Response:
        from app import poster  # reportlab, qrcode and Pillow load with the first poster, not with every process

        post = site.find(slug)
        try:
            choice = poster.Choice.parse(post, lang, size, layout)
        except ValueError:
            raise HTTPException(400) from None
        # A download, not inline: Chrome's built-in viewer is blocked by the CSP every response carries.
        disposition = f'attachment; filename="{choice.filename(post)}"'
        try:
            pdf = poster.render_cached(site.settings, post, choice)
        except poster.PosterError as exc:  # the operator's set-up (a font, a translation), never the visitor's input
            logger.error("poster for post %s: %s", post.slug, exc)
            return PlainTextResponse(f"tipbox: poster: {exc}", status_code=503, headers={"Cache-Control": "no-store"})
        headers = {"Content-Disposition": disposition, "Cache-Control": "no-store"}
        return Response(pdf, media_type="application/pdf", headers=headers)

    return router
