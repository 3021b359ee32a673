"""Answers in the running app: the resident's page on /more, the success page, the officer's email, and the
service carrying on when the IMAP server is down."""

from __future__ import annotations

import asyncio
import html
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.answers import bound as bound_module
from app.answers import keys
from app.answers.ingest import Kept, parse
from app.answers.service import Answers
from app.guard import TOKEN_FIELD
from app.main import build_site, create_app
from app.settings import Settings
from tests import replies
from tests.helpers import post_tip
from tests.mailsink import Sink, free_port

CODE = "4821 0937 5512 9639"
TOKEN = re.compile(rf'<input type="hidden" name="{TOKEN_FIELD}" value="[^"]*">')


def _read(client: TestClient, code: str, path: str = "/p/post/more?lang=vi") -> Any:
    return client.post(path, files={"read": (None, "1"), "code": (None, code)})


def _texts(page: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(r'<p class="text">(.*?)</p>', page, re.DOTALL)]


@pytest.fixture
def answering(sink: Sink, make_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values = {"reply_to": "answers@example.vn", "answers_store": f"sqlite:///{tmp_path / 'a.sqlite3'}"}
        return make_settings(sink, **{**values, **overrides})

    return build


@pytest.fixture
def client(answering: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(answering())) as test_client:
        yield test_client


def _store_answer(client: TestClient, site: Any, sink: Sink, text: str) -> str:
    """Send a tip, then answer it as the officer would (through ingestion); return the receipt code."""
    page = post_tip(client, "/p/post", category="drugs", what="Có người lạ ở chợ.")
    code = re.search(r'id="receipt">\s*([\d ]{19})\s*<', page.text)
    assert code, page.text
    tip = sink.handler.parsed()[-1]
    kept = asyncio.run(site.answers.ingestion.take(replies.gmail(tip, text, sender="post@example.vn")))
    assert isinstance(kept, Kept)
    return code.group(1)


def test_the_officers_email_and_the_success_page_say_answers_are_on(client: TestClient, sink: Sink) -> None:
    page = post_tip(client, "/p/post", category="drugs", what="Có người lạ ở chợ.")
    assert "Đồn có thể trả lời: vài ngày nữa hãy quay lại với mã này." in page.text
    (tip,) = sink.handler.parsed()
    assert tip["Reply-To"] == "answers@example.vn"
    assert tip["Message-ID"].startswith("<post.")
    plain = tip.get_body(("plain",))
    assert plain is not None and "Trả lời thư này để trả lời người gửi" in str(plain.get_content())
    assert "Trả lời thư này sẽ không đến được người gửi" not in str(plain.get_content())


def test_answers_off_keeps_todays_email_and_success_page(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(sink))) as client:
        page = post_tip(client, "/p/post", category="drugs", what="Có người lạ ở chợ.")
    assert "Đồn có thể trả lời" not in page.text
    (tip,) = sink.handler.parsed()
    assert tip["Reply-To"] is None and not tip["Message-ID"].startswith("<post.")
    plain = tip.get_body(("plain",))
    assert plain is not None and "Trả lời thư này sẽ không đến được người gửi" in str(plain.get_content())


def test_the_resident_reads_answers_newest_first_and_can_follow_up(
    answering: Callable[..., Settings], sink: Sink
) -> None:
    settings = answering()
    site = build_site(settings)
    with TestClient(create_app(settings, site=site)) as client:
        code = _store_answer(client, site, sink, "Nhà nào?")
        time.sleep(1.1)  # a later second: the newer answer must come first
        tip = sink.handler.parsed()[-1]
        asyncio.run(site.answers.ingestion.take(replies.outlook(tip, "Cảm ơn, đã xử lý.", sender="post@example.vn")))
        page = _read(client, code.replace(" ", "-"))  # typed with dashes: the same code
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert _texts(page.text) == ["Cảm ơn, đã xử lý.", "Nhà nào?"]
        assert len(re.findall(r'<p class="when">\d{2}/\d{2}/\d{4} \d{2}:\d{2}</p>', page.text)) == 2
        assert code not in str(page.url) and 'action="/p/post/more?lang=vi"' in page.text
        # The follow-up form below keeps the code: sending it adds to the same thread.
        assert f'name="receipt" inputmode="numeric" maxlength="40" placeholder="0000 0000 0000 0000" value="{code}"' \
            in page.text
        fields = {"category": "drugs", "what": "Nhà số 17.", "receipt": code}
        sent = post_tip(client, "/p/post/more?lang=vi", **fields)
        assert sent.status_code == 200 and code in sent.text
        assert sink.handler.parsed()[-1]["In-Reply-To"] == sink.handler.parsed()[0]["Message-ID"]


def test_wrong_code_no_answer_yet_and_answers_off_look_the_same(
    answering: Callable[..., Settings], sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    unknown = "1111 1111 1111 1118"  # well formed, never given out
    pages = []
    with TestClient(create_app(answering())) as client:
        waiting = post_tip(client, "/p/post", category="drugs", what="Có người lạ.")
        code = re.search(r'id="receipt">\s*([\d ]{19})\s*<', waiting.text)
        assert code
        for typed in (unknown, code.group(1)):
            pages.append(_read(client, typed).text.replace(typed, "CODE"))
    with TestClient(create_app(make_settings(sink))) as client:
        pages.append(_read(client, unknown).text.replace(unknown, "CODE"))
    assert "Chưa có trả lời — vài ngày nữa hãy quay lại xem." in pages[0]
    tokens = [TOKEN.findall(page) for page in pages]
    assert all(len(found) == 1 for found in tokens)
    assert len({TOKEN.sub("TOKEN", page) for page in pages}) == 1


def test_a_mistyped_code_is_caught_before_any_derivation(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bound_module.keys, "derive", lambda *args: pytest.fail("derived a key for a typo"))
    page = _read(client, "4821 0937 5512 9635")
    assert page.status_code == 422
    assert "Tus lej" not in page.text and 'id="code-error"' in page.text
    assert 'value="4821 0937 5512 9635"' in page.text  # kept, to correct


def test_lookups_are_limited_per_source(answering: Callable[..., Settings]) -> None:
    with TestClient(create_app(answering(source_rate="2/hour"))) as client:
        statuses = [_read(client, CODE).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_past_the_derivation_bound_a_lookup_is_busy_with_the_code_kept(
    answering: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    release, started = threading.Event(), threading.Event()
    real = keys.derive

    def held(code: str, secret: bytes) -> keys.KeyPair:
        started.set()
        release.wait(30)
        return real(code, secret)

    monkeypatch.setattr(bound_module.keys, "derive", held)
    settings = answering()
    site = build_site(settings)
    assert site.answers is not None
    site.answers.bound = bound_module.DerivationBound(settings.secret, slots=2)
    site.relay.answers = site.answers.bound
    with TestClient(create_app(settings, site=site)) as client:
        first: list[int] = []
        reader = threading.Thread(target=lambda: first.append(_read(client, CODE).status_code))
        reader.start()
        assert started.wait(20)
        busy = _read(client, CODE)
        release.set()
        reader.join(30)
    assert busy.status_code == 503 and "Đang bận, vui lòng thử lại sau một phút." in busy.text
    assert re.search(f'id="code" [^>]*value="{CODE}"', busy.text)  # the code kept, to press again
    assert first == [200]


def test_imap_down_tips_keep_flowing_and_healthz_stays_up(
    answering: Callable[..., Settings], sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    settings = answering(
        imap_host="127.0.0.1", imap_port=free_port(), imap_security="none", imap_username="answers@example.vn",
        imap_password="x",
    )
    site = build_site(settings)
    with caplog.at_level(logging.WARNING, logger="app.answers"), TestClient(create_app(settings, site=site)) as client:
        assert site.answers is not None
        deadline = time.monotonic() + 20
        while (site.answers.collector is None or site.answers.collector.failures < 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/healthz").status_code == 200
        sent = post_tip(client, "/p/post", category="drugs", what="Vẫn gửi được.")
        assert sent.status_code == 200 and len(sink.handler.messages) == 1
    failures = [r.getMessage() for r in caplog.records if "IMAP" in r.getMessage()]
    assert failures and all("failed (ConnectionRefusedError" in line for line in failures)


def test_the_dev_mailbox_takes_replies_to_the_reply_address(make_settings: Callable[..., Settings]) -> None:
    import smtplib

    settings = make_settings()  # development: the dev mailbox, answers on
    site = build_site(settings)
    assert settings.dev_mode and site.answers is not None
    with TestClient(create_app(settings, site=site)) as client:
        page = post_tip(client, "/", category="drugs", what="Có người lạ.")
        code = re.search(r'id="receipt">\s*([\d ]{19})\s*<', page.text)
        assert code
        mailbox = Path(settings.dev_mailbox)
        (saved,) = mailbox.glob("*.eml")
        tip = parse(saved.read_bytes())
        assert tip["Reply-To"] == settings.reply_address
        port = _dev_port(site)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail("post@example.vn", [settings.reply_address],
                          replies.gmail(tip, "Cảm ơn anh.", sender="post@example.vn"))
        assert _texts(_read(client, code.group(1), "/more?lang=vi").text) == ["Cảm ơn anh."]
        assert len(list(mailbox.glob("*.eml"))) == 2  # the tip, and the officer's confirmation; not the reply


def _dev_port(site: Any) -> int:
    mailer = site.relay.mailer
    assert mailer is not None
    return int(mailer.server.port)



def test_a_background_task_that_dies_is_logged_and_stopping_does_not_raise_it(
    answering: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        answers = Answers(answering(), {})

        async def broken() -> int:
            raise RuntimeError("a bug in the store, with words from an answer")

        answers.store.purge = broken  # type: ignore[method-assign]

        async def send(recipient: str, data: bytes) -> None:
            raise AssertionError("nothing to send")

        answers.start(send)
        await asyncio.sleep(0.05)
        await answers.stop()  # returns: the lifespan's clean-up goes on

    with caplog.at_level(logging.INFO, logger="app.answers"):
        asyncio.run(main())
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("app.answers")]
    assert lines == ["answers: tipbox-answers-purge stopped (RuntimeError); restart the service"]
