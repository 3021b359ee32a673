"""Pages kept rendered: the same bytes as a full render, a fresh single-use token on every GET, valid gzip."""

from __future__ import annotations

import gzip
import random
import re
import string
import zlib

import pytest
from starlette.testclient import TestClient

from app import rendering
from app.guard import HONEYPOT_FIELD, TOKEN_FIELD, Tokens
from app.pagecache import SlottedPage, placeholder
from app.pages import Pages
from app.routes import Site
from app.settings import Post
from tests.mailsink import Sink
from tests.test_guard import TIP, receipt_of, token_of

POST = Post("ncs", "Đồn Biên phòng Na Cô Sa <&> \"Bản\"", "nacosa@example.vn", ("vi", "hmn"))
GZIP = {"Accept-Encoding": "gzip, deflate"}
TOKEN_CHARS = 48  # a form token (app.guard.tokens)
RECEIPT_CHARS = 19  # a receipt code, "0000 0000 0000 0000"
IDENTITY = {"Accept-Encoding": "identity"}


def raw_get(client: TestClient, path: str, headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    """A GET's headers and its body as sent (not decompressed by the client)."""
    with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        return dict(response.headers), b"".join(response.iter_raw())


@pytest.mark.parametrize("dev_mode", [False, True])
@pytest.mark.parametrize(("language", "path", "follow_up"), [
    ("vi", "/", False), ("hmn", "/", False), ("vi", "/p/ncs/more", True), ("hmn", "/more", True),
])
def test_a_kept_form_is_the_form_rendered_in_full(dev_mode: bool, language: str, path: str, follow_up: bool) -> None:
    renderer = Pages(dev_mode=dev_mode)
    token = Tokens(b"k" * 32).issue(POST.slug, 1_800_000_000.0)
    for attempt in range(2):  # the first renders and keeps the page, the second serves the kept one
        kept = renderer.fresh_form(POST, language, path, (TOKEN_FIELD, token), follow_up=follow_up)
        full = renderer.form(POST, language, path, hidden={TOKEN_FIELD: token}, follow_up=follow_up)
        assert kept.body == full.body, attempt
        # The same headers (their order means nothing to a browser).
        assert (kept.status_code, sorted(kept.headers.items())) == (full.status_code, sorted(full.headers.items()))
        compressed = renderer.fresh_form(POST, language, path, (TOKEN_FIELD, token), follow_up=follow_up, gzip=True)
        assert gzip.decompress(compressed.body) == full.body
        assert compressed.headers["content-encoding"] == "gzip" and compressed.headers["vary"] == "Accept-Encoding"
    assert len(renderer.kept) == 1


def test_a_kept_success_page_is_the_page_rendered_in_full() -> None:
    renderer = Pages(dev_mode=False)
    for receipt in ("4821 0937 5512 9634", "0000 0000 0000 0000"):
        kept = renderer.sent(POST, "hmn", "/p/ncs", receipt)
        full = renderer._render("sent.html", "hmn", 200, {"post": POST, "receipt": receipt, "back": "/p/ncs?lang=hmn"})
        assert kept.body == full.body and sorted(kept.headers.items()) == sorted(full.headers.items())
        assert gzip.decompress(renderer.sent(POST, "hmn", "/p/ncs", receipt, gzip=True).body) == full.body
    # A value that cannot go in the slot as it is gets the page rendered in full, escaped.
    odd = renderer.sent(POST, "vi", "/", "<b>12</b>")
    assert b"&lt;b&gt;12&lt;/b&gt;" in odd.body and "content-encoding" not in odd.headers


def test_every_get_carries_a_new_token_that_verifies_and_sends_once(
    client: TestClient, site: Site, sink: Sink
) -> None:
    guard = site.guard
    pages = [client.get("/"), client.get("/", headers=GZIP), client.get("/?lang=hmn", headers=GZIP),
             client.get("/more"), client.get("/", headers=GZIP)]
    tokens = [token_of(page) for page in pages]
    assert len(set(tokens)) == len(tokens) and all(len(token) == TOKEN_CHARS for token in tokens)
    for token in tokens:
        read = guard.tokens.read(token, "post")
        assert read is not None and read.post == "post"
    data = {TOKEN_FIELD: tokens[1], HONEYPOT_FIELD: "", **TIP}
    sent = client.post("/", data=data)
    assert sent.status_code == 200 and len(sink.handler.messages) == 1
    assert receipt_of(sent) in str(sink.handler.parsed()[0]["Subject"])
    # The same token again: the same page (a reload); with another text, the form back; nothing is sent.
    assert client.post("/", data=data).text == sent.text
    replay = client.post("/", data={**data, "what": "Một tin khác với cùng mã"})
    assert replay.status_code == 409 and token_of(replay) not in tokens
    assert len(sink.handler.messages) == 1
    # Another form's token still sends, compressed success page and all.
    other = client.post("/more", data={**data, TOKEN_FIELD: tokens[3], "what": "Tin thứ hai"}, headers=GZIP)
    assert other.status_code == 200 and other.headers["content-encoding"] == "gzip"
    assert len(sink.handler.messages) == 2


@pytest.mark.parametrize("path", ["/", "/p/post/more?lang=hmn"])
def test_compressed_page_is_the_plain_page_and_says_so_once(client: TestClient, path: str) -> None:
    headers, body = raw_get(client, path, GZIP)
    assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert int(headers["content-length"]) == len(body)
    member = zlib.decompressobj(16 + zlib.MAX_WBITS)
    html = member.decompress(body)
    assert member.eof and not member.unused_data  # one whole gzip member, CRC and length checked, nothing after it
    plain_headers, plain = raw_get(client, path, IDENTITY)
    assert "content-encoding" not in plain_headers and plain_headers["vary"] == "Accept-Encoding"
    assert int(plain_headers["content-length"]) == len(plain)
    ours, theirs = (re.findall(rb'name="t" value="([^"]*)"', page) for page in (html, plain))
    assert len(ours) == len(theirs) == 1 and ours != theirs
    assert html.replace(ours[0], theirs[0]) == plain  # the same page, but for its token


def _page(rng: random.Random, size: int) -> str:
    words = ["<div class=\"field\">", "<label for=\"what\">", "Nyob qhov twg ", "O dau ", "</div>\n", "field ",
             "".join(rng.choices(string.ascii_letters, k=40))]
    return "".join(rng.choice(words) for _ in range(size))


def _safe(text: str, length: int) -> str:
    return (re.sub(r"[^A-Za-z0-9_\- ]", "", text) + "x" * length)[:length]


@pytest.mark.parametrize("seed", range(6))
def test_any_value_in_the_slot_decompresses_to_the_plain_bytes(seed: int) -> None:
    rng = random.Random(seed)
    length = rng.choice([TOKEN_CHARS, RECEIPT_CHARS, 8, 300])
    before, after = _page(rng, rng.choice([0, 5, 400, 3000])), _page(rng, rng.choice([0, 5, 400, 3000]))
    page = SlottedPage.render(lambda value: before + value + after, length)
    alphabet = string.ascii_letters + string.digits + "-_ "
    # Values that repeat what surrounds the slot: a compressor that matched into the slot would get them wrong.
    for value in (_safe(after, length), _safe(before[::-1], length)[::-1], "".join(rng.choices(alphabet, k=length)),
                  "A" * length):
        expected = (before + value + after).encode()
        assert page.identity(value) == expected
        assert gzip.decompress(page.gzip(value)) == expected


def test_text_repeated_on_both_sides_of_the_slot_survives_compression() -> None:
    value = "Nyob qhov twg " * 3 + "Ab-_12"
    before, after = "<p>" + value * 40, value * 40 + "</p>"
    page = SlottedPage.render(lambda slot: before + slot + after, len(value))
    for filling in (value, "x" * len(value), value[::-1]):
        assert gzip.decompress(page.gzip(filling)) == (before + filling + after).encode()
    assert len(page.gzip(value)) < 300  # the text after the slot still refers back to the text before it


def test_a_value_goes_in_the_slot_only_if_it_needs_no_escaping() -> None:
    page = SlottedPage.render(lambda value: f'<input name="t" value="{value}">', 4)
    assert page.fits("Ab-_") and page.fits("12 4")
    for bad in ("Ab-", "Ab-_x", '"><a', "a&b;", "ả123", "ab\n1"):
        assert not page.fits(bad), bad
        with pytest.raises(ValueError, match="slot"):
            page.gzip(bad)
    for template in ("{0}{0}", "nothing here", "{0}\0"):
        with pytest.raises(ValueError, match="slot"):
            SlottedPage.render(template.format, 4)
    assert re.fullmatch("[A-Za-z]{6}", placeholder(6)) and placeholder(48) != placeholder(48)


def test_what_is_kept_is_bounded_by_the_configuration(client: TestClient, site: Site) -> None:
    for number in range(30):
        lang = f"x{number}"
        for path in ("/", f"/?lang={lang}", "/more", "/p/post", "/P/POST", "/p/post/more", "/p/nowhere"):
            client.get(path, headers={"Accept-Language": f"{lang},hmn;q=0.5", **GZIP})
            client.get(f"{path}{'&' if '?' in path else '?'}lang=vi-{lang}")
    pages = site.pages
    languages = {key[2] for key in pages.kept}
    paths = {key[3] for key in pages.kept}
    assert languages == {"vi", "hmn"} and paths == {"/", "/more", "/p/post", "/p/post/more"}


def test_templates_are_read_once() -> None:
    assert rendering.environment("vi").auto_reload is False
