"""Invariant 4: oversized, malformed, hostile or non-UTF-8 input gets a clear page in the sender's language."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.conftest import form_fields
from tests.mailsink import Sink

URLENCODED = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def small_client(sink: Sink, make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """Limits small enough to exceed cheaply: 1 000 bytes of uploads (+64 KiB for text and framing)."""
    with TestClient(create_app(make_settings(sink, max_upload_bytes=1000))) as test_client:
        yield test_client


def _assert_clear_page(response: Response, status: int, phrase: str) -> None:
    assert response.status_code == status
    assert "<html lang=" in response.text
    assert phrase in response.text


def test_declared_oversized_body_is_refused_unread(small_client: TestClient, sink: Sink) -> None:
    pulled: list[int] = []

    def body() -> Iterator[bytes]:
        for index in range(400):
            pulled.append(index)
            yield b"what=" + b"x" * 4096 if index == 0 else b"x" * 4096

    response = small_client.post("/", content=body(), headers={**URLENCODED, "content-length": str(400 * 4096)})
    _assert_clear_page(response, 413, "Gửi quá nhiều")
    assert len(pulled) < 400  # refused on the declared length, before the body was read whole
    assert sink.handler.messages == []


def test_streamed_oversized_body_is_cut_off(small_client: TestClient, sink: Sink) -> None:
    def body() -> Iterator[bytes]:  # chunked: no Content-Length to trust
        for _ in range(400):
            yield b"x" * 4096

    response = small_client.post("/", content=body(), headers=URLENCODED)
    _assert_clear_page(response, 413, "Gửi quá nhiều")
    # (The in-process test client drains the rest of the body itself; tests/test_serve.py checks over a real
    # socket that uvicorn answers 413 before the body ends.)
    assert sink.handler.messages == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"category=theft&what=%FF%FE%FD"),  # percent-encoded non-UTF-8
        ("application/x-www-form-urlencoded", b"category=theft&what=\xff\xfe"),  # raw non-ASCII bytes
        ("multipart/form-data", b"--b\r\nContent-Disposition: form-data; name=\"what\"\r\n\r\nx"),  # no boundary
        ("multipart/form-data; boundary=b", b"garbage without any boundary"),
        ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"what\"\r\n\r\nx"),
        ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n"),
        ("multipart/form-data; boundary=b",
         b"--b\r\nContent-Disposition: form-data; name=\"what\"\r\n\r\n\xc3\x28\r\n--b--\r\n"),
        ("multipart/form-data; boundary=" + "b" * 300, b"--" + b"b" * 300 + b"--\r\n"),
        ("text/plain", b"what=hello"),
        ("application/json", b'{"what": "hello"}'),
    ],
)
def test_malformed_bodies_get_a_clear_4xx(client: TestClient, sink: Sink, content_type: str, body: bytes) -> None:
    response = client.post("/", content=body, headers={"content-type": content_type})
    assert response.status_code in (400, 415)
    _assert_clear_page(response, response.status_code, "Không đọc được")
    assert sink.handler.messages == []


def test_unknown_category_and_empty_text_give_the_form_back(client: TestClient, sink: Sink) -> None:
    data = {**form_fields(client), "category": "aliens", "what": "", "where": "Bản <Mường> \"Nhé\""}
    response = client.post("/", data=data)
    assert response.status_code == 422
    assert "Hãy chọn loại việc." in response.text
    assert "Hãy viết chuyện gì đã xảy ra." in response.text
    assert 'value="Bản &lt;Mường&gt; &#34;Nhé&#34;"' in response.text  # kept, and escaped
    assert sink.handler.messages == []


def test_too_long_text_is_named_and_kept(client: TestClient, sink: Sink) -> None:
    long_text = "Rất dài. " * 700
    response = client.post("/", data={**form_fields(client), "category": "other", "what": long_text})
    assert response.status_code == 422
    assert "tối đa 5000 ký tự" in response.text
    assert long_text.strip() in response.text
    assert sink.handler.messages == []


def test_problems_are_named_in_hmong_on_the_hmong_form(client: TestClient) -> None:
    response = client.post("/?lang=hmn", data={**form_fields(client, "/?lang=hmn"), "category": "theft"})
    assert response.status_code == 422
    assert '<html lang="hmn">' in response.text
    assert "Thov sau tias muaj dab tsi tshwm sim." in response.text


def test_unknown_post_is_a_clear_404(client: TestClient) -> None:
    for method in ("GET", "POST"):
        response = client.request(method, "/p/no-such-post", headers={"accept-language": "hmn"})
        _assert_clear_page(response, 404, "Tsis muaj nplooj ntawv no")


def test_wrong_method_is_a_clear_page(client: TestClient) -> None:
    response = client.put("/")
    assert response.status_code == 405
    assert "<html lang=" in response.text


def test_control_and_bidi_characters_are_removed(client: TestClient, sink: Sink) -> None:
    what = "Xe\u202e tải\x00 chở\x1b hàng\u200b lậu"
    assert client.post("/", data={**form_fields(client), "category": "smuggling", "what": what}).status_code == 200
    plain = sink.handler.parsed()[0].get_body(("plain",))
    assert plain is not None
    assert "Xe tải chở hàng lậu" in plain.get_content()
