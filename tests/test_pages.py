"""The resident's pages as served: language, markup for phones and screen readers, weight, safety, translations."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from starlette.testclient import TestClient

from app import i18n, pages, rendering
from app.categories import CATEGORIES
from app.main import create_app
from app.settings import Post, Settings
from app.tips import Problem
from tests.helpers import post_tip
from tests.mailsink import Sink

ROOT = Path(__file__).parent.parent
BUDGET = 14 * 1024  # one round trip on a fresh connection (10 TCP segments)
POST = Post("ncs", "Đồn Biên phòng Na Cô Sa", "nacosa@example.vn", ("vi", "hmn"))


class _Elements(HTMLParser):
    """Every start tag with its attributes, in document order, and the text of <style> and <title>."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[str, str] = {}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        self._open = tag if tag in ("style", "title", "script") else None

    def handle_data(self, data: str) -> None:
        if self._open:
            self.texts[self._open] = self.texts.get(self._open, "") + data

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


def find(page: _Elements, tag: str, **attrs: str) -> list[dict[str, str]]:
    return [a for t, a in page.elements if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]


def one(page: _Elements, tag: str, **attrs: str) -> dict[str, str]:
    found = find(page, tag, **attrs)
    assert len(found) == 1, (tag, attrs, found)
    return found[0]


def test_form_declares_its_language_and_links_the_others(client: TestClient) -> None:
    vi = client.get("/")
    assert vi.headers["content-language"] == "vi"
    page = parse(vi.text)
    assert one(page, "html")["lang"] == "vi"
    assert one(page, "a", hreflang="hmn") == {"href": "/?lang=hmn", "hreflang": "hmn", "lang": "hmn"}
    assert "Không cần ghi tên" in vi.text

    for response in (client.get("/?lang=hmn"), client.get("/", headers={"Accept-Language": "hmn,vi;q=0.5"})):
        page = parse(response.text)
        assert one(page, "html")["lang"] == "hmn"
        assert one(page, "a", hreflang="vi")["href"] == "/?lang=vi"
        assert "Tsis tas sau npe" in response.text
        assert response.headers["content-language"] == "hmn"


def test_the_url_carries_nothing_but_the_language_and_no_cookie_is_set(client: TestClient) -> None:
    response = client.get("/?lang=hmn")
    form = one(parse(response.text), "form")
    assert form["method"] == "post" and form["action"] == "/?lang=hmn"
    assert form["autocomplete"] == "off"  # the phone keeps no list of what was typed into the fields
    sent = post_tip(client, "/?lang=hmn", category="drugs", what="Muaj neeg muag tshuaj yeeb")
    assert sent.status_code == 200
    assert "set-cookie" not in response.headers and "set-cookie" not in sent.headers
    assert sent.url.query == b"lang=hmn"


def test_form_has_every_field_with_a_pictogram(client: TestClient) -> None:
    html = client.get("/").text
    page = parse(html)
    radios = find(page, "input", type="radio", name="category")
    assert [r["value"] for r in radios] == list(CATEGORIES)
    # One drawn pictogram per category, inside its label, beside the words.
    for slug in CATEGORIES:
        label = re.search(rf'<label class="cat"><input[^>]*value="{slug}"[^>]*><span>(.*?)</span></label>', html, re.S)
        assert label is not None and label.group(1).lstrip().startswith('<svg class="i"')
    what = one(page, "textarea", name="what", id="what")
    assert "required" not in what  # a voice note or a photo alone is a tip
    for name in ("where", "when", "contact"):
        one(page, "input", name=name, id=name, type="text")
    photo = one(page, "input", name="photo", type="file")
    assert photo["accept"] == "image/*" and "multiple" in photo
    voice = one(page, "input", name="voice", type="file")
    assert voice["accept"] == "audio/*" and "capture" in voice
    assert "required" not in photo and "required" not in voice
    receipt = one(page, "input", name="receipt")
    assert receipt["inputmode"] == "numeric"
    one(page, "input", type="hidden", name="t")
    honeypot = one(page, "input", name="hp_extra")
    assert honeypot["tabindex"] == "-1"
    # Every field has a label tied to it.
    labelled = {a["for"] for a in find(page, "label") if "for" in a}
    assert {"what", "where", "when", "contact", "photo", "voice", "receipt"} <= labelled
    assert one(page, "button", type="submit")


def test_no_name_needed_is_said_before_anything_is_asked(client: TestClient) -> None:
    html = client.get("/").text
    assert html.index("Không cần ghi tên") < html.index("<form")
    leave = html.index('class="leave"')
    assert leave < html.index("<h1>") and html.index('hreflang="hmn"') < html.index("<h1>")


@pytest.mark.parametrize(("language", "words"), [
    ("vi", {"photo": "Chụp hoặc chọn ảnh", "voice": "Ghi âm lời nói"}),
    ("hmn", {"photo": "Thaij los yog xaiv duab", "voice": "Kaw koj lub suab"}),
])
def test_file_buttons_are_labels_in_the_pages_language_over_hidden_inputs(language: str, words: dict[str, str]) -> None:
    html = pages.Pages(dev_mode=False).form(POST, language, "/p/ncs").body.decode()
    for name, text in words.items():
        # The input first (its focus ring is drawn on the label beside it), out of sight but focusable.
        button = re.search(rf'<input type="file" class="vh" id="{name}"[^>]*>\n<label class="pick" for="{name}"[^>]*>'
                           r'<svg class="i"[^>]*>.*?</svg><span>([^<]*)</span></label>', html, re.S)
        assert button is not None and button.group(1) == text
        assert 'tabindex' not in re.search(rf'<input type="file"[^>]*id="{name}"[^>]*>', html).group(0)  # type: ignore[union-attr]
    css = rendering.stylesheet()
    hidden = re.search(r"\.vh\{([^}]*)\}", css)
    assert hidden is not None and "clip:rect(0 0 0 0)" in hidden.group(1) and "display:none" not in hidden.group(1)


@pytest.mark.parametrize(
    ("language", "speak", "stop"), [("vi", "Bấm để nói", "Dừng"), ("hmn", "Nias ces hais lus", "Nres")]
)
def test_the_recorder_waits_hidden_in_the_pages_language(language: str, speak: str, stop: str) -> None:
    """Shown by the script only where the page may use the microphone; the file input works without it."""
    html = pages.Pages(dev_mode=False).form(POST, language, "/p/ncs").body.decode()
    page = parse(html)
    assert "hidden" in one(page, "div", id="rec") and "hidden" in one(page, "div", id="rec-on")
    assert re.search(rf'id="rec-start">.*?<span>{speak}</span></button>', html, re.S)
    assert re.search(rf'id="rec-stop">.*?<span>{stop}</span></button>', html, re.S)
    assert one(page, "span", id="rec-time")["role"] == "timer"
    assert one(page, "ul", id="voice-list")["aria-live"] == "polite"


def test_where_when_and_contact_are_folded_until_they_hold_something() -> None:
    renderer = pages.Pages(dev_mode=False)
    fresh = parse(renderer.form(POST, "vi", "/p/ncs").body.decode())
    assert "open" not in one(fresh, "details", id="details")
    assert "Thêm chi tiết (ở đâu, khi nào, liên lạc)" in renderer.form(POST, "vi", "/p/ncs").body.decode()
    typed = parse(renderer.form(POST, "vi", "/p/ncs", values={"when": "sáng nay"}).body.decode())
    assert "open" in one(typed, "details", id="details")
    # A problem opens whatever holds it.
    wrong = renderer.form(POST, "vi", "/p/ncs", problems=[Problem("where", "Too long: at most %(max)d letters.",
                                                                   {"max": 300})])
    page = parse(wrong.body.decode())
    assert "open" in one(page, "details", id="details")
    assert one(page, "input", name="where")["aria-invalid"] == "true"


def test_follow_up_section_opens_when_asked_or_when_a_receipt_was_typed() -> None:
    renderer = pages.Pages(dev_mode=False)
    closed = renderer.form(POST, "vi", "/p/ncs")
    assert one(parse(closed.body.decode()), "details", id="follow") == {"class": "fold", "id": "follow"}
    opened = renderer.form(POST, "vi", "/p/ncs", follow_up=True)
    assert "open" in one(parse(opened.body.decode()), "details", id="follow")
    typed = renderer.form(POST, "hmn", "/p/ncs", values={"receipt": "4821 0937 5512 9634"})
    page = parse(typed.body.decode())
    assert "open" in one(page, "details", id="follow")
    assert one(page, "input", name="receipt")["value"] == "4821 0937 5512 9634"
    assert "Kuv twb xa xov tuaj lawm" in typed.body.decode()
    assert "Tus lej koj tau txais zaum dhau los (16 tus):" in typed.body.decode()  # not "your number": a phone's


def test_problems_are_summarised_on_top_and_tied_to_their_fields(client: TestClient) -> None:
    response = post_tip(client, "/?lang=hmn", where="Ntawm lub khw", when="nag hmo")
    assert response.status_code == 422
    page = parse(response.text)
    summary = one(page, "div", id="problems")
    assert summary["role"] == "alert" and summary["tabindex"] == "-1" and "autofocus" in summary
    links = [a["href"] for a in find(page, "a") if a.get("href", "").startswith("#")]
    assert links == ["#cat-theft", "#what"]
    assert "Thov sau tias muaj dab tsi tshwm sim, los yog kaw koj lub suab." in response.text
    what = one(page, "textarea", name="what")
    assert what["aria-invalid"] == "true" and what["aria-describedby"] == "what-error what-hint"
    one(page, "p", id="what-error")
    for radio in find(page, "input", name="category"):
        assert radio["aria-invalid"] == "true" and radio["aria-describedby"] == "category-error"
    one(page, "p", id="category-error")
    # What was typed comes back.
    assert one(page, "input", name="where")["value"] == "Ntawm lub khw"
    assert one(page, "input", name="when")["value"] == "nag hmo"
    assert "Thov xaiv ib yam." in response.text


def test_sent_page_shows_a_check_mark_and_the_receipt(client: TestClient, sink: Sink) -> None:
    form = parse(client.get("/").text)
    response = post_tip(client, "/", category="theft", what="Mất trộm xe máy ở bản Na Cô Sa")
    assert response.status_code == 200
    page = parse(response.text)
    one(page, "svg", **{"class": "check", "role": "img", "aria-label": "Đã gửi"})
    receipt = re.search(r'<p class="receipt" id="receipt">(\d{4} \d{4} \d{4} \d{4})</p>', response.text)
    assert receipt is not None
    assert receipt.group(1) in sink.handler.parsed()[0]["Subject"]
    assert one(page, "main")["data-sent"] == "1"  # the script clears the draft here
    # The phone's history shows one title for every page: nothing says a tip was sent.
    assert page.texts["title"] == form.texts["title"] == "Hòm thư tố giác ẩn danh"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/", "/?lang=hmn"])
def test_each_page_fits_one_round_trip_compressed(client: TestClient, path: str) -> None:
    pages_served = {
        "form": client.get(path, headers={"Accept-Encoding": "gzip"}),
        "error state": post_tip(client, path, what=""),
        "sent": post_tip(client, path, category="other", what="x" * 200),
    }
    for name, response in pages_served.items():
        assert response.headers["content-encoding"] == "gzip", name
        assert "Accept-Encoding" in response.headers["vary"], name
        assert int(response.headers["content-length"]) <= BUDGET, name
    plain = client.get(path, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert int(plain.headers["content-length"]) == len(plain.content) <= 4 * BUDGET


@pytest.mark.parametrize("path", ["/", "/?lang=hmn"])
def test_the_form_and_its_script_together_fit_one_round_trip_compressed(client: TestClient, path: str) -> None:
    """The recorder made the script bigger: with it, the form still arrives in 14 KB (the script is cached after)."""
    form = client.get(path, headers={"Accept-Encoding": "gzip"})
    script = client.get(rendering.script_url(), headers={"Accept-Encoding": "gzip"})
    assert script.headers["content-encoding"] == "gzip"
    assert int(form.headers["content-length"]) + int(script.headers["content-length"]) <= BUDGET


def test_page_needs_no_other_request_and_has_no_inline_style_or_script(client: TestClient) -> None:
    response = client.get("/")
    page = parse(response.text)
    assert not [a for _, a in page.elements if "style" in a]  # the CSP allows no style attribute
    assert rendering.csp_hash(page.texts["style"]) in response.headers["content-security-policy"]
    assert [a["href"] for a in find(page, "link")] == ["data:,"]  # no favicon request either
    script = one(page, "script")
    assert script["src"] == rendering.script_url() and "defer" in script
    assert not page.texts.get("script")
    assert not [a for _, a in page.elements if a.get("src", "/").startswith(("http", "//"))]


def test_script_is_served_same_origin_with_its_hash_and_long_cache(client: TestClient) -> None:
    response = client.get(rendering.script_url())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert hashlib.sha256(response.content).hexdigest().startswith(rendering.script_digest())
    assert client.get("/static/tipbox.0000000000000000.js").status_code == 404


def test_script_uses_nothing_an_old_webview_lacks() -> None:
    source = (ROOT / "static" / "tipbox.js").read_text(encoding="utf-8")
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", source, flags=re.S)
    for forbidden in ("window.open", "confirm(", "clipboard", "cookie", "=>", "`", "?.", "??",
                      "let ", "const ", "async ", "await ", "class ", "Promise", "fetch(", "XMLHttpRequest"):
        assert forbidden not in code, forbidden
    # The recorder, DataTransfer and MediaRecorder are used only once the script has made sure they are there.
    assert "navigator.mediaDevices && navigator.mediaDevices.getUserMedia" in code
    assert "window.MediaRecorder && MediaRecorder.isTypeSupported" in code
    assert re.search(r"function canSetFiles\(\) \{\s*try \{\s*var list = new DataTransfer\(\);", code)


def test_stylesheet_uses_nothing_newer_than_chromium_80() -> None:
    css = (ROOT / "static" / "tipbox.css").read_text(encoding="utf-8")
    for newer in (":focus-visible", ":is(", ":where(", ":has(", "aspect-ratio", "inset:", "clamp(", "@layer",
                  "@container"):
        assert newer not in css, newer
    # Flexbox `gap` came in Chromium 84 and Safari 14.1; grid gaps are spelled `grid-gap`.
    assert not re.search(r"(?<![-\w])gap:", css)


def test_leave_quickly_goes_to_a_page_that_says_nothing_about_tips(client: TestClient) -> None:
    form = parse(client.get("/?lang=hmn").text)
    assert one(form, "a", **{"class": "leave"})["href"] == pages.NEUTRAL_PATH
    neutral = client.get(pages.NEUTRAL_PATH)
    assert neutral.status_code == 200
    page = parse(neutral.text)
    assert re.fullmatch(r"\d\d/\d{4}", page.texts["title"])
    assert not find(page, "script") and not find(page, "a")
    text = re.sub(r"<style>.*?</style>", "", neutral.text, flags=re.S).lower()
    for telling in ("tố giác", "ẩn danh", "tip", "xov", "gửi", "hòm thư"):
        assert telling not in text, telling


def _po(entries: dict[str, str]) -> str:
    body = "".join(f'\nmsgid "{key}"\nmsgstr "{value}"\n' for key, value in entries.items())
    return 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n' + body


def test_an_operator_overrides_a_string_and_adds_a_language(
    sink: Sink, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    locales = tmp_path / "locales"
    locales.mkdir()
    (locales / "hmn.po").write_text(_po({"Send": "Xa mus"}), encoding="utf-8")
    (locales / "hmn-vn.po").write_text(
        _po({"language-name": "Hmôngz", "Send": "Xax", "Anonymous tip box": "Hmông VN"}), encoding="utf-8"
    )
    posts = tmp_path / "posts.toml"
    posts.write_text(
        '[posts.ncs]\nname = "Đồn Na Cô Sa"\nmailbox = "ncs@example.vn"\nlanguages = ["vi", "hmn", "hmn-vn"]\n',
        encoding="utf-8",
    )
    settings = make_settings(sink, locales_dir=locales, posts_file=posts, mailbox=None)
    with TestClient(create_app(settings)) as client:
        hmong = client.get("/p/ncs?lang=hmn")
        assert "Xa mus" in hmong.text  # overridden
        assert "Tsis tas sau npe" in hmong.text  # not overridden: the shipped catalog
        added = client.get("/p/ncs?lang=hmn-vn")
        page = parse(added.text)
        assert one(page, "html")["lang"] == "hmn-vn"
        assert "Xax" in added.text and "Hmông VN" in added.text
        assert one(page, "a", hreflang="vi")["href"] == "/p/ncs/vi"
        switch = one(parse(client.get("/p/ncs").text), "a", hreflang="hmn-vn")
        assert switch["href"] == "/p/ncs/hmn-vn"
        assert one(parse(client.get("/p/ncs/hmn-vn").text), "html")["lang"] == "hmn-vn"  # an operator's language too
        assert ">Hmôngz</a>" in client.get("/p/ncs").text  # the switch shows the language's own name
        sent = post_tip(client, "/p/ncs?lang=hmn-vn", category="drugs", what="tshuaj yeeb")
        assert sent.status_code == 200 and one(parse(sent.text), "html")["lang"] == "hmn-vn"


def _extracted(skip: tuple[str, ...]) -> set[str]:
    method_map = [("app/**.py", "python"), ("templates/**.html", "jinja2")]
    found = set()
    for filename, _, message, _, _ in extract_from_dir(
        str(ROOT), method_map, keywords={"_": None, "gettext": None, "N_": None}
    ):
        if not filename.startswith(skip) and isinstance(message, str):
            found.add(message)
    return found


def test_every_string_a_resident_reads_is_translated() -> None:
    """Vietnamese for everything; Hmong for everything but what only officers read (the email, the answer
    confirmation, the mail filters, `tipbox check`'s test email)."""
    missing = {}
    skip_hmong = ("templates/email/", "app/mail.py", "app/answers/ingest.py", "app/filters.py", "app/checks.py")
    for language, skip in (("vi", ()), ("hmn", skip_hmong)):
        catalog = i18n.translations(language)
        missing[language] = sorted(m for m in _extracted(skip) if catalog.gettext(m) == m)
    assert missing == {"vi": [], "hmn": []}
