"""The app factory: `create_app(settings)` wires settings, pages, the relay and the privacy layer together."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp

from app import logs, rendering
from app.answers.command import answer
from app.answers.service import Answers
from app.attachments import Cleaner
from app.budget import MemoryBudget
from app.categories import CATEGORIES
from app.compression import Compression
from app.delivery import Mailer, SmtpServer
from app.guard import Guard
from app.mail import Composer
from app.pages import Pages
from app.privacy import PrivacyMiddleware, SourceKeys, TrustedProxies, content_security_policy
from app.relay import Relay
from app.routes import Site, add_form_routes, build_router
from app.settings import Settings, load_settings

logger = logging.getLogger(__name__)

# FastAPI's native OpenTelemetry is on by default; a tip box records nothing about requests.
TELEMETRY_OFF = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def smtp_server(settings: Settings) -> SmtpServer | None:
    """The configured SMTP server, or None in dev mode (the dev mailbox's port is known only once it runs)."""
    if settings.smtp_host is None:
        return None
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpServer(
        host=settings.smtp_host,
        port=settings.port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=password,
        ca_file=settings.smtp_ca_file,
        timeout=settings.smtp_timeout,
        data_timeout=settings.smtp_data_timeout,
    )


def build_site(settings: Settings, clock: Callable[[], float] = time.time) -> Site:
    """What the routes work with, built from `settings`: the posts, pages, guard, relay and upload memory."""
    guard = Guard(settings, clock)
    # Uploads are held in memory, never on disk: all requests together hold at most this much (app/budget.py), and
    # each photo's or recording's decode reserves its memory there too.
    budget = MemoryBudget(settings.upload_memory_bytes)
    cleaner = Cleaner(max_files=settings.max_files, max_bytes=settings.max_upload_bytes, budget=budget)
    server = smtp_server(settings)
    posts = settings.load_posts()
    answers = Answers(settings, posts) if settings.answers_on else None
    reply_to = settings.reply_address if answers else None
    composer = Composer(settings.sender, settings.secret, settings.locales_dir, reply_to=reply_to)
    metrics = None
    if settings.metrics_bind is not None:  # prometheus-client loads only when metrics are served
        from app.metrics import Metrics

        metrics = Metrics(posts, CATEGORIES)
    relay = Relay(
        composer, Mailer(server) if server else None, max_text_chars=settings.max_text_chars, guard=guard,
        cleaner=cleaner, answers=answers.bound if answers else None, metrics=metrics,
    )
    pages = Pages(
        dev_mode=settings.dev_mode, locales_dir=settings.locales_dir, min_fill_seconds=settings.min_fill_seconds,
        max_upload_bytes=settings.max_upload_bytes, answers_on=answers is not None,
    )
    if metrics is not None:
        metrics.watch_budget(budget)
    return Site(
        settings=settings, posts=posts, pages=pages, relay=relay, guard=guard, budget=budget, answers=answers
    )


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], float] = time.time, site: Site | None = None
) -> ASGIApp:
    """Build the ASGI app for `settings` (read from the environment when omitted).

    Tests may pass a `clock`, or a `site` of their own (`build_site`) to look at what its parts hold.
    """
    settings = settings or load_settings()
    site = site or build_site(settings, clock)
    relay = site.relay
    logs.quiet_libraries()  # also when the embedder never called logs.configure (tests, another ASGI server)

    # Officers' confirmations go out through the relay's mailer (in development, the dev mailbox's).
    send = site.answers.sender(lambda: relay.mailer) if site.answers is not None else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        mailbox = None
        if relay.mailer is None:
            from app.devmailbox import DevMailbox  # aiosmtpd: only a development run needs an SMTP server

            hook = None
            if site.answers is not None:  # an officer's reply to the dev mailbox is taken as `tipbox answer` would
                hook = (site.answers.reply_to, partial(answer, ingestion=site.answers.ingestion, send=send))
            mailbox = DevMailbox(settings.dev_mailbox, hook)
            port = await mailbox.start()
            relay.mailer = Mailer(SmtpServer(
                "127.0.0.1", port, "none", timeout=settings.smtp_timeout, data_timeout=settings.smtp_data_timeout
            ))
            logger.warning("development run: tips go to the dev mailbox in %s", settings.dev_mailbox)
        await site.guard.start()  # with Redis: the replicas' shared clock
        if site.answers is not None and send is not None:
            site.answers.start(send)
        # Metrics on an address of their own, never the public port (a thread; it writes no log).
        stop_metrics = relay.metrics.serve(*settings.metrics_bind) if relay.metrics and settings.metrics_bind else None
        try:
            yield
        finally:
            if stop_metrics is not None:
                stop_metrics()
            if site.answers is not None:
                await site.answers.stop()
            if mailbox is not None:
                await mailbox.stop()
                relay.mailer = None
            await site.guard.close()
            # uvicorn re-raises the SIGTERM it caught once it has stopped, so no exit hook runs after this.
            logs.flush()

    app = FastAPI(
        telemetry=TELEMETRY_OFF,  # type: ignore[arg-type]
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    add_form_routes(app, site)
    app.include_router(build_router(site))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return site.error_page(request, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return site.error_page(request, 400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Starlette's last-resort 500 answer, as a page in Vietnamese and Hmong; it still re-raises, so it is logged.
        return site.pages.before_language(500)

    csp = content_security_policy([rendering.csp_hash(rendering.stylesheet())])
    # Compression inside the privacy layer: it sees only allowlisted headers (accept-encoding is one); the fresh form
    # and the success page come compressed already (app/pagecache.py) and pass through. Privacy outermost, around
    # FastAPI's own last-resort 500 page too: no layer sees the address, every answer gets the security headers.
    # Behind a reverse proxy (TIPBOX_TRUSTED_PROXIES) the source key is made from the address it forwarded.
    trusted = TrustedProxies(settings.trusted_proxies)
    return PrivacyMiddleware(Compression(app), csp=csp, sources=SourceKeys(clock), trusted=trusted, hsts=settings.hsts)
