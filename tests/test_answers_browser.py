"""A resident reads the post's answer on a phone (Debian's Chromium as Zalo's browser, 360x640, JavaScript off and
on) and sends a follow-up from that same page. The officer's reply goes through `tipbox answer`, as from Postfix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import replies
from tests.helpers import SECRET
from tests.test_browser import (
    WORDS,
    Service,
    axe_violations,
    browser,
    check_sent,
    fill_tip,
    phone,
    running_service,
    same_origin_only,
    screenshot,
    send,
    tap_category,
)

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the module fixture, collected from here

REPLY_TO = "answers@example.vn"


@pytest.fixture(scope="module")
def answering(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Path]]:
    root = tmp_path_factory.mktemp("answers-browser")
    with running_service(root, TIPBOX_MIN_FILL_SECONDS="0", TIPBOX_REPLY_TO=REPLY_TO) as running:
        yield running, root


def _officer_answers(service: Service, root: Path, code: str, text: str) -> None:
    """The officer presses Reply in Gmail; the mail system pipes the reply to `tipbox answer`."""
    (tip,) = [m for m in service.sink.handler.parsed() if code in str(m["Subject"]) and m["X-Tipbox-Kind"] == "tip"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
    env.update(
        TIPBOX_SMTP_HOST="127.0.0.1", TIPBOX_SMTP_PORT=str(service.sink.port), TIPBOX_SMTP_SECURITY="none",
        TIPBOX_MAIL_FROM="tipbox@example.vn", TIPBOX_MAILBOX="post@example.vn", TIPBOX_SECRET_KEY=SECRET,
        TIPBOX_REPLY_TO=REPLY_TO,
    )
    raw = replies.gmail(tip, text, sender="post@example.vn")
    tipbox = Path(sys.executable).parent / "tipbox"
    done = subprocess.run([str(tipbox), "answer"], input=raw, env=env, cwd=root, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")


@pytest.mark.parametrize("js", [False, True])
def test_a_resident_reads_the_answer_and_follows_up_from_that_page(
    browser: Any, answering: tuple[Service, Path], js: bool
) -> None:
    service, root = answering
    words = WORDS["vi"] | {"what": f"Có người lạ ở bến đò ({'js' if js else 'nojs'})."}
    device = phone(browser, service, js=js)
    page = device.page
    page.goto(service.url + "/")
    fill_tip(page, words)
    send(page)
    assert "Đồn có thể trả lời: vài ngày nữa hãy quay lại với mã này." in page.locator("main").inner_text()
    code = check_sent(page, service, words)
    answer = "Cảm ơn anh. Họ đi thuyền màu gì? Mấy người?"
    _officer_answers(service, root, code, answer)

    page.goto(service.url + "/more")
    page.fill("#code", code)
    with page.expect_navigation() as navigation:
        page.locator("button.read").tap()
    response = navigation.value
    assert response.status == 200 and "no-store" in response.headers["cache-control"]
    assert code.replace(" ", "") not in page.url.replace(" ", "").replace("%20", "")
    assert page.locator(".answer .text").all_inner_texts() == [answer]
    assert page.locator(".answer .when").count() == 1
    screenshot(page, f"answers-{'js' if js else 'nojs'}")
    if js:
        assert axe_violations(page) == []

    # Answer back from the same page: the code is already in the follow-up form.
    assert page.input_value("#receipt") == code
    tap_category(page, "drugs")
    page.fill("#what", "Thuyền màu xanh, ba người.")
    with page.expect_navigation():
        page.locator("form[data-draft] button[type=submit]").tap()  # the follow-up form's Send
    assert page.locator("#receipt").inner_text() == code
    follow_ups = [m for m in service.sink.handler.parsed() if m["X-Tipbox-Kind"] == "follow-up"
                  and code in str(m["Subject"])]
    assert len(follow_ups) == 1
    first = [m for m in service.sink.handler.parsed() if m["X-Tipbox-Kind"] == "tip" and code in str(m["Subject"])]
    assert follow_ups[0]["In-Reply-To"] == first[0]["Message-ID"]
    same_origin_only(device, service)
    device.context.close()
