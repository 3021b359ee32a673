"""app/relay.py with files: cleaned before they leave, shown to the officer, refused by position with the text kept.

Every tip goes through the app to a real aiosmtpd server; what it received is read back byte for byte.
"""

from __future__ import annotations

import email
import email.policy
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

import pytest
from httpx2 import Response
from PIL import Image
from starlette.testclient import TestClient

from app import tips
from app.main import build_site, create_app
from app.routes import Site
from app.settings import Settings
from tests import media
from tests.helpers import form_fields
from tests.mailsink import Sink

WHAT = "Có người lạ bán ma túy ở chợ phiên, ảnh và ghi âm kèm theo."
PHONE_NAMES = (
    "IMG_2024_secret-name.jpg",
    "Screenshot_secret-chat.png",
    "Recording_secret-voice.m4a",
    "Zalo_secret-note.mp3",
)
HTML = b"<!DOCTYPE html>\n<html><head><title>photo</title></head><body>not a photo</body></html>"
MULTIPART_B = {"content-type": "multipart/form-data; boundary=B"}
Files = list[tuple[str, tuple[str, bytes, str]]]


@contextmanager
def app_client(
    sink: Sink, make_settings: Callable[..., Settings], **overrides: Any
) -> Iterator[tuple[TestClient, Site]]:
    """A client of the app with `overrides`, and what it serves (to look at the upload budget)."""
    site = build_site(make_settings(sink, **overrides))
    with TestClient(create_app(site.settings, site=site)) as test_client:
        yield test_client, site


def send(client: TestClient, files: Files, **fields: str) -> Response:
    """The form as a phone posts it (multipart), with `files` chosen in its file inputs."""
    data = {**form_fields(client), "category": "drugs", "what": WHAT, **fields}
    return client.post("/", data=data, files=files)


def received(sink: Sink) -> tuple[bytes, EmailMessage]:
    (raw,) = sink.handler.messages
    return raw, email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def files_of(message: EmailMessage) -> dict[str, EmailMessage]:
    return {part.get_filename() or "": part for part in message.walk() if part.get_filename()}  # type: ignore[misc]


def noisy_jpeg() -> bytes:
    """A photo too big for a request's own allowance (noise does not compress)."""
    out = io.BytesIO()
    Image.effect_noise((400, 300), 80).convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue()


def test_files_arrive_cleaned_named_by_kind_and_shown_inline(client: TestClient, sink: Sink) -> None:
    portrait = media.jpeg((800, 600), orientation=6)  # stored landscape, shown upright by its orientation tag
    originals = [portrait, media.png(), media.m4a(), media.mp3()]
    files: Files = [
        ("photo", (PHONE_NAMES[0], portrait, "image/jpeg")),
        ("photo", (PHONE_NAMES[1], originals[1], "image/png")),
        ("voice", (PHONE_NAMES[2], originals[2], "audio/mp4")),
        ("voice", (PHONE_NAMES[3], originals[3], "audio/mpeg")),
    ]
    assert all(len([secret for secret in media.SECRETS if secret in data]) >= 3 for data in originals)

    response = send(client, files)

    assert response.status_code == 200, response.text
    raw, message = received(sink)
    # Nothing that came with the files, in any part or header: names, model, coordinates, tag values.
    for name in PHONE_NAMES:
        assert name.encode() not in raw and name.rsplit(".", 1)[0].encode() not in raw
    distinctive = [secret for secret in media.SECRETS if len(secret) >= 8]  # short ones occur in base64 by chance
    assert [secret for secret in distinctive if secret in raw] == []
    attached = files_of(message)
    assert list(attached) == ["photo-1.jpg", "photo-2.jpg", "voice-1.m4a", "voice-2.mp3"]
    for part in attached.values():
        data = part.get_content()
        assert [secret for secret in media.SECRETS if secret in data] == []
    with Image.open(io.BytesIO(attached["photo-1.jpg"].get_content())) as photo:
        assert (photo.format, photo.size) == ("JPEG", (600, 800))  # upright
        assert not photo.getexif() and "exif" not in photo.info
    with Image.open(io.BytesIO(attached["photo-2.jpg"].get_content())) as photo:
        assert photo.format == "JPEG"
    assert media.decoded_seconds(attached["voice-1.m4a"].get_content()) == pytest.approx(1.0, abs=0.1)
    assert media.decoded_seconds(attached["voice-2.mp3"].get_content()) == pytest.approx(1.0, abs=0.1)
    assert [attached[name].get_content_type() for name in attached] == [
        "image/jpeg", "image/jpeg", "audio/mp4", "audio/mpeg"
    ]  # fmt: skip


def test_photos_sit_in_the_html_parts_related_and_voice_notes_are_attachments(client: TestClient, sink: Sink) -> None:
    files: Files = [
        ("photo", ("a.jpg", media.jpeg(), "image/jpeg")),
        ("photo", ("b.webp", media.webp(), "image/webp")),
        ("voice", ("c.ogg", media.ogg_opus(), "audio/ogg")),
    ]
    assert send(client, files).status_code == 200
    _, message = received(sink)
    shape = [(part.get_content_type(), part.get_content_disposition()) for part in message.walk()]
    assert shape == [
        ("multipart/mixed", None),
        ("multipart/alternative", None),
        ("text/plain", None),
        ("multipart/related", None),
        ("text/html", None),
        ("image/jpeg", "inline"),
        ("image/jpeg", "inline"),
        ("audio/ogg", "attachment"),
    ]
    related = next(part for part in message.walk() if part.get_content_type() == "multipart/related")
    assert related.get_param("type") == "text/html"
    html = message.get_body(("html",))
    plain = message.get_body(("plain",))
    assert html is not None and plain is not None
    html_text, plain_text = html.get_content(), plain.get_content().replace("\r\n", "\n")
    cids = [str(part["Content-ID"]).strip("<>") for part in message.walk() if part.get_content_maintype() == "image"]
    assert len(cids) == 2 and len(set(cids)) == 2
    for cid in cids:
        assert f'<img src="cid:{cid}"' in html_text
    listed = r"Tệp đính kèm \(3\):\n1\. Ảnh JPEG, \d+ KB\n2\. Ảnh JPEG, \d+ KB\n3\. Ghi âm OGG, \d+ KB"
    assert re.search(listed, plain_text)
    assert html_text.count("<li>Ảnh JPEG, ") == 2 and "<li>Ghi âm OGG, " in html_text


def test_a_tip_without_files_stays_two_parts(client: TestClient, sink: Sink) -> None:
    empty: Files = [("photo", ("", b"", "application/octet-stream")), ("voice", ("", b"", "application/octet-stream"))]
    assert send(client, empty).status_code == 200  # no file chosen: the browser still sends empty file parts
    _, message = received(sink)
    assert [part.get_content_type() for part in message.walk()] == [
        "multipart/alternative", "text/plain", "text/html"
    ]  # fmt: skip
    assert "Tệp đính kèm" not in message.as_string()


@pytest.mark.parametrize(("field", "file", "kind", "said"), [
    ("voice", ("Recording 3.m4a", media.m4a(), "audio/mp4"), "audio", "bản ghi âm đính kèm."),
    ("photo", ("IMG_3.jpg", media.jpeg((400, 300)), "image/jpeg"), "image", "ảnh đính kèm."),
])
def test_a_voice_note_or_a_photo_alone_is_delivered_and_the_officer_told_nothing_was_written(
    client: TestClient, sink: Sink, field: str, file: tuple[str, bytes, str], kind: str, said: str
) -> None:
    response = send(client, [(field, file)], what="")
    assert response.status_code == 200 and 'class="receipt"' in response.text
    _, message = received(sink)
    assert [part.get_content_maintype() for part in message.walk() if part.get_filename()] == [kind]
    for subtype in ("plain", "html"):
        body = message.get_body((subtype,))
        assert body is not None
        assert f"Người gửi không viết gì: nội dung tin báo nằm trong {said}" in body.get_content()


def test_with_nothing_written_a_refused_file_is_the_only_problem(client: TestClient, sink: Sink) -> None:
    """The sender meant the file to be the tip: no "write what happened" beside "this is not a recording"."""
    response = send(client, [("voice", ("a.m4a", HTML, "audio/mp4"))], what="")
    assert response.status_code == 422
    assert '<p class="error" id="voice-error">Ảnh, ghi âm thứ 1: Đây không phải ảnh hay ghi âm.' in response.text
    assert 'id="what-error"' not in response.text
    nothing = send(client, [], what="")
    assert nothing.status_code == 422 and "Hãy viết chuyện gì đã xảy ra, hoặc ghi âm." in nothing.text
    assert sink.handler.messages == []


def given_back(response: Response, status: int) -> str:
    """The form given back with the sender's words, a fresh token, and no trace of their files' names."""
    assert response.status_code == status, response.text
    assert WHAT in response.text and 'name="t" value="' in response.text
    for name in (*PHONE_NAMES, "b.jpg"):
        assert name not in response.text
    return response.text


def test_an_html_file_named_jpg_is_refused_by_its_position_with_the_text_kept(client: TestClient, sink: Sink) -> None:
    files: Files = [("photo", ("a.jpg", media.jpeg(), "image/jpeg")), ("photo", ("b.jpg", HTML, "image/jpeg"))]
    page = given_back(send(client, files, where="Chợ phiên"), 422)
    assert (
        '<p class="error" id="photo-error">Ảnh, ghi âm thứ 2: Đây không phải ảnh hay ghi âm. '
        "Ảnh, ghi âm chưa được gửi: " in page
    )
    assert 'aria-invalid="true" aria-describedby="photo-error photo-list"' in page
    assert 'value="Chợ phiên"' in page
    assert sink.handler.messages == []


def test_text_and_file_problems_come_back_together(client: TestClient, sink: Sink) -> None:
    files: Files = [("photo", ("a.jpg", media.jpeg(), "image/jpeg")), ("voice", ("b.jpg", HTML, "audio/mp4"))]
    response = client.post("/?lang=hmn", data={**form_fields(client, "/"), "what": WHAT}, files=files)
    page = given_back(response, 422)
    assert 'id="category"' in page and "category-error" in page  # no category chosen
    assert '<p class="error" id="voice-error">Duab, suab 2: Qhov no tsis yog duab los yog suab kaw.' in page
    # The photo was fine, but a browser cannot fill a file input back in: it must be chosen again too.
    assert '<p class="error" id="photo-error">Cov duab, suab tseem tsis tau xa: thov xaiv dua.</p>' in page
    assert sink.handler.messages == []


def test_a_text_problem_asks_for_the_files_again(client: TestClient, sink: Sink) -> None:
    page = given_back(send(client, [("photo", ("a.jpg", media.jpeg(), "image/jpeg"))], category="aliens"), 422)
    assert '<p class="error" id="photo-error">Ảnh, ghi âm chưa được gửi: hãy chọn lại.</p>' in page
    assert sink.handler.messages == []


def test_too_many_files_are_refused_with_the_text_kept(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    with app_client(sink, make_settings, max_files=2) as (client, _site):
        files: Files = [("photo", (f"{n}.jpg", media.jpeg(), "image/jpeg")) for n in range(2)]
        page = given_back(send(client, [*files, ("voice", ("v.m4a", media.m4a(), "audio/mp4"))]), 422)
    assert '<p class="error" id="voice-error">Ảnh, ghi âm thứ 3: Quá nhiều ảnh, ghi âm: tối đa 2.' in page
    assert sink.handler.messages == []


def test_too_many_bytes_are_refused_with_the_text_kept(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    photo = media.jpeg((400, 300))
    with app_client(sink, make_settings, max_upload_bytes=len(photo) + 100) as (client, _site):
        files: Files = [("photo", ("a.jpg", photo, "image/jpeg")), ("photo", ("b.jpg", photo, "image/jpeg"))]
        page = given_back(send(client, files), 422)
    assert "Ảnh, ghi âm thứ 2: Ảnh, ghi âm quá lớn: tổng cộng tối đa 1 MB." in page  # the limit, in whole MB
    assert sink.handler.messages == []


def test_a_photo_that_cannot_be_decoded_is_refused_after_the_quick_checks(client: TestClient, sink: Sink) -> None:
    broken = media.jpeg()[:200]  # a JPEG's start: it passes for one until it is decoded
    page = given_back(send(client, [("photo", ("a.jpg", broken, "image/jpeg"))]), 422)
    assert "Ảnh, ghi âm thứ 1: Không mở được ảnh này." in page
    assert sink.handler.messages == []
    # The refusal freed the form's token: the same form, with a good photo, is sent.
    token = re.search(r'name="t" value="([^"]+)"', page)
    assert token is not None
    fields = {**form_fields(client), "t": token.group(1), "category": "drugs", "what": WHAT}
    assert client.post("/", data=fields, files=[("photo", ("a.jpg", media.jpeg(), "image/jpeg"))]).status_code == 200


def test_past_the_upload_memory_budget_the_sender_is_told_busy_with_the_text_kept(
    sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    big = b"\xff\xd8\xff" + bytes(8_000_000)  # past the 64 KiB every request has of its own, and the budget
    # A small photo's decode reserves its memory (about 4 MB) in the same budget (app.attachments.images).
    with app_client(sink, make_settings, upload_memory_bytes=6_000_000) as (client, site):
        page = given_back(send(client, [("photo", ("a.jpg", big, "image/jpeg"))], where="Bản Nậm Chim"), 503)
        assert "Lúc này có quá nhiều ảnh, ghi âm đang được gửi. Tin của bạn chưa được gửi: hãy chờ vài phút" in page
        assert 'value="Bản Nậm Chim"' in page
        assert site.budget.used == 0
        # A text tip never waits on the budget, and a small photo fits in the request's own allowance.
        assert send(client, [("photo", ("a.jpg", media.jpeg(), "image/jpeg"))]).status_code == 200
        assert site.budget.used == 0
    assert len(sink.handler.messages) == 1


def test_the_budget_is_given_back_after_every_outcome(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    with app_client(sink, make_settings, upload_memory_bytes=10_000_000) as (client, site):
        photo = noisy_jpeg()
        assert len(photo) > 64 * 1024
        for files in ([("photo", ("a.jpg", photo, "image/jpeg"))], [("photo", ("a.jpg", HTML + photo, "image/jpeg"))]):
            send(client, files)
            assert site.budget.used == 0
    assert len(sink.handler.messages) == 1


def test_text_after_the_dropped_files_is_still_read(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    # As a browser sends the form: the file inputs come before "where" and "contact".
    with app_client(sink, make_settings, upload_memory_bytes=1000) as (client, site):
        fields = {**form_fields(client), "category": "drugs", "what": WHAT}
        parts = [(name, None, value.encode()) for name, value in fields.items()]
        parts += [("photo", "a.jpg", noisy_jpeg()), ("photo", "b.jpg", noisy_jpeg()), ("voice", "", b"")]
        parts += [("where", None, "Bến đò Nậm Chim".encode()), ("contact", None, b"Zalo 0912")]
        body = b"".join(
            b"--B\r\nContent-Disposition: form-data; name=\"" + name.encode() + b'"'
            + (b'; filename="' + filename.encode() + b'"' if filename is not None else b"") + b"\r\n\r\n" + value
            + b"\r\n"
            for name, filename, value in parts
        ) + b"--B--\r\n"  # fmt: skip
        page = given_back(client.post("/", content=body, headers=MULTIPART_B), 503)
        assert 'value="Bến đò Nậm Chim"' in page and 'value="Zalo 0912"' in page
        assert site.budget.used == 0
    assert sink.handler.messages == []


def test_a_body_without_its_length_gets_its_allowance_only(client: TestClient, site: Site, sink: Sink) -> None:
    # Browsers always declare a form's length: a stream of unknown length is cut off past the request's allowance.
    fields = {**form_fields(client), "category": "drugs", "what": WHAT}
    head = b"".join(
        b'--B\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + value.encode() + b"\r\n"
        for name, value in fields.items()
    )

    def body() -> Iterator[bytes]:
        yield head + b'--B\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n'
        yield noisy_jpeg() + b"\r\n--B--\r\n"

    response = client.post("/", content=body(), headers=MULTIPART_B)
    assert response.status_code == 413 and "Gửi quá nhiều cùng lúc" in response.text
    assert site.budget.used == 0 and sink.handler.messages == []
    # Without a token its file is held by no one, and it is still cut off past the allowance (not read to the end and
    # answered as a bot's).
    def tokenless() -> Iterator[bytes]:
        yield b'--B\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n'
        yield from (b"\xff" * 8192 for _ in range(200))

    assert client.post("/", content=tokenless(), headers=MULTIPART_B).status_code == 413


def test_a_form_given_back_for_another_reason_asks_for_the_files_again(
    sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    photo: Files = [("photo", ("a.jpg", media.jpeg(), "image/jpeg"))]
    with app_client(sink, make_settings, post_rate="1/hour") as (client, _):
        assert send(client, photo, what="Tin thứ nhất.").status_code == 200
        limited = send(client, photo)  # the post's limit: 429, the text kept
        assert limited.status_code == 429 and WHAT in limited.text
        assert "hãy chờ một lúc rồi bấm nút Gửi một lần nữa. Ảnh, ghi âm chưa được gửi: hãy chọn lại." in limited.text
    sink.handler.reply = "451 4.3.0 try later"
    with app_client(sink, make_settings) as (client, _site):
        failed = send(client, photo)  # the mail server said not now: 503, the text kept
        assert failed.status_code == 503
        assert "Chưa gửi được. Hãy bấm nút Gửi một lần nữa. Ảnh, ghi âm chưa được gửi" in failed.text
        assert send(client, []).status_code == 503
        assert "Ảnh, ghi âm chưa được gửi" not in send(client, []).text  # no files, nothing to choose again


def test_a_bot_is_answered_before_its_fields_are_read(
    client: TestClient, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unread(fields: object) -> dict[str, str]:
        raise AssertionError("a bot's fields were read")

    monkeypatch.setattr(tips, "read_fields", unread)
    page = client.post("/", data={"hp_extra": "http://spam.example", "category": "drugs", "what": WHAT})  # no token
    assert page.status_code == 200 and 'id="receipt"' in page.text
    assert sink.handler.messages == []


# The mail server's refusals for good: sending the same again cannot work, so the sender is told what can.
TOO_LARGE_TO_MAIL = "Hãy gửi đoạn ghi âm ngắn hơn hoặc ít ảnh hơn."
CANNOT_RECEIVE = "lúc này đồn chưa nhận được tin báo. Hãy giữ lại những gì bạn đã viết và thử lại vào hôm khác."
SEND_AGAIN = "bấm Gửi lại"


@pytest.mark.parametrize(
    ("reply", "with_photo", "status", "notice"),
    [
        ("552 5.3.4 Message size exceeds fixed limit", True, 413, TOO_LARGE_TO_MAIL),  # Postfix's message_size_limit
        ("552 5.3.4 Message size exceeds fixed limit", False, 503, CANNOT_RECEIVE),  # no files to leave out
        ("552 5.2.2 Mailbox full", True, 503, CANNOT_RECEIVE),  # the other 552: fewer photos would not help
        ("554 5.7.1 Relay access denied", True, 503, CANNOT_RECEIVE),
        ("550 5.1.1 User unknown", False, 503, CANNOT_RECEIVE),
    ],
)
def test_a_refusal_for_good_says_what_to_do_never_send_again(
    sink: Sink, make_settings: Callable[..., Settings], reply: str, with_photo: bool, status: int, notice: str
) -> None:
    sink.handler.reply = reply
    photo: Files = [("photo", ("a.jpg", media.jpeg(), "image/jpeg"))] if with_photo else []
    with app_client(sink, make_settings) as (client, _):
        page = send(client, photo, where="Chợ phiên Na Cô Sa")
    assert page.status_code == status
    assert notice in page.text and SEND_AGAIN not in page.text
    assert WHAT in page.text and "Chợ phiên Na Cô Sa" in page.text  # everything typed is kept
    assert ("Ảnh, ghi âm chưa được gửi: hãy chọn lại." in page.text) is with_photo
    assert sink.handler.attempts == 1  # not retried: the answer would be the same


def test_a_refused_login_is_for_good_too(
    server_tls: Any, ca_file: Any, make_settings: Callable[..., Settings]
) -> None:
    secure = Sink("starttls", server_tls, auth=True).start()
    try:
        with app_client(secure, make_settings, smtp_username="post@example.vn", smtp_password="wrong",
                        smtp_ca_file=ca_file) as (client, _):
            page = send(client, [])
    finally:
        secure.stop()
    assert page.status_code == 503 and CANNOT_RECEIVE in page.text and SEND_AGAIN not in page.text
