"""Answers in a running service: the store, the derivation bound, ingestion, the IMAP collector and the daily purge,
built from the settings and started and stopped with the app (its lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.answers.bound import DerivationBound
from app.answers.ingest import Ingestion, Send
from app.answers.lookup import Answer, answers_for
from app.answers.store import Store, StoreUnavailable, open_store
from app.delivery import Mailer, Wire
from app.settings import Post, Settings

if TYPE_CHECKING:  # the IMAP client loads only where the collector runs (TIPBOX_IMAP_HOST): a few MB otherwise idle
    from app.answers.collector import Collector

logger = logging.getLogger(__name__)

PURGE_SECONDS = 6 * 3600


class Answers:
    """Everything answers need in one process; `read` for the resident's page, `ingestion` for officers' replies."""

    def __init__(self, settings: Settings, posts: dict[str, Post], *, slots: int | None = None) -> None:
        self.settings = settings
        self.reply_to = settings.reply_address
        self.bound = DerivationBound(settings.secret, slots)
        self.store: Store = open_store(settings.answers_store_url, settings.answer_days)
        officers = {slug: post.answerers for slug, post in posts.items()}
        self.ingestion = Ingestion(
            settings.secret, officers, self.store, settings.sender, settings.locales_dir,
            authserv_id=settings.answers_authserv_id,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.collector: Collector | None = None

    async def read(self, code: str) -> list[Answer]:
        """The answers for a canonical code, newest first; raises `Busy` or `StoreUnavailable`."""
        return await answers_for(code, self.bound, self.store)

    def sender(self, mailer: Callable[[], Mailer | None]) -> Send:
        """Hands a confirmation to whatever mailer the relay has then (the dev mailbox's is known only once it runs)."""

        async def send(recipient: str, data: bytes) -> None:
            current = mailer()
            if current is None:
                raise RuntimeError("the mailer is not started")
            await current.send(Wire(self.settings.sender, (recipient,), data))

        return send

    def start(self, send: Send) -> None:
        """Start the IMAP collector (when configured) and the purge of old answers, as background tasks."""
        settings = self.settings
        if settings.imap_host is not None and settings.imap_username and settings.imap_password is not None:
            from app.answers.collector import Collector, ImapAccount

            account = ImapAccount(
                host=settings.imap_host, username=settings.imap_username,
                password=settings.imap_password.get_secret_value(), port=settings.imap_port,
                security=settings.imap_security, folder=settings.imap_folder,
                poll_seconds=settings.imap_poll_seconds, ca_file=settings.imap_ca_file,
            )
            self.collector = Collector(account, self.reply_to, self.ingestion, send)
            self._tasks.append(asyncio.create_task(self.collector.run(), name="tipbox-answers-collector"))
        self._tasks.append(asyncio.create_task(self._purge(), name="tipbox-answers-purge"))
        for task in self._tasks:
            task.add_done_callback(_ended)

    async def _purge(self) -> None:
        while True:
            try:
                removed = await self.store.purge()
                if removed:
                    logger.info("answers: %d answers older than %d days deleted", removed, self.settings.answer_days)
            except StoreUnavailable as exc:
                logger.warning("answers: old answers not deleted now (%s)", exc)
            await asyncio.sleep(PURGE_SECONDS)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):  # _ended has said why it stopped
                await task
        self._tasks.clear()
        self.bound.close()
        await self.store.close()


def _ended(task: asyncio.Task[None]) -> None:
    """A background task never ends but by being stopped: if one does, say so (the type only: no content)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("answers: %s stopped (%s); restart the service", task.get_name(), type(exc).__name__)
