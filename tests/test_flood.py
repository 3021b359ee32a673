"""Floods: the per-source and per-post limits, through the real privacy middleware; nothing identifying is kept."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
from collections.abc import Callable, Iterable

import httpx2
from starlette.types import ASGIApp

from app.guard import HONEYPOT_FIELD, TOKEN_FIELD
from app.main import build_site, create_app
from app.privacy import SourceKeys
from app.settings import Settings
from tests.mailsink import Sink
from tests.test_guard import START, TIP, Clock, token_of

FLOODER = "198.51.100.66"
NEIGHBOUR = "203.0.113.9"
DISTINCTIVE = "198.51.100.177"


def encodings(address: str) -> list[str]:
    """The address as anyone might have stored it: text, packed, hex, integer, base64, mapped, plain hashes."""
    ip = ipaddress.ip_address(address)
    forms = [address, ip.packed.hex(), str(int(ip)), base64.b64encode(ip.packed).decode(), f"::ffff:{address}",
             address.replace(".", "_"), address.replace(".", "-")]
    for name in ("md5", "sha1", "sha256"):
        forms.append(hashlib.new(name, address.encode()).hexdigest()[:16])
    return forms


def assert_no_address(keys: Iterable[str], address: str) -> None:
    for key in keys:
        for form in encodings(address):
            assert form not in key, f"{form!r} in stored key {key!r}"


async def submit(app: ASGIApp, address: str, what: str, lang: str = "vi") -> httpx2.Response:
    """Fetch the form and send a tip, as a phone at `address` would."""
    transport = httpx2.ASGITransport(app=app, client=(address, 40000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://tipbox.test") as client:
        page = await client.get(f"/?lang={lang}")
        data = {TOKEN_FIELD: token_of(page), HONEYPOT_FIELD: "", **TIP, "what": what}
        return await client.post(f"/?lang={lang}", data=data)


def test_a_flood_from_one_source_cannot_bury_the_mailbox(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(sink))  # defaults: 10 per source and 30 per post an hour

    async def run() -> tuple[list[int], httpx2.Response, list[httpx2.Response]]:
        gate = asyncio.Semaphore(25)
        halfway = asyncio.Event()
        done = 0

        async def flood(number: int) -> int:
            nonlocal done
            async with gate:
                page = await submit(app, FLOODER, f"rác số {number}")
            done += 1
            if done == 250:
                halfway.set()
            if page.status_code == 429:
                assert f"rác số {number}" in page.text and "chưa được gửi" in page.text
            return page.status_code

        async def neighbour() -> httpx2.Response:
            await halfway.wait()
            return await submit(app, NEIGHBOUR, "Tin thật giữa lúc bị phá", lang="hmn")

        *statuses, other = await asyncio.gather(*(flood(n) for n in range(500)), neighbour())
        assert isinstance(other, httpx2.Response)
        # Then more residents until the post's own limit is reached.
        others = [await submit(app, f"192.0.2.{n // 10 + 1}", f"tin của xóm {n}") for n in range(20)]
        return [s for s in statuses if isinstance(s, int)], other, others

    statuses, other, others = asyncio.run(run())
    assert statuses.count(200) == 10 and statuses.count(429) == 490
    assert other.status_code == 200  # another source still gets through during the flood
    assert [page.status_code for page in others] == [200] * 19 + [429]  # 10 + 1 + 19 = 30 for the post
    last = others[-1]
    assert "tin của xóm 19" in last.text and "Tin của bạn chưa được gửi" in last.text
    assert len(sink.handler.messages) == 30


def test_the_source_limit_speaks_the_senders_language(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(sink, source_rate="1/hour"))

    async def run() -> list[httpx2.Response]:
        return [await submit(app, FLOODER, f"xov {n}", lang="hmn") for n in range(2)]

    first, second = asyncio.run(run())
    assert first.status_code == 200 and second.status_code == 429
    assert "Tseem tsis tau xa" in second.text and "xov 1" in second.text and 'lang="hmn"' in second.text


def test_limiter_keys_hold_no_address_and_change_every_hour(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    clock = Clock()
    site = build_site(make_settings(sink), clock)
    app = create_app(site.settings, site=site, clock=clock)
    guard = site.guard

    async def run() -> tuple[set[str], set[str]]:
        assert (await submit(app, DISTINCTIVE, "giờ thứ nhất")).status_code == 200
        first = set(await guard.stored_keys())
        clock.now += 3600  # the next hour: a new key in the middleware
        assert (await submit(app, DISTINCTIVE, "giờ thứ hai")).status_code == 200
        return first, set(await guard.stored_keys()) - first

    first, later = asyncio.run(run())
    assert_no_address(first | later, DISTINCTIVE)
    first_sources = {key for key in first if "/source/" in key}
    later_sources = {key for key in later if "/source/" in key}
    assert len(first_sources) == len(later_sources) == 1 and first_sources != later_sources
    assert any("/post/" in key for key in first)


def test_source_keys_rotate_hourly_and_never_contain_the_address() -> None:
    clock = Clock()
    keys = SourceKeys(clock)
    now = keys(DISTINCTIVE)
    assert now == keys(DISTINCTIVE) != keys(NEIGHBOUR)
    assert_no_address([now], DISTINCTIVE)
    assert keys("2001:db8:1:2:aaaa::1") == keys("2001:db8:1:2:bbbb::2")  # one phone's /64 is one source
    assert keys("2001:db8:1:3::1") != keys("2001:db8:1:2::1")
    assert keys(f"::ffff:{DISTINCTIVE}") == now
    clock.now += 3599 - (START % 3600)
    assert keys(DISTINCTIVE) == now
    clock.now += 1
    assert keys(DISTINCTIVE) != now
    assert SourceKeys(Clock())(DISTINCTIVE) != now  # another process, another key
