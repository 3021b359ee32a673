"""The form on a small phone: Send on the second screen, file buttons in the page's language, photos shown and
removable, a voice note's length, and the recorder offered only where the page may use the microphone.

Debian's Chromium at 360x640 with touch, against a real `tipbox serve` (tests/phones.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import media, phones
from tests.phones import CHROME_UA, ZALO_UA, Service, axe_violations, phone, same_origin_only, screenshot

pytestmark = pytest.mark.browser

SCREENS = 2 * 640  # "two screens to Send" at 360x640
PICK = {
    "vi": {"photo": "Chụp hoặc chọn ảnh", "voice": "Ghi âm lời nói", "choose": "Hoặc chọn bản ghi âm có sẵn",
           "speak": "Bấm để nói", "kind": "Ghi âm", "remove": "Bỏ ảnh này"},
    "hmn": {"photo": "Thaij los yog xaiv duab", "voice": "Kaw koj lub suab",
            "choose": "Los yog xaiv ib lub suab kaw lawm", "speak": "Nias ces hais lus", "kind": "Suab kaw",
            "remove": "Tshem daim duab no"},
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with phones.running_service(tmp_path_factory.mktemp("form"), TIPBOX_MIN_FILL_SECONDS="0") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from phones.chromium()


def top_of(page: Any, selector: str) -> float:
    """Where an element's top is, in CSS pixels from the top of the page."""
    return float(page.evaluate(f"() => document.querySelector('{selector}').getBoundingClientRect().top + scrollY"))


@pytest.mark.parametrize("language", ["vi", "hmn"])
@pytest.mark.parametrize(("js", "agent"), [(True, ZALO_UA), (False, ZALO_UA), (True, CHROME_UA)])
def test_send_is_on_the_second_screen(browser: Any, service: Service, language: str, js: bool, agent: str) -> None:
    """With nothing typed; in Chrome the recorder's button is shown too, so the form is at its tallest."""
    device = phone(browser, service, js=js, accept_language=language, user_agent=agent)
    page = device.page
    page.goto(service.url + "/")
    assert page.locator("html").get_attribute("lang") == language
    assert page.viewport_size == {"width": 360, "height": 640}
    assert page.locator("#rec").is_visible() == (js and agent == CHROME_UA)
    send_top = top_of(page, "button[type=submit]")
    print(f"Send's top, {language}, {'JS' if js else 'no JS'}, {'Chrome' if agent == CHROME_UA else 'Zalo'}: "
          f"{send_top:.0f} px")
    assert send_top <= SCREENS
    assert page.locator("#details").get_attribute("open") is None
    same_origin_only(device, service)
    device.context.close()


@pytest.mark.parametrize("language", ["vi", "hmn"])
@pytest.mark.parametrize("js", [True, False])
def test_file_buttons_speak_the_pages_language_and_take_the_focus(
    browser: Any, service: Service, language: str, js: bool
) -> None:
    device = phone(browser, service, js=js, accept_language=language)
    page = device.page
    page.goto(service.url + "/")
    words = PICK[language]
    for name in ("voice", "photo"):
        label = page.locator(f"label[for={name}]")
        assert label.inner_text().strip() == words[name]
        assert label.bounding_box()["height"] >= 48
        box = page.locator(f"#{name}").bounding_box()
        assert box is not None and box["width"] <= 1 and box["height"] <= 1  # out of sight, still in the page
    # The keyboard reaches each input, and its label shows the focus.
    page.focus("#what")
    for name in ("voice", "photo"):
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.id") == name
        outline = page.evaluate(f"() => getComputedStyle(document.querySelector('label[for={name}]')).outlineStyle")
        assert outline == "solid"
    same_origin_only(device, service)
    device.context.close()


def test_photos_show_as_thumbnails_add_up_and_can_be_removed(browser: Any, service: Service) -> None:
    device = phone(browser, service, js=True)
    page = device.page
    page.goto(service.url + "/")
    first = [{"name": f"IMG_{n}.jpg", "mimeType": "image/jpeg", "buffer": media.jpeg((400 + n, 300))} for n in (1, 2)]
    page.set_input_files("#photo", files=first)
    page.wait_for_function("() => document.querySelectorAll('#photo-list img').length === 2")
    # Chosen again: added to the first two, not in their place.
    page.set_input_files("#photo", files=[{"name": "IMG_3.jpg", "mimeType": "image/jpeg",
                                           "buffer": media.jpeg((403, 300))}])
    page.wait_for_function("() => document.querySelectorAll('#photo-list img').length === 3")
    assert page.evaluate("() => document.getElementById('photo').files.length") == 3
    thumbnail = page.locator("#photo-list img").first
    assert thumbnail.get_attribute("src").startswith("blob:") and thumbnail.is_visible()
    remove = page.locator("#photo-list button").nth(1)
    assert remove.inner_text() == PICK["vi"]["remove"]
    screenshot(page, "photos-vi-js")
    assert axe_violations(page) == []
    remove.tap()
    assert page.locator("#photo-list img").count() == 2
    widths = page.evaluate(
        """() => Promise.all(Array.from(document.getElementById('photo').files).map(f => createImageBitmap(f)
        .then(b => b.width)))"""
    )
    assert widths == [401, 403]  # the second photo is gone from what the form sends
    phones.tap_category(page, "smuggling")
    page.fill("#what", "Hai ảnh xe chở hàng lậu qua suối.")
    phones.send(page)
    receipt = page.locator("#receipt").inner_text()
    photos = [p for p in phones.message_for(service, receipt).walk() if p.get_content_maintype() == "image"]
    assert len(photos) == 2
    same_origin_only(device, service)
    device.context.close()


@pytest.mark.parametrize("language", ["vi", "hmn"])
def test_a_chosen_voice_note_shows_its_length_and_can_be_removed(browser: Any, service: Service, language: str) -> None:
    device = phone(browser, service, js=True, accept_language=language)
    page = device.page
    page.goto(service.url + "/")
    page.set_input_files("#voice", files=[{"name": "Recording 12.m4a", "mimeType": "audio/mp4",
                                           "buffer": media.m4a(3.0)}])
    length = f"{PICK[language]['kind']} 0:03"
    page.wait_for_function(f"() => document.getElementById('voice-list').textContent.indexOf('{length}') === 0")
    assert page.locator("#voice-list audio").is_visible()
    assert "Recording 12" not in page.inner_text("#voice-list")  # the phone's file name is not shown back either
    assert axe_violations(page) == []
    page.locator("#voice-list button").tap()
    assert page.locator("#voice-list li").count() == 0
    assert page.evaluate("() => document.getElementById('voice').files.length") == 0
    assert page.evaluate("() => document.activeElement.id") == "voice"
    device.context.close()


@pytest.mark.parametrize("language", ["vi", "hmn"])
def test_zalo_gets_the_file_input_and_is_never_asked_for_the_microphone(
    browser: Any, service: Service, language: str
) -> None:
    device = phone(browser, service, js=True, accept_language=language, user_agent=ZALO_UA)
    page = device.page
    page.goto(service.url + "/")
    assert not page.locator("#rec").is_visible()
    assert page.locator("label[for=voice]").inner_text().strip() == PICK[language]["voice"]
    assert page.get_attribute("#voice", "capture") is not None  # Android opens its sound recorder at once
    device.context.close()


@pytest.mark.parametrize("language", ["vi", "hmn"])
def test_where_the_microphone_is_refused_the_file_input_comes_back(
    browser: Any, service: Service, language: str
) -> None:
    """Chrome without the microphone allowed (this browser has no device and grants nothing): the refusal is said,
    and the file button records as it does without the script."""
    device = phone(browser, service, js=True, accept_language=language, user_agent=CHROME_UA)
    page = device.page
    page.goto(service.url + "/")
    assert page.locator("#rec-start").inner_text().strip() == PICK[language]["speak"]
    assert page.locator("label[for=voice]").inner_text().strip() == PICK[language]["choose"]
    assert page.get_attribute("#voice", "capture") is None
    assert axe_violations(page) == []
    page.locator("#rec-start").tap()
    page.wait_for_selector("#rec-blocked", state="visible")
    assert not page.locator("#rec-start").is_visible()
    assert page.locator("label[for=voice]").inner_text().strip() == PICK[language]["voice"]
    assert page.get_attribute("#voice", "capture") is not None
    assert page.evaluate("() => document.activeElement.id") == "voice"
    screenshot(page, f"microphone-refused-{language}")
    assert axe_violations(page) == []
    device.context.close()


def test_the_draft_follows_the_resident_into_the_other_language(browser: Any, service: Service) -> None:
    """A Vietnamese poster's code, then the Hmong switch: the language is in the address, the words stay."""
    device = phone(browser, service, js=True, accept_language="vi")
    page = device.page
    page.goto(service.url + "/P/POST/VI")
    page.fill("#what", "Sáng nay có xe lạ.")
    with page.expect_navigation():
        page.locator("a[hreflang=hmn]").tap()
    assert page.url == service.url + "/p/post/hmn" and page.locator("html").get_attribute("lang") == "hmn"
    assert page.input_value("#what") == "Sáng nay có xe lạ."
    assert page.get_attribute("form", "action") == "/p/post/hmn"
    device.context.close()
