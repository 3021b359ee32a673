"""HTTP routes: thin glue between a request and the modules that do the work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response

from app import i18n, poster, rendering
from app.budget import MemoryBudget
from app.forms import FormError, read_form
from app.guard import TOKEN_FIELD
from app.i18n import N_
from app.mail import VIETNAM
from app.pages import NEUTRAL_PATH, Pages
from app.privacy import SOURCE_KEY
from app.relay import FILES_AGAIN, Relay
from app.settings import Post, Settings

FORM_ERRORS = {
    413: N_("Too much was sent at once. Send fewer or smaller files."),
    400: N_("The form could not be read. Please go back and send it again."),
    415: N_("The form could not be read. Please go back and send it again."),
    408: N_("The connection was too slow. Please go back and press Send again."),
    503: N_("Too many files are being sent right now. Please go back and press Send again in a few minutes."),
}
NOT_SENT = N_("Not sent yet. Please press Send again.")
EXPIRED = N_("This form was open a long time. Check it and press Send again.")
LIMITED = N_("Many tips were sent in the last hour. Not sent yet: please wait a while, then press Send again.")
BUSY = N_(
    "Too many files are being sent right now. Not sent yet: please wait a few minutes, choose the files again "
    "and press Send."
)
# Form given back, by outcome: (notice, HTTP status). An expired form is a 409: the text is fine, the token is stale.
GIVEN_BACK = {"expired": (EXPIRED, 409), "limited": (LIMITED, 429), "failed": (NOT_SENT, 503), "busy": (BUSY, 503)}
NOT_FOUND = N_("This page does not exist. Scan the code on the poster again.")
# The script's URL carries its content hash, so it never changes under a cached copy.
SCRIPT_CACHE = {"Cache-Control": "public, max-age=31536000, immutable"}


@dataclass(frozen=True, slots=True)
class Site:
    """What the routes need: the posts, the page renderer, the relay, the settings and the memory for uploads."""

    settings: Settings
    posts: dict[str, Post]
    pages: Pages
    relay: Relay
    budget: MemoryBudget

    @property
    def default_post(self) -> Post:
        return next(iter(self.posts.values()))

    def find(self, slug: str) -> Post:
        post = self.posts.get(slug.lower())
        if post is None:
            raise HTTPException(404)
        return post

    def language(self, request: Request, post: Post) -> str:
        return i18n.choose(request.query_params.get("lang"), request.headers.get("accept-language"), post.languages)


def build_router(site: Site) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> Response:
        return PlainTextResponse("ok", headers={"Cache-Control": "no-store"})

    @router.get("/static/tipbox.{digest}.js")
    async def script(digest: str) -> Response:
        if digest != rendering.script_digest():
            raise HTTPException(404)
        return Response(rendering.script(), media_type="text/javascript; charset=utf-8", headers=SCRIPT_CACHE)

    @router.get(NEUTRAL_PATH)
    async def neutral() -> Response:
        return site.pages.neutral(datetime.now(VIETNAM).date())

    @router.get("/")
    async def default_form(request: Request) -> Response:
        return _form(request, site.default_post, "/")

    @router.post("/")
    async def default_submit(request: Request) -> Response:
        return await _submit(request, site.default_post, "/")

    @router.get("/p/{slug}")
    @router.get("/P/{slug}")  # the poster's QR code spells the URL in capitals (a smaller code)
    async def post_form(request: Request, slug: str) -> Response:
        post = site.find(slug)
        return _form(request, post, f"/p/{post.slug}")

    @router.post("/p/{slug}")
    @router.post("/P/{slug}")
    async def post_submit(request: Request, slug: str) -> Response:
        post = site.find(slug)
        return await _submit(request, post, f"/p/{post.slug}")

    # "I have sent a report before": the same form with the receipt-code section open.
    @router.get("/more")
    async def default_more_form(request: Request) -> Response:
        return _form(request, site.default_post, "/more", follow_up=True)

    @router.post("/more")
    async def default_more_submit(request: Request) -> Response:
        return await _submit(request, site.default_post, "/more", follow_up=True)

    @router.get("/p/{slug}/more")
    async def post_more_form(request: Request, slug: str) -> Response:
        post = site.find(slug)
        return _form(request, post, f"/p/{post.slug}/more", follow_up=True)

    @router.post("/p/{slug}/more")
    async def post_more_submit(request: Request, slug: str) -> Response:
        post = site.find(slug)
        return await _submit(request, post, f"/p/{post.slug}/more", follow_up=True)

    @router.get("/p/{slug}/poster.pdf")
    def poster_pdf(slug: str, lang: str | None = None, size: str | None = None, layout: str | None = None) -> Response:
        post = site.find(slug)
        try:
            choice = poster.Choice.parse(post, lang, size, layout)
        except ValueError:
            raise HTTPException(400) from None
        # A download, not inline: Chrome's built-in viewer is blocked by the CSP every response carries.
        disposition = f'attachment; filename="{choice.filename(post)}"'
        pdf = poster.render_cached(site.settings, post, choice)
        headers = {"Content-Disposition": disposition, "Cache-Control": "no-store"}
        return Response(pdf, media_type="application/pdf", headers=headers)

    def _form(request: Request, post: Post, path: str, follow_up: bool = False) -> Response:
        language = site.language(request, post)
        hidden = site.relay.guard.form_fields(post)
        return site.pages.form(post, language, path, hidden=hidden, follow_up=follow_up)

    async def _submit(request: Request, post: Post, path: str, follow_up: bool = False) -> Response:
        language = site.language(request, post)
        gettext = i18n.translations(language, site.settings.locales_dir).gettext
        with site.budget.hold() as hold:  # the request's files count against the budget until it is answered
            try:
                form = await read_form(request, site.settings.max_body_bytes, hold)
            except FormError as exc:
                back = f"{path}?lang={language}"
                return site.pages.error(language, exc.status, gettext(FORM_ERRORS[exc.status]), back)
            outcome = await site.relay.submit(post, form, language, source=request.scope.get(SOURCE_KEY))
            del form  # its files leave memory as their bytes leave the budget
        if outcome.status == "sent":
            # "Send another tip" leads to the plain form, also after a follow-up.
            return site.pages.sent(post, language, path.removesuffix("/more") or "/", outcome.receipt)
        hidden = {TOKEN_FIELD: outcome.token}
        if outcome.status == "invalid":
            return site.pages.form(
                post, language, path, values=outcome.values, problems=outcome.problems, hidden=hidden, status=422,
                follow_up=follow_up,
            )
        notice, status = GIVEN_BACK[outcome.status]
        text = f"{gettext(notice)} {gettext(FILES_AGAIN)}" if outcome.files_again else gettext(notice)
        return site.pages.form(
            post, language, path, values=outcome.values, notice=text, hidden=hidden, status=status,
            follow_up=follow_up,
        )

    return router
