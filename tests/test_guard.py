"""The guard: bots get the page people get and nothing is sent; expired forms come back; a double tap sends once."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from app import receipts
from app.guard import HONEYPOT_FIELD, TOKEN_FIELD, Tokens
from app.main import create_app
from app.settings import ConfigError, Settings
from tests.conftest import form_fields
from tests.mailsink import Sink, free_port

TIP = {"category": "drugs", "what": "Có người bán ma túy ở chợ phiên", "where": "Chợ Na Cô Sa"}
RECEIPT = re.compile(r'id="receipt">([^<]*)<')
START = 1_800_000_000.0


class Clock:
    """A clock the test moves by hand: no sleeping for 24 hours."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def receipt_of(page: httpx2.Response) -> str:
    match = RECEIPT.search(page.text)
    assert match is not None, page.text
    return match.group(1)


def token_of(page: httpx2.Response) -> str:
    match = re.search(r'name="t" value="([^"]*)"', page.text)
    assert match is not None, page.text
    return match.group(1)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guarded(sink: Sink, make_settings: Callable[..., Settings], clock: Clock) -> Iterator[TestClient]:
    """The app with the default 3-second minimum fill time and a hand-moved clock."""
    with TestClient(create_app(make_settings(sink, min_fill_seconds=3), clock=clock)) as client:
        yield client


def test_tokens_bind_the_post_and_refuse_anything_altered() -> None:
    tokens = Tokens(b"k" * 32)
    token = tokens.issue("ncs", START)
    assert re.fullmatch(r"[A-Za-z0-9_-]{48}", token)
    read = tokens.read(token, "ncs")
    assert read is not None and read.post == "ncs" and read.issued == START and len(read.nonce) == 26
    assert tokens.issue("ncs", START) != token  # a nonce each time
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    for bad in ("", "x", flipped, token[:-1], token + "A", "é" * 48, "=" * 48, token.upper()):
        assert tokens.read(bad, "ncs") is None, bad
    assert tokens.read(token, "other") is None
    assert Tokens(b"z" * 32).read(token, "ncs") is None


def test_bots_see_the_page_people_see_and_nothing_is_sent(
    guarded: TestClient, sink: Sink, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fields = form_fields(guarded)
    assert set(fields) == {TOKEN_FIELD, HONEYPOT_FIELD} and fields[HONEYPOT_FIELD] == ""
    clock.now += 20  # a person takes a while
    person = guarded.post("/", data={**fields, **TIP})
    assert person.status_code == 200 and len(sink.handler.messages) == 1

    def bot(data: dict[str, str]) -> httpx2.Response:
        page = guarded.post("/", data={**data, **TIP, "what": "Mua thuốc giá rẻ tại đây BOT-CONTENT-42"})
        assert page.status_code == 200
        code = receipt_of(page)
        assert receipts.parse_code(code) == code  # a plausible receipt, check digit and all
        assert page.text.replace(code, "") == person.text.replace(receipt_of(person), "")  # the same page
        return page

    fresh = form_fields(guarded)
    bot(fresh)  # posted the instant the form was served
    clock.now += 20
    bot({TOKEN_FIELD: fresh[TOKEN_FIELD]})  # omits the honeypot
    bot({**fresh, HONEYPOT_FIELD: "http://spam.example"})  # fills it
    bot({HONEYPOT_FIELD: ""})  # no token
    bot({TOKEN_FIELD: "A" * 48, HONEYPOT_FIELD: ""})  # a forged one
    assert len(sink.handler.messages) == 1
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for reason in ("too fast", "honeypot missing", "honeypot filled", "invalid token"):
        assert f"guard: {reason}, 1 since start" in logged
    assert "BOT-CONTENT-42" not in logged and "spam.example" not in logged


def test_a_token_for_another_post_is_refused(
    sink: Sink, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    posts = tmp_path / "posts.toml"
    posts.write_text(
        '[posts.a]\nname = "Đồn A"\nmailbox = "a@example.vn"\n[posts.b]\nname = "Đồn B"\nmailbox = "b@example.vn"\n'
    )
    with TestClient(create_app(make_settings(sink, mailbox=None, posts_file=posts))) as client:
        page = client.post("/p/a", data={**form_fields(client, "/p/b"), **TIP})
        assert page.status_code == 200 and receipts.parse_code(receipt_of(page))
        assert sink.handler.messages == []
        assert client.post("/p/b", data={**form_fields(client, "/p/b"), **TIP}).status_code == 200
    assert [envelope[1] for envelope in sink.handler.envelopes] == [["b@example.vn"]]


def test_a_replayed_token_sends_nothing(guarded: TestClient, sink: Sink, clock: Clock) -> None:
    fields = form_fields(guarded)
    clock.now += 10
    first = guarded.post("/", data={**fields, **TIP})
    replay = guarded.post("/", data={**fields, **TIP, "what": "Một tin khác với cùng mã"})
    assert first.status_code == replay.status_code == 200
    assert receipt_of(replay) != receipt_of(first) and receipts.parse_code(receipt_of(replay))
    assert len(sink.handler.messages) == 1


def test_an_expired_form_comes_back_whole_and_sends_at_once(guarded: TestClient, sink: Sink, clock: Clock) -> None:
    fields = form_fields(guarded, "/?lang=vi")
    clock.now += 24 * 3600 + 1  # the tab stayed open a day and a second
    back = guarded.post("/?lang=vi", data={**fields, **TIP})
    assert back.status_code == 409
    assert "Trang này đã mở lâu rồi" in back.text
    assert TIP["what"] in back.text and TIP["where"] in back.text and 'value="drugs" checked' in back.text
    assert token_of(back) != fields[TOKEN_FIELD]
    assert sink.handler.messages == []
    again = guarded.post("/?lang=vi", data={TOKEN_FIELD: token_of(back), HONEYPOT_FIELD: "", **TIP})  # one tap
    assert again.status_code == 200 and len(sink.handler.messages) == 1


def test_a_double_submission_sends_one_email_and_shows_the_same_page(
    guarded: TestClient, sink: Sink, clock: Clock
) -> None:
    fields = form_fields(guarded)
    clock.now += 10
    first = guarded.post("/", data={**fields, **TIP})
    second = guarded.post("/", data={**fields, **TIP, "what": TIP["what"] + "  \n"})  # a reload; same text
    assert first.status_code == second.status_code == 200
    assert first.text == second.text
    assert len(sink.handler.messages) == 1
    assert receipt_of(first) in str(sink.handler.parsed()[0]["Subject"])


def test_a_double_tap_during_a_slow_send_waits_for_the_first(
    sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    accept = sink.handler.handle_DATA

    async def slow_accept(*args: Any) -> str:
        await asyncio.sleep(0.5)
        return await accept(*args)

    sink.handler.handle_DATA = slow_accept  # type: ignore[method-assign,assignment]
    app = create_app(make_settings(sink))

    async def run() -> list[httpx2.Response]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://tipbox.test") as client:
            page = await client.get("/")
            data = {TOKEN_FIELD: token_of(page), HONEYPOT_FIELD: "", **TIP}
            return list(await asyncio.gather(client.post("/", data=data), client.post("/", data=data)))

    first, second = asyncio.run(run())
    assert first.status_code == second.status_code == 200
    assert receipt_of(first) == receipt_of(second)
    assert len(sink.handler.messages) == 1


def test_a_failed_send_frees_the_token_for_the_retry(guarded: TestClient, sink: Sink, clock: Clock) -> None:
    sink.handler.reply = "550 5.7.1 refused"
    fields = form_fields(guarded)
    clock.now += 10
    back = guarded.post("/", data={**fields, **TIP})
    assert back.status_code == 503 and TIP["what"] in back.text
    sink.handler.reply = None
    again = guarded.post("/", data={TOKEN_FIELD: token_of(back), HONEYPOT_FIELD: "", **TIP})
    assert again.status_code == 200 and len(sink.handler.messages) == 1


def test_unreachable_shared_storage_gives_the_form_back(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(sink, limits_storage=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings)) as client:
        page = client.post("/", data={**form_fields(client), **TIP})
    assert page.status_code == 503 and TIP["what"] in page.text
    assert sink.handler.messages == []


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"post_rate": "lots"}, "TIPBOX_POST_RATE"),
        ({"source_rate": "10/fortnight"}, "TIPBOX_SOURCE_RATE"),
        ({"limits_storage": "memcached://127.0.0.1:11211"}, "TIPBOX_LIMITS_STORAGE"),
        ({"limits_storage": "redis://"}, "TIPBOX_LIMITS_STORAGE"),
    ],
)
def test_bad_limit_settings_name_the_variable(
    make_settings: Callable[..., Settings], override: dict[str, str], setting: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{setting}: ") as error:
        make_settings(**override)
    assert "\n" not in str(error.value)


def test_limit_settings_defaults_and_switching_the_source_limit_off(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    assert (settings.post_rate, settings.source_rate, settings.limits_storage) == ("30/hour", "10/hour", "memory://")
    assert make_settings(source_rate="").source_rate is None
    assert make_settings(limits_storage="redis://127.0.0.1:6379/2").limits_storage.startswith("redis://")
