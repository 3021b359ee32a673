"""HTTP routes: thin glue between a request and the modules that do the work."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response

from app import i18n
from app.i18n import N_
from app.forms import FormError, read_form
from app.pages import Pages
from app.relay import Relay
from app.settings import Post, Settings

FORM_ERRORS = {
    413: N_("Too much was sent at once. Send fewer or smaller files."),
    400: N_("The form could not be read. Please go back and send it again."),
    415: N_("The form could not be read. Please go back and send it again."),
}
NOT_SENT = N_("Not sent yet. Please press Send again.")
NOT_FOUND = N_("This page does not exist. Scan the code on the poster again.")


@dataclass(frozen=True, slots=True)
class Site:
    """What the routes need: the posts, the page renderer, the relay and the settings."""

    settings: Settings
    posts: dict[str, Post]
    pages: Pages
    relay: Relay

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

    @router.get("/")
    async def default_form(request: Request) -> Response:
        return _form(request, site.default_post, "/")

    @router.post("/")
    async def default_submit(request: Request) -> Response:
        return await _submit(request, site.default_post, "/")

    @router.get("/p/{slug}")
    async def post_form(request: Request, slug: str) -> Response:
        post = site.find(slug)
        return _form(request, post, f"/p/{post.slug}")

    @router.post("/p/{slug}")
    async def post_submit(request: Request, slug: str) -> Response:
        post = site.find(slug)
        return await _submit(request, post, f"/p/{post.slug}")

    def _form(request: Request, post: Post, path: str) -> Response:
        return site.pages.form(post, site.language(request, post), path)

    async def _submit(request: Request, post: Post, path: str) -> Response:
        language = site.language(request, post)
        gettext = i18n.translations(language, site.settings.locales_dir).gettext
        try:
            form = await read_form(request, site.settings.max_body_bytes)
        except FormError as exc:
            back = f"{path}?lang={language}"
            return site.pages.error(language, exc.status, gettext(FORM_ERRORS[exc.status]), back)
        outcome = await site.relay.submit(post, form, language)
        if outcome.status == "sent":
            return site.pages.sent(post, language, path, outcome.receipt)
        if outcome.status == "invalid":
            return site.pages.form(post, language, path, values=outcome.values, problems=outcome.problems, status=422)
        return site.pages.form(post, language, path, values=outcome.values, notice=gettext(NOT_SENT), status=503)

    return router
