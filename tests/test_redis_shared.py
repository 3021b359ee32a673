"""Replicas sharing Redis: two real `tipbox serve` processes share the sent forms and the post's limit."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
import redis
import redis.asyncio

from app.guard import HONEYPOT_FIELD, TOKEN_FIELD
from app.guard.store import BOUNDED, PREFIX, RedisStore
from app.main import create_app
from app.settings import Settings
from tests.helpers import SECRET, hidden_fields, require, wait_until_responds
from tests.mailsink import Sink, free_port
from tests.served import serve, smtp_settings
from tests.test_flood import DISTINCTIVE, assert_no_address, submit
from tests.test_guard import TIP, Clock, receipt_of, token_of, too_fast

pytestmark = pytest.mark.e2e

CLIENT = "127.3.7.9"  # a loopback address of its own, so the one the servers see is distinctive
POST_RATE = 4


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = require("redis-server", "redis-server")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def module_sink() -> Iterator[Sink]:
    server = Sink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replicas(redis_url: str, module_sink: Sink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two `tipbox serve` processes on the same Redis (database 0) and the same SMTP sink."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
    env.update(
        TIPBOX_SMTP_HOST="127.0.0.1", TIPBOX_SMTP_PORT=str(module_sink.port), TIPBOX_SMTP_SECURITY="none",
        TIPBOX_MAIL_FROM="tipbox@example.vn", TIPBOX_MAILBOX="post@example.vn", TIPBOX_SECRET_KEY=SECRET,
        TIPBOX_MIN_FILL_SECONDS="0", TIPBOX_POST_RATE=f"{POST_RATE}/hour", TIPBOX_LIMITS_STORAGE=f"{redis_url}/0",
    )
    tipbox = str(Path(sys.executable).parent / "tipbox")
    root = tmp_path_factory.mktemp("replicas")
    ports = [free_port(), free_port()]
    logs = [(root / f"replica{n}.log").open("wb") for n in range(2)]
    processes = [
        subprocess.Popen([tipbox, "serve", "--port", str(port)], env=env, cwd=root, stdout=log, stderr=log)
        for port, log in zip(ports, logs, strict=True)
    ]
    try:
        for port, process in zip(ports, processes, strict=True):
            wait_until_responds(f"http://127.0.0.1:{port}", process)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            process.terminate()
        for process, log in zip(processes, logs, strict=True):
            process.wait(timeout=10)
            log.close()


def _client() -> httpx2.Client:
    return httpx2.Client(transport=httpx2.HTTPTransport(local_address=CLIENT), timeout=10)


def _all_stored(url: str, db: int) -> list[str]:
    with redis.Redis.from_url(f"{url}/{db}") as client:
        found = []
        for key in client.scan_iter():
            found.append(key.decode())
            if client.type(key) == b"string":
                found.append(repr(client.get(key)))
            elif client.type(key) == b"list":
                found.extend(repr(item) for item in client.lrange(key, 0, -1))
        return found


def _nonce(token: str) -> str:
    """The single-use nonce inside a form token (app.guard.tokens: version, 6 bytes of time, 13 of nonce), in hex."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return raw[7:20].hex()


def test_replicas_share_sent_forms_and_the_post_limit(
    replicas: list[str], module_sink: Sink, redis_url: str
) -> None:
    one, two = replicas
    with _client() as client:
        form = client.get(one + "/")
        data = {TOKEN_FIELD: token_of(form), HONEYPOT_FIELD: "", **TIP}
        first = client.post(one + "/", data=data)
        assert first.status_code == 200 and len(module_sink.handler.messages) == 1
        # The same tip through the other replica (a double tap the load balancer split): same page, no email.
        again = client.post(two + "/", data=data)
        assert again.status_code == 200 and receipt_of(again) == receipt_of(first)
        # The same token with other text on the other replica: the form comes back, to be sent as a new message.
        replay = client.post(two + "/", data={**data, "what": "Tin khác, mã cũ"})
        assert replay.status_code == 409 and "Tin khác, mã cũ" in replay.text
        assert len(module_sink.handler.messages) == 1
        # The post's limit is one count across both: 4 an hour in all, and the first tip has used one (sending a
        # form again counts against no limit).
        statuses = []
        for n in range(POST_RATE):
            url = replicas[n % 2]
            fields = {TOKEN_FIELD: token_of(client.get(url + "/")), HONEYPOT_FIELD: ""}
            statuses.append(client.post(url + "/", data={**fields, **TIP, "what": f"tin {n}"}).status_code)
    assert statuses == [200] * (POST_RATE - 1) + [429]
    assert len(module_sink.handler.messages) == POST_RATE
    assert_no_address(_all_stored(redis_url, 0), CLIENT)
    # Nor the receipt code, which opens the answers (this Redis may hold them too), nor the nonce it is made from.
    stored = " ".join(_all_stored(redis_url, 0))
    code = receipt_of(first)
    assert code.replace(" ", "") not in stored.replace(" ", "") and code[:9] not in stored
    assert _nonce(data[TOKEN_FIELD]) not in stored
    assert any(key.startswith(PREFIX + "limits") for key in _all_stored(redis_url, 0))


def test_redis_keys_hold_no_address_and_change_every_hour(
    redis_url: str, sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    clock = Clock()
    app = create_app(make_settings(sink, limits_storage=f"{redis_url}/1"), clock=clock)

    async def run() -> None:
        assert (await submit(app, DISTINCTIVE, "giờ thứ nhất")).status_code == 200
        clock.now += 3600
        assert (await submit(app, DISTINCTIVE, "giờ thứ hai")).status_code == 200

    before = set(_all_stored(redis_url, 1))
    asyncio.run(run())
    stored = set(_all_stored(redis_url, 1)) - before
    assert_no_address(stored, DISTINCTIVE)
    sources = {key for key in stored if "/source/" in key}
    assert len(sources) == 2  # one per hour: the same address, unlinkable across the hour
    assert any(key.startswith(PREFIX + "seen:") for key in stored)


@pytest.mark.parametrize("behind", [8, 30, 300])
def test_a_replica_whose_clock_is_behind_still_delivers_a_persons_tip(
    redis_url: str, module_sink: Sink, tmp_path: Path, behind: int
) -> None:
    """Two `tipbox serve` on one Redis, the second's clock `behind` seconds late (libfaketime): a form served by
    the first and sent 3.5 s later (the minimum fill time is 3 s) to the second is a person's, not "too fast";
    a form from the first sent at once to the second is still a bot's."""
    faketime = require("faketime", "faketime")
    settings = smtp_settings(
        module_sink, TIPBOX_MIN_FILL_SECONDS="3", TIPBOX_LIMITS_STORAGE=f"{redis_url}/2", TIPBOX_POST_RATE="100/hour"
    )
    late = [faketime, "-f", f"-{behind}s"]
    before = len(module_sink.handler.messages)
    with serve(tmp_path / "a", settings) as first, serve(
        tmp_path / "b", settings, prefix=late, env={"FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    ) as second, _client() as client:
        forms = [hidden_fields(client.get(url + "/").text) for url in (first.url, second.url)]
        _, bot, slow = too_fast(
            lambda: hidden_fields(client.get(first.url + "/").text),
            lambda fields, what: client.post(second.url + "/", data={**fields, **TIP, "what": what}), 3.0,
        )
        time.sleep(3.5)
        pages = [client.post(url + "/", data={**fields, **TIP, "what": f"tin {n}"})
                 for n, (url, fields) in enumerate(((second.url, forms[0]), (first.url, forms[1])))]
    assert [page.status_code for page in pages] == [200, 200] and bot.status_code == 200
    texts = [str(message.get_body(("plain",)).get_content()) for message in module_sink.handler.parsed()[before:]]
    assert len(texts) == 2 + slow and "tin 0" in texts[-2] and "tin 1" in texts[-1]  # not the bot's that was fast
    assert not any(f"Tin nhanh {slow}" in text for text in texts)


def test_bots_forms_in_redis_are_kept_among_a_bounded_number(redis_url: str) -> None:
    async def run() -> tuple[list[str], int]:
        pool = redis.asyncio.ConnectionPool.from_url(f"{redis_url}/3")
        store = RedisStore(pool)
        for n in range(50):
            assert await store.claim(f"seen:{n}", f"decoy {n}", 3600, keep=20) is None
        assert await store.claim("seen:49", "pending x", 60) == "decoy 49"
        assert await store.claim("seen:0", "pending x", 60) is None  # forgotten: one of the 30 oldest
        keys = await store.keys()
        client = redis.asyncio.Redis(connection_pool=pool)
        length = await client.llen(PREFIX + BOUNDED)
        await client.aclose()
        await store.close()
        await pool.aclose()
        return keys, length

    keys, length = asyncio.run(run())
    assert length == 20 and len([key for key in keys if key.startswith(PREFIX + "seen:")]) == 21
