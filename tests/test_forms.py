"""Invariant 4: oversized, malformed, hostile or non-UTF-8 input gets a clear page in the sender's language."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from httpx2 import Response
from PIL import Image
from starlette.requests import Request
from starlette.testclient import TestClient
from starlette.types import Message

from app.budget import MemoryBudget
from app.forms import Pace, read_form
from app.main import build_site, create_app
from app.relay import Form
from app.routes import Site
from app.settings import Settings
from tests.helpers import form_fields, hidden_fields
from tests.mailsink import Sink
from tests.served import Served, serve, smtp_settings

URLENCODED = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def small_site(sink: Sink, make_settings: Callable[..., Settings]) -> Site:
    """Limits small enough to exceed cheaply: 1 000 bytes of uploads (+64 KiB for text and framing)."""
    return build_site(make_settings(sink, max_upload_bytes=1000))


@pytest.fixture
def small_client(small_site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(small_site.settings, site=small_site)) as test_client:
        yield test_client


def _assert_clear_page(response: Response, status: int, phrase: str) -> None:
    assert response.status_code == status
    assert "<html lang=" in response.text
    assert phrase in response.text


MULTIPART_B = {"content-type": "multipart/form-data; boundary=B"}
WORDS = {
    "category": "smuggling", "what": "Xe tải chở hàng lậu qua đường mòn.", "where": "Bản Nậm Chim",
    "when": "Đêm qua", "contact": "Zalo 0912", "receipt": "1234 5678 9012 3456",
}  # fmt: skip


def _multipart(fields: dict[str, str], files: list[tuple[str, bytes]], *, files_first: bool = False) -> bytes:
    """A multipart body as a browser sends it (boundary B): the text parts, the file parts, or files first."""
    text = [
        b'--B\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + value.encode() + b"\r\n"
        for name, value in fields.items()
    ]
    attached = [
        b'--B\r\nContent-Disposition: form-data; name="' + name.encode() + b'"; filename="IMG_1.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n"
        for name, data in files
    ]
    return b"".join(attached + text if files_first else text + attached) + b"--B--\r\n"


def _assert_words_kept_and_files_asked_again(response: Response) -> None:
    """The form back (413) with every word typed, and at the photo input: too big, choose them again."""
    assert response.status_code == 413, response.text
    assert 'name="t" value="' in response.text  # the form, with a fresh token: not the bare error page
    for value in WORDS.values():
        assert value in response.text
    assert (
        '<p class="error" id="photo-error">Ảnh, ghi âm quá lớn: tổng cộng tối đa 1 MB. '
        "Ảnh, ghi âm chưa được gửi: hãy chọn lại."
        in response.text
    )
    assert "IMG_1.jpg" not in response.text


@pytest.mark.parametrize("files_first", [False, True], ids=["text-first", "files-first"])
def test_files_over_the_limit_give_the_form_back_with_every_word(
    small_client: TestClient, small_site: Site, sink: Sink, files_first: bool
) -> None:
    # 100 KB of photos: past the 66 KB body limit, within the four times it that is read on to find the text.
    files = [("photo", bytes(60_000)), ("voice", bytes(40_000))]
    body = _multipart({**form_fields(small_client), **WORDS}, files, files_first=files_first)
    response = small_client.post("/", content=body, headers=MULTIPART_B)
    _assert_words_kept_and_files_asked_again(response)
    assert '<p class="error" id="voice-error">Ảnh, ghi âm chưa được gửi: hãy chọn lại.' in response.text
    assert sink.handler.messages == []
    assert small_site.budget.used == 0


def test_a_body_that_grows_past_the_limit_as_it_streams_keeps_its_words(
    small_client: TestClient, small_site: Site, sink: Sink
) -> None:
    body = _multipart({**form_fields(small_client), **WORDS}, [("photo", bytes(100_000))])

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    # Declared under the limit, larger as it arrives: the files go once it passes the limit.
    response = small_client.post("/", content=chunks(), headers={**MULTIPART_B, "content-length": "60000"})
    _assert_words_kept_and_files_asked_again(response)
    assert sink.handler.messages == []
    assert small_site.budget.used == 0


def test_a_body_read_on_past_its_limit_no_longer_holds_its_sources_upload_share() -> None:
    """Its files are dropped: the text read on to the end must not keep one of the source's two upload slots (one
    sender, or everyone behind the same carrier address, would get "busy" for photos for as long as it trickles)."""
    budget = MemoryBudget(10_000_000)
    body = _multipart(WORDS, [("photo", bytes(400_000))])
    chunks = [body[start : start + 4096] for start in range(0, len(body), 4096)]
    shares: list[int] = []

    async def receive() -> Message:
        if len(chunks) in (70, 10):  # holding its photo (past the allowance), then read on past the limit
            shares.append(sum(budget.uploads.values()))
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    # Declared under the limit, larger as it arrives (a declared excess would drop the files from the start).
    headers = [(b"content-type", b"multipart/form-data; boundary=B"), (b"content-length", b"150000")]
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": headers}, receive)

    async def read() -> Form:
        with budget.hold("source") as hold:
            return await read_form(request, 200_000, hold)

    form = asyncio.run(read())
    assert form.too_large and form.uploads == [] and form.fields["what"] == WORDS["what"]
    assert shares == [1, 0]
    assert budget.uploads == {} and budget.used == 0


def test_a_body_declared_over_the_hard_limit_is_refused_unread(small_client: TestClient, sink: Sink) -> None:
    pulled: list[int] = []

    def body() -> Iterator[bytes]:
        for index in range(400):
            pulled.append(index)
            yield b"x" * 4096

    # 1.6 MB declared: over four times the 66 KB limit, so not worth reading for its text.
    response = small_client.post("/", content=body(), headers={**MULTIPART_B, "content-length": str(400 * 4096)})
    _assert_clear_page(response, 413, "Gửi quá nhiều")
    assert 'name="t"' not in response.text
    assert len(pulled) < 400  # refused on the declared length, before the body was read whole
    assert sink.handler.messages == []


def test_a_body_streamed_past_the_hard_limit_is_cut_off(small_client: TestClient, small_site: Site, sink: Sink) -> None:
    head = _multipart(form_fields(small_client), [])[: -len(b"--B--\r\n")]
    head += b'--B\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n'

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(400):
            yield b"x" * 4096

    response = small_client.post("/", content=body(), headers={**MULTIPART_B, "content-length": "60000"})
    _assert_clear_page(response, 413, "Gửi quá nhiều")
    assert sink.handler.messages == []
    assert small_site.budget.used == 0


def test_a_large_urlencoded_body_is_refused_before_it_is_parsed(client: TestClient, sink: Sink) -> None:
    # The real form is multipart; urlencoded carries no files, so 64 KiB is plenty. Parsing and cleaning 18 MB of
    # line breaks would hold the event loop for seconds before the token was even checked.
    fields = form_fields(client)
    body = "&".join(f"{name}={value}" for name, value in fields.items()) + "&category=other&what=" + "%0A" * 30_000
    response = client.post("/", content=body.encode(), headers=URLENCODED)
    _assert_clear_page(response, 413, "Gửi quá nhiều")
    pulled: list[int] = []

    def huge() -> Iterator[bytes]:
        for index in range(400):
            pulled.append(index)
            yield b"what=" + b"%0A" * 4096 if index == 0 else b"%0A" * 4096

    response = client.post("/", content=huge(), headers={**URLENCODED, "content-length": str(18_000_000)})
    _assert_clear_page(response, 413, "Gửi quá nhiều")
    assert len(pulled) < 400
    assert sink.handler.messages == []


def test_a_streamed_urlencoded_body_is_cut_off(small_client: TestClient, sink: Sink) -> None:
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
    assert "Hãy viết chuyện gì đã xảy ra, hoặc ghi âm." in response.text
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
    assert "Thov sau tias muaj dab tsi tshwm sim, los yog kaw koj lub suab." in response.text


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


ATTACKER = "127.0.9.1"


def _burst(served: Served, size: int, token: str | None) -> socket.socket:
    """A connection that sends a form with a file of `size` bytes at once, then nothing more: its body unfinished."""
    text = {"t": token, "hp_extra": ""} if token is not None else {}
    head = _multipart(text, [])[: -len(b"--B--\r\n")]
    head += b'--B\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    length = len(head) + size + len(b"\r\n--B--\r\n")
    sock = socket.create_connection((served.host, served.port), timeout=30, source_address=(ATTACKER, 0))
    sock.sendall(
        f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {length}"
        "\r\n\r\n".encode() + head + b"\xff\xd8\xff" + bytes(size - 3)
    )
    return sock


@pytest.mark.e2e
@pytest.mark.parametrize("with_tokens", [False, True], ids=["no-token", "tokens"])
def test_connections_holding_the_upload_memory_leave_residents_photos_delivered(
    sink: Sink, tmp_path: Path, with_tokens: bool
) -> None:
    """Issue 15's attack, a tenth the size, against `tipbox serve`: eleven connections from one address each send
    1.88 MB of a photo at once (together all the 20 MB the uploads may hold) and then wait, their bodies unfinished.
    Residents' photos from other addresses are still delivered: a connection without a token of ours holds no
    memory for its file, and one address holds at most two uploads' worth."""
    settings = smtp_settings(
        sink, TIPBOX_MIN_FILL_SECONDS="0", TIPBOX_MAX_UPLOAD_BYTES="2000000", TIPBOX_UPLOAD_MEMORY_BYTES="20000000",
        TIPBOX_SOURCE_RATE="",
    )
    photo = io.BytesIO()
    Image.merge("RGB", [Image.effect_noise((1000, 800), 90).convert("L") for _ in range(3)]).save(photo, "JPEG")
    assert 300_000 < len(photo.getvalue()) < 1_900_000  # past the 64 KiB a request has of its own
    with serve(tmp_path, settings) as served, contextlib.ExitStack() as held:
        for _ in range(11):
            token = hidden_fields(httpx2.get(served.url + "/").text)["t"] if with_tokens else None
            held.enter_context(_burst(served, 1_880_000, token))
        time.sleep(1.0)  # the server has taken the bursts in
        statuses = []
        for n in range(3):
            transport = httpx2.HTTPTransport(local_address=f"127.0.9.{10 + n}")
            with httpx2.Client(transport=transport, base_url=served.url, timeout=60) as client:
                fields = {**hidden_fields(client.get("/").text), **WORDS, "receipt": "", "what": f"Ảnh số {n}"}
                files = [("photo", ("IMG_1.jpg", photo.getvalue(), "image/jpeg"))]
                statuses.append(client.post("/", data=fields, files=files).status_code)
    assert statuses == [200, 200, 200]
    delivered = sink.handler.parsed()
    assert len(delivered) == 3
    assert all(any(part.get_content_type() == "image/jpeg" for part in message.walk()) for message in delivered)


def test_a_burst_buys_one_window_not_an_hour() -> None:
    """18 MB at once, then a byte every 10 s: cut off 30 s after the burst (an average since the start allowed
    37 minutes), while a slow phone that keeps sending is never cut off."""
    trickle = Pace(0.0)
    trickle.add(1.0, 18_000_000)
    for second in (11.0, 21.0):
        trickle.add(second, 1)
        assert trickle.deadline() == min(31.0, second + 15)  # the window, or 15 s of silence: whichever is first
    phone = Pace(0.0)
    for second in range(1, 1000):  # 20 KB a second over a poor 3G link: 20 MB in 1000 s
        phone.add(float(second), 20_000)
        assert phone.deadline() == second + 15  # only silence could cut it off, never its rate
    edge = Pace(0.0)
    for second in range(1, 61):  # a 300 KB voice note over EDGE in a village, 5 KB a second
        edge.add(float(second), 5_000)
        assert edge.deadline() == second + 15
    quiet = Pace(0.0)
    quiet.add(2.0, 3_000)  # a text tip's first bytes, then nothing: the first window, or 15 s of silence
    assert quiet.deadline() == 17.0


@pytest.mark.e2e
def test_a_tokenless_file_streamed_without_its_length_is_cut_off_at_the_allowance(sink: Sink, tmp_path: Path) -> None:
    """Its bytes are held by no one, yet a body of unknown length gets 64 KiB and a 413, not a read to the end."""
    part = b'--B\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n" + b"%x\r\n%s\r\n" % (len(part), part)
    )
    with serve(tmp_path, smtp_settings(sink)) as served, socket.create_connection(
        (served.host, served.port), timeout=10
    ) as sock:
        sock.sendall(head)
        answer, sent = b"", 0
        for _ in range(1000):  # up to 8 MB, in 8 KiB chunks, reading the answer as it comes
            try:
                sock.sendall(b"2000\r\n" + b"\xff" * 8192 + b"\r\n")
            except OSError:
                break
            sent += 8192
            sock.settimeout(0.01)
            with contextlib.suppress(TimeoutError):
                answer += sock.recv(65536)
            sock.settimeout(10)
            if b"\r\n\r\n" in answer:
                break
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert sent < 1000 * 8192
