"""A resident's phone: Debian's Chromium as Zalo's in-app browser (360x640, touch), against `tipbox serve`.

The service runs as a real uvicorn process relaying to a real aiosmtpd server; every tip is found there and read.
One browser for the module; a fresh context (a fresh phone) per test. Screenshots go to test-artifacts/; with
UPDATE_DOCS_SCREENSHOTS=1 the first screen of the form in each language is also written to docs/.
"""

from __future__ import annotations

import base64
import email
import email.policy
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from PIL import Image

from tests import media
from tests.helpers import SECRET, require
from tests.mailsink import Sink, free_port

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "test-artifacts"
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
BUDGET = 14 * 1024
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ZALO_UA = (
    "Mozilla/5.0 (Linux; Android 10; SM-A105F Build/QP1A; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/80.0.3987.99 Mobile Safari/537.36 Zalo android/12100728 ZaloTheme/light ZaloLanguage/vi"
)
WORDS = {
    "vi": {"category": "drugs", "what": "Có người lạ bán ma túy ở chợ phiên Na Cô Sa, sáng chủ nhật.",
           "where": "Chợ phiên, bản Na Cô Sa", "when": "Chủ nhật, 7 giờ sáng", "send": "Gửi", "sent": "Đã gửi."},
    "hmn": {"category": "border", "what": "Muaj ob tug neeg hla ciam teb thaum tsaus ntuj ntawm lub roob.",
            "where": "Ze lub zos Huổi Lếch", "when": "Nag hmo thaum tsaus ntuj", "send": "Xa", "sent": "Xa lawm."},
}


@dataclass
class Service:
    url: str
    sink: Sink

    def messages_with(self, text: str) -> list[EmailMessage]:
        found = []
        for message in self.sink.handler.parsed():
            body = message.get_body(("plain",))
            if body is not None and text in body.get_content():
                found.append(message)
        return found


@dataclass
class Phone:
    """One browser context: a phone with Zalo, recording every request it makes."""

    context: Any
    page: Any
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # The guard refuses forms sent faster than a person could fill them; a test fills in milliseconds.
    with running_service(tmp_path_factory.mktemp("browser"), TIPBOX_MIN_FILL_SECONDS="0") as running:
        yield running


@pytest.fixture(scope="module")
def strict_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The default minimum fill time (3 s), and 1 MB of files at most."""
    with running_service(tmp_path_factory.mktemp("strict"), TIPBOX_MAX_UPLOAD_BYTES="1000000") as running:
        yield running


@contextmanager
def running_service(root: Path, **settings: str) -> Iterator[Service]:
    """`tipbox serve` relaying to a fresh sink, with `settings` (TIPBOX_*) in its environment."""
    sink = Sink().start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
    env.update(
        TIPBOX_SMTP_HOST="127.0.0.1", TIPBOX_SMTP_PORT=str(sink.port), TIPBOX_SMTP_SECURITY="none",
        TIPBOX_MAIL_FROM="tipbox@example.vn", TIPBOX_MAILBOX="post@example.vn", TIPBOX_SECRET_KEY=SECRET,
        **settings,
    )
    tipbox = Path(sys.executable).parent / "tipbox"
    log = (root / "tipbox.log").open("wb")
    process = subprocess.Popen(
        [str(tipbox), "serve", "--port", str(port)], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (root / "tipbox.log").read_text()
            try:
                if httpx2.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "tipbox serve did not answer"
            time.sleep(0.1)
        yield Service(url, sink)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        sink.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require("chromium", "chromium")
    if not AXE.is_file():
        message = "axe-core missing: npm ci --prefix tests/browser (`make test` does it)"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def phone(browser: Any, service: Service, *, js: bool, accept_language: str = "vi-VN,vi;q=0.9") -> Phone:
    context = browser.new_context(
        viewport={"width": 360, "height": 640}, device_scale_factor=2, is_mobile=True, has_touch=True,
        user_agent=ZALO_UA, java_script_enabled=js, extra_http_headers={"Accept-Language": accept_language},
    )
    result = Phone(context, context.new_page())
    context.on("request", lambda request: result.requests.append(request.url))
    return result


def same_origin_only(device: Phone, service: Service) -> None:
    origin = urlsplit(service.url)
    others = [
        url for url in device.requests
        if urlsplit(url).scheme not in ("data", "about", "blob") and urlsplit(url)[:2] != origin[:2]
    ]
    assert device.requests and others == []


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations, every rule on (WCAG 2.0-2.2 A and AA, and best practices)."""
    page.evaluate(AXE.read_text(encoding="utf-8"))  # evaluated by the test, so the page's CSP does not apply
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "nodes": [n["html"] for n in v["nodes"]]} for v in result["violations"]]


def screenshot(page: Any, name: str, *, docs: str | None = None) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, scale="css")
    if docs and os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        page.screenshot(path=str(ROOT / "docs" / docs), scale="css")


def tap_category(page: Any, slug: str) -> None:
    page.locator("label.cat", has=page.locator(f"#cat-{slug}")).tap()


def fill_tip(page: Any, words: dict[str, str]) -> None:
    tap_category(page, words["category"])
    page.fill("#what", words["what"])
    page.fill("#where", words["where"])
    page.fill("#when", words["when"])


def send(page: Any) -> Any:
    with page.expect_navigation():
        page.locator("button[type=submit]").tap()
    return page


def check_sent(page: Any, service: Service, words: dict[str, str]) -> str:
    receipt = page.locator("#receipt").inner_text()
    assert page.locator("h1").inner_text().startswith(words["sent"])
    assert page.locator("svg.check").is_visible()
    # The same words may have been sent from another phone earlier in the session: each form is its own email.
    code = receipt.replace(" ", "")
    messages = [m for m in service.messages_with(words["what"]) if code in m["Subject"].replace(" ", "")]
    assert len(messages) == 1
    body = messages[0].get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert words["where"] in text and words["when"] in text and receipt in text
    assert receipt.replace(" ", "") in messages[0]["Subject"].replace(" ", "")
    return receipt


@pytest.mark.parametrize(("language", "js"), [("vi", True), ("hmn", True), ("vi", False), ("hmn", False)])
def test_a_resident_sends_a_tip(browser: Any, service: Service, language: str, js: bool) -> None:
    words = WORDS[language]
    device = phone(browser, service, js=js)
    page = device.page
    response = page.goto(service.url + "/")
    if language != "vi":
        with page.expect_navigation() as navigation:
            page.locator(f"a[hreflang={language}]").tap()  # the language switch at the top, one tap
        response = navigation.value
    assert response.ok and response.headers["content-encoding"] == "gzip"
    assert page.locator("html").get_attribute("lang") == language
    name = f"{language}-{'js' if js else 'nojs'}"
    screenshot(page, f"form-{name}", docs=f"form-{language}.png" if js else None)
    if js:
        assert axe_violations(page) == []
    fill_tip(page, words)
    if js:
        # Zalo reloads the page in the middle of typing: the draft survives.
        page.reload()
        assert page.input_value("#what") == words["what"]
        assert page.input_value("#where") == words["where"]
        assert page.is_checked(f"#cat-{words['category']}")
    send(page)
    screenshot(page, f"sent-{name}")
    check_sent(page, service, words)
    if js:
        assert axe_violations(page) == []
        drafts = page.evaluate("() => Object.keys(sessionStorage).filter(k => k.indexOf('tipbox-draft:') === 0)")
        assert drafts == []
    same_origin_only(device, service)
    device.context.close()


def test_a_restored_draft_sent_at_once_waits_for_the_minimum_fill_time(browser: Any, strict_service: Service) -> None:
    """Zalo reloads the page, the draft comes back, the resident taps Send at once: the script holds the form back
    until the guard would take it for a person's, and the tip arrives (not the bot's decoy page)."""
    words = WORDS["vi"] | {"what": "Có người lạ dắt trâu qua biên giới, gửi ngay sau khi tải lại."}
    device = phone(browser, strict_service, js=True)
    page = device.page
    posts = record_posts(page)
    page.goto(strict_service.url + "/")
    assert page.get_attribute("form[data-draft]", "data-min-fill") == "3"
    fill_tip(page, words)
    page.reload()
    assert page.input_value("#what") == words["what"]
    started = time.monotonic()
    with page.expect_navigation(timeout=15_000):
        page.locator("button[type=submit]").tap()
        assert page.locator("button[type=submit]").get_attribute("aria-disabled") == "true"
    assert time.monotonic() - started >= 2.5  # held back (the page loaded a few ms before the tap)
    check_sent(page, strict_service, words)
    assert len(posts) == 1
    device.context.close()


def test_the_draft_keeps_no_contact(browser: Any, service: Service) -> None:
    device = phone(browser, service, js=True)
    page = device.page
    page.goto(service.url + "/")
    fill_tip(page, WORDS["vi"])
    page.fill("#contact", "Zalo 0912 345 678")
    drafts = page.evaluate(
        "() => Object.keys(sessionStorage).filter(k => k.indexOf('tipbox-draft:') === 0).map(k => sessionStorage[k])"
    )
    assert len(drafts) == 1 and WORDS["vi"]["where"] in drafts[0]
    assert "0912" not in drafts[0] and "contact" not in drafts[0]
    page.reload()
    assert page.input_value("#where") == WORDS["vi"]["where"]
    assert page.input_value("#contact") == ""
    device.context.close()


def test_a_form_shown_from_the_back_forward_cache_is_loaded_afresh(browser: Any, service: Service) -> None:
    device = phone(browser, service, js=True)
    page = device.page
    page.goto(service.url + "/?lang=vi#what")
    page.fill("#what", "Đang viết dở.")
    token = page.get_attribute("input[name=t]", "value")
    # What the browser fires when it shows the page again from its back/forward cache (headless Chromium keeps no
    # no-store page there, so the event is dispatched by hand).
    with page.expect_navigation():
        page.evaluate("() => window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
    page.wait_for_load_state()
    assert page.get_attribute("input[name=t]", "value") != token  # a fresh form, fetched with a GET
    assert page.input_value("#what") == "Đang viết dở."  # the draft brought the words back
    device.context.close()


def test_files_over_the_limit_are_stopped_on_the_phone_with_the_text_kept(
    browser: Any, strict_service: Service
) -> None:
    device = phone(browser, strict_service, js=True)
    page = device.page
    posts = record_posts(page)
    page.goto(strict_service.url + "/")
    recording = {"name": "Recording_001.m4a", "mimeType": "audio/mp4", "buffer": bytes(1_200_000)}
    page.set_input_files("#voice", files=[recording])
    words = WORDS["vi"] | {"what": "Ghi âm quá dài."}
    fill_tip(page, words)
    page.locator("button[type=submit]").tap()
    page.wait_for_selector("#voice-error")
    assert page.inner_text("#voice-error") == "Các tệp quá lớn: tổng cộng tối đa 1 MB."
    assert page.get_attribute("#voice", "aria-invalid") == "true"
    assert page.input_value("#what") == words["what"]
    assert page.locator("button[type=submit]").get_attribute("aria-disabled") is None
    page.wait_for_timeout(500)
    assert posts == [] and strict_service.messages_with(words["what"]) == []
    # A smaller recording goes (once the minimum fill time has passed).
    page.set_input_files("#voice", files=[recording | {"buffer": bytes(10_000)}])
    with page.expect_navigation(timeout=15_000):
        page.locator("button[type=submit]").tap()
    assert len(posts) == 1
    device.context.close()


def test_the_form_fits_one_round_trip_and_needs_nothing_else(browser: Any, service: Service) -> None:
    for js in (True, False):
        device = phone(browser, service, js=js, accept_language="hmn")
        response = device.page.goto(service.url + "/")
        assert response.headers["content-encoding"] == "gzip"
        sizes = response.request.sizes()
        assert sizes["responseBodySize"] <= BUDGET
        assert sizes["responseBodySize"] + sizes["responseHeadersSize"] <= BUDGET
        device.page.wait_for_load_state("networkidle")
        pages_fetched = [u for u in device.requests if "/static/" not in u and not u.startswith("data:")]
        assert pages_fetched == [service.url + "/"]  # one response renders the whole form
        same_origin_only(device, service)
        device.context.close()


def test_the_compressed_form_is_the_plain_form_byte_for_byte(browser: Any, service: Service) -> None:
    """The form is kept compressed with a slot for its token (app/pagecache.py): Chromium reads exactly the page."""
    device = phone(browser, service, js=False)
    address = service.url + "/p/post/more?lang=hmn"
    response = device.page.goto(address)
    assert response.headers["content-encoding"] == "gzip"
    token = device.page.locator("input[name=t]").get_attribute("value")
    plain = httpx2.get(address, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    other = re.findall(rb'name="t" value="([^"]*)"', plain.content)
    assert len(other) == 1 and token.encode() != other[0]
    assert response.body() == plain.content.replace(other[0], token.encode())
    device.context.close()


def test_problems_are_announced_and_the_text_is_kept(browser: Any, service: Service) -> None:
    device = phone(browser, service, js=True, accept_language="hmn")
    page = device.page
    page.goto(service.url + "/")
    page.fill("#where", WORDS["hmn"]["where"])
    send(page)
    assert page.evaluate("() => document.activeElement.id") == "problems"
    assert page.locator("#problems").get_attribute("role") == "alert"
    assert page.input_value("#where") == WORDS["hmn"]["where"]
    assert page.locator("#what").get_attribute("aria-invalid") == "true"
    screenshot(page, "error-hmn-js")
    assert axe_violations(page) == []
    page.locator("#problems a[href='#what']").tap()
    fill_tip(page, WORDS["hmn"] | {"what": "Muaj neeg nyiag nyuj hauv zos.", "category": "theft"})
    send(page)
    check_sent(page, service, WORDS["hmn"] | {"what": "Muaj neeg nyiag nyuj hauv zos."})
    same_origin_only(device, service)
    device.context.close()


@pytest.mark.parametrize("js", [True, False])
def test_leave_quickly(browser: Any, service: Service, js: bool) -> None:
    device = phone(browser, service, js=js)
    page = device.page
    page.goto(service.url + "/")
    page.fill("#what", "nửa chừng")
    with page.expect_navigation():
        page.locator("a.leave").tap()
    assert urlsplit(page.url).path == "/calendar"
    assert "tố giác" not in page.content()
    page.go_back()
    if js:
        # location.replace: the form is gone from history, and so is the draft.
        assert page.url == "about:blank"
        page.goto(service.url + "/")
        assert page.input_value("#what") == ""
    else:
        assert urlsplit(page.url).path == "/"
    same_origin_only(device, service)
    device.context.close()


def test_photos_are_shrunk_on_the_phone_before_sending(browser: Any, service: Service) -> None:
    device = phone(browser, service, js=True)
    page = device.page
    page.goto(service.url + "/")
    # A 4000x3000 camera photo, made in the page: noise, so JPEG cannot squeeze it much.
    data = page.evaluate(
        """() => { const c = document.createElement('canvas'); c.width = 4000; c.height = 3000;
        const x = c.getContext('2d'); const img = x.createImageData(4000, 3000);
        for (let i = 0; i < img.data.length; i++) img.data[i] = (i * 2654435761 >>> 24) & 255;
        x.putImageData(img, 0, 0); return c.toDataURL('image/jpeg', 0.92).split(',')[1]; }"""
    )
    original = base64.b64decode(data)
    page.set_input_files("#photo", files=[{"name": "IMG_2024.jpg", "mimeType": "image/jpeg", "buffer": original}])
    page.wait_for_function("() => document.getElementById('photo-size').textContent.indexOf('\\u2192') > 0")
    assert "MB" in page.inner_text("#photo-size")
    # What the form will send is what the input now holds: read it back from the page.
    chosen = page.evaluate(
        """() => new Promise(done => { const f = document.getElementById('photo').files;
        const r = new FileReader(); r.onload = () => done({count: f.length, name: f[0].name, type: f[0].type,
        data: r.result.split(',')[1]}); r.readAsDataURL(f[0]); })"""
    )
    shrunk = base64.b64decode(chosen["data"])
    assert chosen["count"] == 1 and chosen["type"] == "image/jpeg" and chosen["name"] == "photo.jpg"
    assert len(shrunk) < len(original) // 4
    with Image.open(io.BytesIO(shrunk)) as photo:
        assert photo.size == (1600, 1200)
    fill_tip(page, WORDS["vi"] | {"what": "Ảnh chụp ở chợ."})
    send(page)
    message = service.messages_with("Ảnh chụp ở chợ.")[0]
    check_sent(page, service, WORDS["vi"] | {"what": "Ảnh chụp ở chợ."})
    same_origin_only(device, service)
    device.context.close()
    # Photos sit in the HTML part's multipart/related (shown in place), not among the top-level attachments.
    attachments = [part for part in message.walk() if part.get_filename()]
    images = [part for part in attachments if part.get_content_maintype() == "image"]
    assert len(images) == 1
    with Image.open(io.BytesIO(images[0].get_content())) as attached:
        assert max(attached.size) <= 1600


def camera_photo() -> bytes:
    """A 3000x2000 phone photo with its camera's metadata: GPS position, model, owner, maker note (tests/media.py)."""
    grain = Image.effect_noise((3000, 2000), 40).convert("RGB")
    sky = Image.linear_gradient("L").resize((3000, 2000)).convert("RGB")
    out = io.BytesIO()
    Image.blend(sky, grain, 0.3).save(out, "JPEG", quality=90, exif=media.exif(), xmp=media.XMP.encode())
    return out.getvalue()


def record_posts(page: Any) -> list[Any]:
    """The POST requests the page sends, with their bodies as they leave the browser."""
    posts: list[Any] = []

    def handle(route: Any) -> None:
        if route.request.method == "POST":
            posts.append(route.request)
        route.continue_()

    page.route("**/*", handle)
    return posts


def sent_files(request: Any, name: str) -> list[bytes]:
    """The files of input `name` in a multipart request, byte for byte as sent."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + request.post_data_buffer, policy=email.policy.default)
    return [
        part.get_payload(decode=True)
        for part in message.iter_parts()
        if part.get_param("filename", header="content-disposition") and part.get_param(
            "name", header="content-disposition"
        ) == name
    ]


def leaked(data: bytes) -> list[bytes]:
    return [secret for secret in media.SECRETS if secret in data]


@pytest.mark.parametrize("js", [True, False])
def test_a_phone_photo_leaves_without_its_metadata(browser: Any, service: Service, js: bool) -> None:
    """With JavaScript the phone shrinks the photo and drops its metadata before sending; without, the server
    cleans what the phone sent as it was. Either way the officer gets a bare JPEG named photo-1.jpg."""
    original = camera_photo()
    assert len(leaked(original)) >= 5
    device = phone(browser, service, js=js)
    page = device.page
    posts = record_posts(page)
    page.goto(service.url + "/")
    chosen = {"name": "IMG_20240506_secret-name.jpg", "mimeType": "image/jpeg", "buffer": original}
    page.set_input_files("#photo", files=[chosen])
    if js:
        page.wait_for_function("() => document.getElementById('photo-size').textContent.indexOf('\\u2192') > 0")
    what = f"Ảnh chiếc xe máy lạ ở bến đò ({'js' if js else 'no js'})."
    fill_tip(page, WORDS["vi"] | {"what": what})
    send(page)
    check_sent(page, service, WORDS["vi"] | {"what": what})

    (post,) = posts
    (sent,) = sent_files(post, "photo")
    if js:
        assert len(sent) < len(original) // 4
        assert leaked(sent) == [] and b"Exif" not in sent
        with Image.open(io.BytesIO(sent)) as photo:
            assert max(photo.size) == 1600
    else:
        assert sent == original  # as it came from the camera: the server must clean it
    (message,) = service.messages_with(what)
    (attached,) = [part for part in message.walk() if part.get_filename()]
    assert (attached.get_filename(), attached.get_content_type()) == ("photo-1.jpg", "image/jpeg")
    data = attached.get_content()
    assert leaked(data) == [] and b"Exif" not in data
    with Image.open(io.BytesIO(data)) as photo:
        assert photo.format == "JPEG" and max(photo.size) == (1600 if js else 2560)
    assert not [raw for raw in service.sink.handler.messages if b"secret-name" in raw]
    same_origin_only(device, service)
    device.context.close()
