"""Compression: text bodies gzip-compressed for clients that ask; everything else, and pre-compressed pages, as is."""

from __future__ import annotations

import gzip

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from app.compression import Compression

PAGE = ("<p>Xe tải chở hàng lậu qua bản lúc nửa đêm.</p>\n" * 40).encode()
GZIP = {"Accept-Encoding": "gzip, deflate, br"}
IDENTITY = {"Accept-Encoding": "identity"}


async def _chunks() -> object:
    yield PAGE
    yield PAGE


def _endpoint(request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind == "html":
        return Response(PAGE, media_type="text/html")
    if kind == "small":
        return Response(b"<p>ok</p>", media_type="text/html")
    if kind == "pdf":
        return Response(b"%PDF-1.4\n" + PAGE, media_type="application/pdf")
    if kind == "varied":
        return Response(PAGE, media_type="text/html", headers={"Vary": "Accept-Language"})
    if kind == "encoded":
        return Response(gzip.compress(PAGE), media_type="text/html", headers={"Content-Encoding": "gzip"})
    return StreamingResponse(_chunks(), media_type="text/plain")  # type: ignore[arg-type]


@pytest.fixture
def client() -> TestClient:
    return TestClient(Compression(Starlette(routes=[Route("/{kind}", _endpoint)])))


def raw(client: TestClient, path: str, headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    """Headers and body as sent (httpx would decompress the body)."""
    with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        return dict(response.headers), b"".join(response.iter_raw())


def test_a_text_page_is_compressed_for_a_phone_that_asks(client: TestClient) -> None:
    headers, body = raw(client, "/html", GZIP)
    assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert int(headers["content-length"]) == len(body) < len(PAGE) // 5
    assert gzip.decompress(body) == PAGE


def test_a_client_that_does_not_ask_gets_the_page_as_is_and_told_it_varies(client: TestClient) -> None:
    for asked in (IDENTITY, {"Accept-Encoding": ""}):
        headers, body = raw(client, "/html", asked)
        assert "content-encoding" not in headers and headers["vary"] == "Accept-Encoding"
        assert body == PAGE and int(headers["content-length"]) == len(PAGE)


def test_small_bodies_other_types_and_streams_go_as_they_are(client: TestClient) -> None:
    small_headers, small = raw(client, "/small", GZIP)
    assert small == b"<p>ok</p>" and "content-encoding" not in small_headers
    pdf_headers, pdf = raw(client, "/pdf", GZIP)
    assert pdf.startswith(b"%PDF-") and "content-encoding" not in pdf_headers and "vary" not in pdf_headers
    stream_headers, stream = raw(client, "/stream", GZIP)
    assert stream == PAGE * 2 and "content-encoding" not in stream_headers


def test_a_page_compressed_already_passes_untouched(client: TestClient) -> None:
    headers, body = raw(client, "/encoded", GZIP)
    assert headers["content-encoding"] == "gzip" and "vary" not in headers  # the page says what it needs itself
    assert gzip.decompress(body) == PAGE  # compressed once, not twice


def test_an_existing_vary_is_kept_and_extended(client: TestClient) -> None:
    headers, body = raw(client, "/varied", GZIP)
    assert headers["vary"] == "Accept-Language, Accept-Encoding"
    assert gzip.decompress(body) == PAGE
