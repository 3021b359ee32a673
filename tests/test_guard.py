"""The guard: bots get the page people get and nothing is sent; expired forms come back; a double tap sends once."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from app import receipts
from app.guard import HONEYPOT_FIELD, TOKEN_FIELD
from app.main import create_app
from app.settings import ConfigError, Settings
from tests import media
from tests.helpers import SECRET, form_fields, hidden_fields, post_tip
from tests.mailsink import Sink, free_port
from tests.served import serve, smtp_settings

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
        # Well formed but not this post's: the form comes back (a bot gets nothing a GET would not give it).
        page = client.post("/p/a?lang=vi", data={**form_fields(client, "/p/b"), **TIP})
        assert page.status_code == 409 and "Trang này đã mở lâu rồi" in page.text and TIP["what"] in page.text
        assert sink.handler.messages == []
        assert client.post("/p/b", data={**form_fields(client, "/p/b"), **TIP}).status_code == 200
    assert [envelope[1] for envelope in sink.handler.envelopes] == [["b@example.vn"]]


def test_a_form_sent_again_gets_its_first_receipt_for_as_long_as_its_token_lives(
    guarded: TestClient, sink: Sink, clock: Clock
) -> None:
    fields = form_fields(guarded)
    clock.now += 10
    first = guarded.post("/", data={**fields, **TIP})
    clock.now += 11 * 60  # WKWebView re-POSTs the form when the success page is reloaded, minutes later
    reload = guarded.post("/", data={**fields, **TIP})
    clock.now += 20 * 3600  # and a day later, while the token is still valid
    later = guarded.post("/", data={**fields, **TIP, "what": " " + TIP["what"].upper()})  # the same, normalised
    assert first.status_code == reload.status_code == later.status_code == 200
    assert first.text == reload.text == later.text
    assert len(sink.handler.messages) == 1


def test_a_form_sent_again_with_other_text_comes_back_and_sends_as_a_new_message(
    guarded: TestClient, sink: Sink, clock: Clock
) -> None:
    fields = form_fields(guarded, "/?lang=vi")
    clock.now += 10
    first = guarded.post("/?lang=vi", data={**fields, **TIP})  # delivered; the answer lost on the way back
    edited = {**TIP, "what": TIP["what"] + " Họ đi xe máy màu đỏ."}  # Back, and one more sentence
    back = guarded.post("/?lang=vi", data={**fields, **edited})
    assert back.status_code == 409 and "Tin này đã gửi rồi" in back.text
    assert edited["what"] in back.text and TIP["where"] in back.text and 'value="drugs" checked' in back.text
    assert token_of(back) != fields[TOKEN_FIELD]
    hmn = guarded.post("/?lang=hmn", data={**fields, **edited})
    assert hmn.status_code == 409 and "Daim ntawv no twb xa lawm" in hmn.text
    assert len(sink.handler.messages) == 1
    again = guarded.post("/?lang=vi", data={TOKEN_FIELD: token_of(back), HONEYPOT_FIELD: "", **edited})  # one tap
    assert again.status_code == 200 and receipt_of(again) != receipt_of(first)
    assert len(sink.handler.messages) == 2
    body = sink.handler.parsed()[1].get_body(("plain",))
    assert body is not None and "xe máy màu đỏ" in body.get_content()


def test_a_sent_form_sent_again_as_a_bot_gets_a_decoy_receipt_not_the_real_one(
    guarded: TestClient, sink: Sink, clock: Clock
) -> None:
    fields = form_fields(guarded)
    clock.now += 10
    first = guarded.post("/", data={**fields, **TIP})
    bot = guarded.post("/", data={**fields, **TIP, HONEYPOT_FIELD: "http://spam.example"})
    assert first.status_code == bot.status_code == 200 and len(sink.handler.messages) == 1
    assert receipts.parse_code(receipt_of(bot)) == receipt_of(bot) != receipt_of(first)


def test_after_a_restart_the_same_page_with_other_text_gets_a_code_of_its_own(
    sink: Sink, make_settings: Callable[..., Settings], clock: Clock
) -> None:
    """The memory store forgets sent forms when the service restarts, while their tokens live on for a day: the same
    page sent again with other text is a new tip, and must not share the first one's code and Message-ID (a mailbox
    that drops repeated Message-IDs would hide it; both would open the same answers)."""
    settings = make_settings(sink, min_fill_seconds=3)
    with TestClient(create_app(settings, clock=clock)) as client:
        fields = form_fields(client)
        clock.now += 10
        first = client.post("/", data={**fields, **TIP})
    with TestClient(create_app(settings, clock=clock)) as client:  # restarted: nothing remembered
        second = client.post("/", data={**fields, **TIP, "what": TIP["what"] + " Thêm một chi tiết."})
    assert first.status_code == second.status_code == 200 and receipt_of(first) != receipt_of(second)
    one, two = sink.handler.parsed()
    assert one["Message-ID"] != two["Message-ID"]


def test_two_residents_sending_the_same_text_make_two_emails(guarded: TestClient, sink: Sink, clock: Clock) -> None:
    mine, theirs = form_fields(guarded), form_fields(guarded)
    clock.now += 10
    first = guarded.post("/", data={**mine, **TIP})
    second = guarded.post("/", data={**theirs, **TIP})
    assert first.status_code == second.status_code == 200
    assert receipt_of(first) != receipt_of(second)  # nobody learns another sender's receipt by typing their text
    assert len(sink.handler.messages) == 2


def test_a_form_sent_again_counts_against_no_limit(
    sink: Sink, make_settings: Callable[..., Settings], clock: Clock
) -> None:
    with TestClient(create_app(make_settings(sink, post_rate="2/hour"), clock=clock)) as client:
        fields = form_fields(client)
        assert client.post("/", data={**fields, **TIP}).status_code == 200
        for n in range(3):
            assert client.post("/", data={**fields, **TIP}).status_code == 200
            assert client.post("/", data={**fields, **TIP, "what": f"Sửa lần {n}"}).status_code == 409
        assert post_tip(client, **{**TIP, "what": "Tin thứ hai"}).status_code == 200
        assert post_tip(client, **{**TIP, "what": "Tin thứ ba"}).status_code == 429
    assert len(sink.handler.messages) == 2


def test_a_form_signed_with_the_previous_key_comes_back_whole(
    guarded: TestClient, sink: Sink, make_settings: Callable[..., Settings], clock: Clock
) -> None:
    """TIPBOX_SECRET_KEY was rotated (or the dev process restarted) while the form was open."""
    with TestClient(create_app(make_settings(sink, secret_key=SECRET[::-1]), clock=clock)) as before:
        fields = form_fields(before, "/?lang=vi")
    clock.now += 60
    back = guarded.post("/?lang=vi", data={**fields, **TIP})
    assert back.status_code == 409 and "Trang này đã mở lâu rồi" in back.text
    assert TIP["what"] in back.text and TIP["where"] in back.text and 'value="drugs" checked' in back.text
    assert sink.handler.messages == []
    again = guarded.post("/?lang=vi", data={TOKEN_FIELD: token_of(back), HONEYPOT_FIELD: "", **TIP})  # one tap
    assert again.status_code == 200 and len(sink.handler.messages) == 1


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


def test_a_token_from_the_future_is_never_a_bots(
    sink: Sink, make_settings: Callable[..., Settings], clock: Clock
) -> None:
    """Forms served by replicas whose clocks run ahead (by a minute; by ten): a person's tip either way, never a
    decoy; the one too far ahead comes back with a fresh token, which sends at once."""
    settings = make_settings(sink, min_fill_seconds=3)
    forms = []
    for ahead in (60, 600):
        other = Clock()
        other.now = clock.now + ahead
        with TestClient(create_app(settings, clock=other)) as replica:
            forms.append(form_fields(replica, "/?lang=vi"))
    with TestClient(create_app(settings, clock=clock)) as client:
        sent = client.post("/?lang=vi", data={**forms[0], **TIP})
        back = client.post("/?lang=vi", data={**forms[1], **TIP, "what": "Tin từ đồng hồ chạy nhanh"})
        assert sent.status_code == 200 and len(sink.handler.messages) == 1
        assert back.status_code == 409 and "Tin từ đồng hồ chạy nhanh" in back.text
        again = client.post("/?lang=vi", data={**hidden_fields(back.text), **TIP, "what": "Tin từ đồng hồ chạy nhanh"})
    assert again.status_code == 200 and len(sink.handler.messages) == 2


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


@pytest.mark.e2e
def test_a_bot_cannot_tell_its_decoy_from_a_real_sending_by_sending_the_form_again(
    sink: Sink, tmp_path: Path
) -> None:
    """Against `tipbox serve`: the same token sent again, with other text or the same, is answered alike whether its
    first sending was delivered or was a bot's (too fast, honeypot filled)."""
    with serve(tmp_path, smtp_settings(sink, TIPBOX_MIN_FILL_SECONDS="3")) as served, httpx2.Client(
        base_url=served.url, timeout=30
    ) as client:

        def form() -> dict[str, str]:
            return hidden_fields(client.get("/?lang=vi").text)

        def send(fields: dict[str, str], what: str, **extra: str) -> httpx2.Response:
            return client.post("/?lang=vi", data={**fields, **TIP, "what": what, **extra})

        real, filled = form(), form()
        time.sleep(3.2)  # a person writes for longer than the minimum fill time
        firsts = {"real": send(real, "Tin thật"), "honeypot": send(filled, "Tin bẫy", **{HONEYPOT_FIELD: "spam"})}
        fast, firsts["too fast"], slow = too_fast(form, send, 3.0)  # and a bot posts the instant it has the form
        texts = {"real": "Tin thật", "too fast": f"Tin nhanh {slow}", "honeypot": "Tin bẫy"}
        forms = {"real": real, "too fast": fast, "honeypot": filled}
        time.sleep(3.2)
        same = {name: send(forms[name], texts[name]) for name in forms}
        other = {name: send(forms[name], "Một câu khác") for name in forms}
    assert len(sink.handler.messages) == 1 + slow  # the person's, and any "bot" this machine was too slow to be
    for name in firsts:
        assert firsts[name].status_code == same[name].status_code == 200, name
        assert receipt_of(same[name]) == receipt_of(firsts[name]), name  # the first one's receipt, again
        assert other[name].status_code == 409 and "Tin này đã gửi rồi" in other[name].text, name
        assert token_of(other[name]) not in (real[TOKEN_FIELD], fast[TOKEN_FIELD], filled[TOKEN_FIELD])


def too_fast(
    form: Callable[[], dict[str, str]], send: Callable[[dict[str, str], str], httpx2.Response], min_fill: float
) -> tuple[dict[str, str], httpx2.Response, int]:
    """A form fetched and sent at once, as a bot does: the first try this machine made within the minimum fill time
    (timed here around both requests, so surely within it on the server too), its answer, and how many slower tries
    there were (each a person's tip, delivered)."""
    for slow in range(10):
        started = time.monotonic()
        fields = form()
        page = send(fields, f"Tin nhanh {slow}")
        if time.monotonic() - started < min_fill:
            return fields, page, slow
    pytest.fail("the machine never fetched and sent a form within the minimum fill time in ten tries")


@pytest.mark.e2e
def test_files_refused_in_cleaning_spend_the_sources_count_and_not_the_posts(sink: Sink, tmp_path: Path) -> None:
    """Against `tipbox serve` (2 tips an hour for the post, 4 attempts for a source): three tips whose JPEG turns out
    truncated only when it is decoded are refused, and the post still takes two tips; the source that sent them has
    spent three of its four attempts."""
    settings = smtp_settings(sink, TIPBOX_MIN_FILL_SECONDS="0", TIPBOX_POST_RATE="2/hour", TIPBOX_SOURCE_RATE="4/hour")
    broken = [("photo", ("a.jpg", media.jpeg()[:200], "image/jpeg"))]  # a JPEG's start: refused only when decoded
    with serve(tmp_path, settings) as served:

        def tip(source: str, what: str, files: list[Any] | None = None) -> int:
            transport = httpx2.HTTPTransport(local_address=source)
            with httpx2.Client(transport=transport, base_url=served.url, timeout=30) as client:
                fields = hidden_fields(client.get("/").text)
                return client.post("/", data={**fields, **TIP, "what": what}, files=files).status_code

        refused = [tip("127.0.7.1", f"Ảnh hỏng {n}", broken) for n in range(3)]
        statuses = [tip("127.0.7.1", "Tin thứ nhất"), tip("127.0.7.1", "Lần thử thứ năm"),
                    tip("127.0.7.2", "Tin thứ hai"), tip("127.0.7.3", "Tin thứ ba")]
    assert refused == [422, 422, 422]
    assert statuses == [200, 429, 200, 429]  # the source's 5th attempt; then the post's 3rd tip
    assert len(sink.handler.messages) == 2
