"""Tips without writing: a recording made on the page, or a voice note or a photo alone, reach the post's mailbox
cleaned, and the officer is told plainly that the sender wrote nothing.

Debian's Chromium with a fake microphone (a tone, allowed without asking), against a real `tipbox serve` relaying
to a real SMTP sink (tests/phones.py).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import av
import pytest
from mutagen.mp4 import MP4

from app.attachments import Upload, clean
from tests import media, phones
from tests.phones import CHROME_UA, ZALO_UA, Service, axe_violations, phone, record_posts, same_origin_only, sent_files

pytestmark = pytest.mark.browser

WROTE_NOTHING = {
    "voice": "Người gửi không viết gì: nội dung tin báo nằm trong bản ghi âm đính kèm.",
    "photo": "Người gửi không viết gì: nội dung tin báo nằm trong ảnh đính kèm.",
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with phones.running_service(tmp_path_factory.mktemp("voice"), TIPBOX_MIN_FILL_SECONDS="0") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from phones.chromium(*phones.FAKE_MICROPHONE)


def record(page: Any, seconds: float) -> None:
    """Tap to speak, let the running time pass `seconds`, and stop."""
    page.locator("#rec-start").tap()
    page.wait_for_selector("#rec-on", state="visible")
    assert page.evaluate("() => document.activeElement.id") == "rec-stop"
    running = "parseInt(document.getElementById('rec-time').textContent.split(':')[1])"
    page.wait_for_function(f"() => {running} >= {seconds}")


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def voice_notes(message: EmailMessage) -> list[tuple[str | None, str, bytes]]:
    return [(part.get_filename(), part.get_content_type(), part.get_content())
            for part in message.walk() if part.get_content_maintype() == "audio"]


@pytest.mark.parametrize("language", ["vi", "hmn"])
def test_a_recording_made_on_the_page_arrives_as_a_cleaned_voice_note(
    browser: Any, service: Service, language: str
) -> None:
    device = phone(browser, service, js=True, accept_language=language, user_agent=CHROME_UA)
    page = device.page
    posts = record_posts(page)
    page.goto(service.url + "/")
    phones.tap_category(page, "smuggling")
    record(page, 2)
    assert axe_violations(page) == []  # while recording
    page.locator("#rec-stop").tap()
    page.wait_for_selector("#voice-list li")
    assert page.locator("#voice-list audio").is_visible()
    assert not page.locator("#rec-start").is_visible()  # "record again" stands beside the recording instead
    chosen = page.evaluate("() => { const f = document.getElementById('voice').files[0]; return [f.type, f.size]; }")
    assert chosen[0].startswith("audio/webm") and chosen[1] > 1000
    phones.screenshot(page, f"recorded-{language}")
    assert axe_violations(page) == []
    phones.send(page)  # nothing written: the recording is the tip
    receipt = page.locator("#receipt").inner_text()

    (post,) = posts
    (sent,) = sent_files(post, "voice")
    message = phones.message_for(service, receipt)
    (note,) = voice_notes(message)
    filename, content_type, data = note
    assert (filename, content_type) == ("voice-1.webm", "audio/webm")
    assert data != sent  # re-muxed by the server, not forwarded as the phone made it
    assert 1.5 <= media.decoded_seconds(data) <= 30  # FFmpeg (av) decodes it: about the time recorded
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
    assert WROTE_NOTHING["voice"] in plain_text(message)
    same_origin_only(device, service)
    device.context.close()


def test_send_while_recording_sends_the_recording(browser: Any, service: Service) -> None:
    device = phone(browser, service, js=True, user_agent=CHROME_UA)
    page = device.page
    page.goto(service.url + "/")
    phones.tap_category(page, "drugs")
    page.fill("#what", "Ghi âm dở thì bấm Gửi luôn.")
    record(page, 1)
    with page.expect_navigation(timeout=15_000):
        page.locator("button[type=submit]").tap()
    receipt = page.locator("#receipt").inner_text()
    (note,) = voice_notes(phones.message_for(service, receipt))
    assert media.decoded_seconds(note[2]) >= 0.8
    device.context.close()


def test_record_again_replaces_the_recording(browser: Any, service: Service) -> None:
    device = phone(browser, service, js=True, user_agent=CHROME_UA)
    page = device.page
    page.goto(service.url + "/")
    record(page, 1)
    page.locator("#rec-stop").tap()
    page.wait_for_selector("#voice-list li")
    page.locator("#voice-list button").first.tap()  # "Record again"
    page.wait_for_selector("#rec-on", state="visible")
    assert page.evaluate("() => document.getElementById('voice').files.length") == 0
    page.wait_for_function("() => parseInt(document.getElementById('rec-time').textContent.split(':')[1]) >= 1")
    page.locator("#rec-stop").tap()
    page.wait_for_selector("#voice-list li")
    assert page.evaluate("() => document.getElementById('voice').files.length") == 1
    device.context.close()


@pytest.mark.parametrize("kind", ["voice", "photo"])
@pytest.mark.parametrize("js", [True, False])
def test_a_voice_note_or_a_photo_alone_is_a_tip(browser: Any, service: Service, kind: str, js: bool) -> None:
    """In Zalo (the file input, no recorder), with and without the script: a category, a file, nothing written."""
    device = phone(browser, service, js=js, user_agent=ZALO_UA)
    page = device.page
    page.goto(service.url + "/")
    phones.tap_category(page, "border")
    file = (
        {"name": "Recording 7.m4a", "mimeType": "audio/mp4", "buffer": media.m4a(2.0)}
        if kind == "voice" else {"name": "IMG_7.jpg", "mimeType": "image/jpeg", "buffer": media.jpeg((640, 480))}
    )
    page.set_input_files(f"#{kind}", files=[file])
    if js:
        page.wait_for_selector(f"#{kind}-list li")
    assert page.input_value("#what") == ""
    phones.send(page)
    assert page.locator("svg.check").is_visible()
    message = phones.message_for(service, page.locator("#receipt").inner_text())
    text = plain_text(message)
    assert WROTE_NOTHING[kind] in text
    attached = [part for part in message.walk() if part.get_content_maintype() in ("audio", "image")]
    assert [part.get_content_maintype() for part in attached] == [{"voice": "audio", "photo": "image"}[kind]]
    same_origin_only(device, service)
    device.context.close()


def test_nothing_at_all_is_still_refused(browser: Any, service: Service) -> None:
    device = phone(browser, service, js=False)
    page = device.page
    page.goto(service.url + "/")
    phones.tap_category(page, "other")
    phones.send(page)
    assert page.locator("#what-error").inner_text() == "Hãy viết chuyện gì đã xảy ra, hoặc ghi âm."
    device.context.close()


def test_what_chromium_records_as_mp4_is_cleaned(browser: Any, service: Service) -> None:
    device = phone(browser, service, js=True, user_agent=CHROME_UA)
    page = device.page
    page.goto(service.url + "/")
    recorded = page.evaluate(
        """() => navigator.mediaDevices.getUserMedia({audio: true}).then(stream => new Promise(done => {
        const recorder = new MediaRecorder(stream, {mimeType: 'audio/mp4', audioBitsPerSecond: 32000});
        const chunks = [];
        recorder.ondataavailable = event => chunks.push(event.data);
        recorder.onstop = () => { stream.getTracks().forEach(t => t.stop());
            new Blob(chunks).arrayBuffer().then(b => done(Array.from(new Uint8Array(b)))); };
        recorder.start(1000); setTimeout(() => recorder.stop(), 2000); }))"""
    )
    device.context.close()
    (cleaned,) = clean([Upload("voice", bytes(recorded))], max_files=5, max_bytes=20_000_000)
    assert bytes(recorded).count(b"moof") >= 2  # fragmented, as MediaRecorder writes MP4
    assert cleaned.filename == "voice-1.m4a" and media.decoded_seconds(cleaned.data) >= 1.5
    assert b"moof" not in cleaned.data and mp4_boxes(cleaned.data) == [b"ftyp", b"moov", b"mdat"]


# Safari before iOS 18.4: MediaRecorder makes MP4 and nothing else.
ONLY_MP4 = """(() => { const supported = MediaRecorder.isTypeSupported.bind(MediaRecorder);
    MediaRecorder.isTypeSupported = type => type.startsWith('audio/mp4') && supported(type); })()"""


def test_a_browser_that_records_only_mp4_sends_a_cleaned_m4a(browser: Any, service: Service) -> None:
    device = phone(browser, service, js=True, user_agent=CHROME_UA)
    page = device.page
    page.add_init_script(ONLY_MP4)
    page.goto(service.url + "/")
    phones.tap_category(page, "smuggling")
    record(page, 2)
    page.locator("#rec-stop").tap()
    page.wait_for_selector("#voice-list li")
    chosen = page.evaluate("() => { const f = document.getElementById('voice').files[0]; return [f.type, f.name]; }")
    assert chosen[0].startswith("audio/mp4") and chosen[1] == "voice.m4a"
    phones.send(page)
    (note,) = voice_notes(phones.message_for(service, page.locator("#receipt").inner_text()))
    filename, content_type, data = note
    assert (filename, content_type) == ("voice-1.m4a", "audio/mp4")
    assert b"moof" not in data and 1.5 <= media.decoded_seconds(data) <= 30
    parsed = MP4(io.BytesIO(data))
    assert parsed.info.length >= 1.5 and not parsed.tags
    same_origin_only(device, service)
    device.context.close()


def mp4_boxes(data: bytes) -> list[bytes]:
    kinds, pos = [], 0
    while pos < len(data):
        kinds.append(data[pos + 4 : pos + 8])
        pos += int.from_bytes(data[pos : pos + 4], "big")
    return kinds
