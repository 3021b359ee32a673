"""A resident's phone for the browser tests: Debian's Chromium at 360x640 with touch, as Zalo's in-app browser (or
Chrome opened from the camera's QR scan), against a real `tipbox serve` relaying to a real SMTP sink."""

from __future__ import annotations

import email
import email.policy
import os
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

from tests.helpers import SECRET, require
from tests.mailsink import Sink, free_port

ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "test-artifacts"
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A microphone that plays a tone, allowed without asking: what a resident who taps "allow" gives the page.
FAKE_MICROPHONE = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
ZALO_UA = (
    "Mozilla/5.0 (Linux; Android 10; SM-A105F Build/QP1A; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/80.0.3987.99 Mobile Safari/537.36 Zalo android/12100728 ZaloTheme/light ZaloLanguage/vi"
)
# Chrome itself, as the camera app's QR scan opens it.
CHROME_UA = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36"
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
    """One browser context: a phone, recording every request it makes."""

    context: Any
    page: Any
    requests: list[str] = field(default_factory=list)


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


def chromium(*extra: str) -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (never a downloaded browser), for a module's tests."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = require("chromium", "chromium")
    if not AXE.is_file():
        message = "axe-core missing: npm ci --prefix tests/browser (`make test` does it)"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=[*CHROMIUM_ARGS, *extra])
        yield launched
        launched.close()


def phone(browser: Any, service: Service, *, js: bool, accept_language: str = "vi-VN,vi;q=0.9",
          user_agent: str = ZALO_UA) -> Phone:
    context = browser.new_context(
        viewport={"width": 360, "height": 640}, device_scale_factor=2, is_mobile=True, has_touch=True,
        user_agent=user_agent, java_script_enabled=js, extra_http_headers={"Accept-Language": accept_language},
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


def open_details(page: Any) -> None:
    """Unfold "Add details (where, when, contact)" if it is folded."""
    if page.get_attribute("#details", "open") is None:
        page.locator("#details summary").tap()


def fill_tip(page: Any, words: dict[str, str]) -> None:
    tap_category(page, words["category"])
    page.fill("#what", words["what"])
    open_details(page)
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
    assert words.get("where", "") in text and words.get("when", "") in text and receipt in text
    return receipt


def message_for(service: Service, receipt: str) -> EmailMessage:
    """The one email whose subject carries `receipt`."""
    code = receipt.replace(" ", "")
    (message,) = [m for m in service.sink.handler.parsed() if code in m["Subject"].replace(" ", "")]
    return message


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
