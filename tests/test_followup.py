"""Follow-ups: a receipt code typed on the form sends a reply in the first tip's thread, read off a real SMTP server."""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app import receipts, tips
from app.categories import RECEIPT_TAGS, category_for_tag
from app.main import create_app
from app.settings import Settings
from tests.helpers import SECRET, post_tip
from tests.mailsink import Sink

RECEIPT = re.compile(r'id="receipt">\s*(\d{4} \d{4} \d{4} \d{4})\s*<')
CANNOT_CONFIRM = "không thể xác nhận tin báo đầu tiên"
NOT_OURS = "Mã này không do tipbox cấp"


def _receipt_on(page_text: str) -> str:
    match = RECEIPT.search(page_text)
    assert match, page_text
    return match.group(1)


def _only_new(sink: Sink, before: int) -> EmailMessage:
    messages = sink.handler.parsed()
    assert len(messages) == before + 1
    return messages[-1]


def _plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _first_tip(client: TestClient, sink: Sink, path: str = "/") -> tuple[str, EmailMessage]:
    page = post_tip(client, path, category="drugs", what="Có người bán ma túy ở chợ phiên", where="Chợ Na Cô Sa")
    assert page.status_code == 200, page.text
    return _receipt_on(page.text), sink.handler.parsed()[-1]


def test_a_follow_up_is_a_reply_in_the_first_tips_thread(client: TestClient, sink: Sink) -> None:
    code, first = _first_tip(client, sink)
    assert first["X-Tipbox-Kind"] == "tip" and first["In-Reply-To"] is None
    # Written down by hand, with dashes: still the same code.
    page = post_tip(client, category="weapons", what="Hôm nay họ mang theo súng", receipt=code.replace(" ", "-"))
    assert page.status_code == 200, page.text
    assert _receipt_on(page.text) == code  # the sender keeps one code for the whole report

    follow_up = _only_new(sink, 1)
    assert follow_up["In-Reply-To"] == first["Message-ID"]
    assert follow_up["References"] == first["Message-ID"]
    assert follow_up["Message-ID"] != first["Message-ID"]
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.vn>", str(follow_up["Message-ID"]))
    # Gmail and Outlook thread on the subject too: it is the first one's, word for word, with "Re: ".
    assert str(follow_up["Subject"]) == f"Re: {first['Subject']}"
    assert "[Ma túy]" in str(follow_up["Subject"])  # filed under the first tip's category
    assert follow_up["X-Tipbox-Kind"] == "follow-up"
    assert follow_up["X-Tipbox-Receipt"] == code
    assert follow_up["X-Tipbox-Category"] == "drugs"
    text = _plain(follow_up)
    assert f"Bổ sung cho tin báo mã {code}" in text
    assert CANNOT_CONFIRM in text and NOT_OURS not in text
    assert "Loại việc: Vũ khí, vật liệu nổ" in text  # what the sender chose this time
    assert "Loại việc của tin báo đầu: Ma túy" in text
    assert "Hôm nay họ mang theo súng" in text


def test_two_follow_ups_each_get_their_own_message_id(client: TestClient, sink: Sink) -> None:
    code, first = _first_tip(client, sink)
    for index, what in enumerate(("Thêm một chi tiết", "Và một chi tiết nữa")):
        assert post_tip(client, category="drugs", what=what, receipt=code).status_code == 200
        assert len(sink.handler.messages) == index + 2
    one, two = sink.handler.parsed()[1:]
    assert one["Message-ID"] != two["Message-ID"]
    assert one["In-Reply-To"] == two["In-Reply-To"] == first["Message-ID"]
    assert one["Subject"] == two["Subject"] == f"Re: {first['Subject']}"
    assert "Loại việc của tin báo đầu" not in _plain(one)  # same category: said once


def test_the_thread_survives_a_restart(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(sink))) as before:
        code, first = _first_tip(before, sink)
    with TestClient(create_app(make_settings(sink))) as after:
        assert post_tip(after, category="other", what="Sau khi máy chủ khởi động lại", receipt=code).status_code == 200
    follow_up = _only_new(sink, 1)
    assert follow_up["In-Reply-To"] == first["Message-ID"]
    assert follow_up["Subject"] == f"Re: {first['Subject']}"


def test_an_empty_receipt_sends_a_new_tip(client: TestClient, sink: Sink) -> None:
    code, _ = _first_tip(client, sink)
    page = post_tip(client, category="theft", what="Mất trộm trâu", receipt="   ")
    assert page.status_code == 200
    new = _only_new(sink, 1)
    assert _receipt_on(page.text) != code
    assert new["In-Reply-To"] is None and new["References"] is None
    assert not str(new["Subject"]).startswith("Re:")
    assert new["Message-ID"] == receipts.thread_id(_receipt_on(page.text), SECRET.encode(), "example.vn")


@pytest.mark.parametrize(("language", "named"), [("vi", "Mã số này không đúng"), ("hmn", "Tus lej no tsis raug")])
def test_a_malformed_code_is_named_and_nothing_is_sent(
    client: TestClient, sink: Sink, language: str, named: str
) -> None:
    code = receipts.new_code(RECEIPT_TAGS["drugs"], SECRET.encode())
    last = str((int(code[-1]) + 1) % 10)
    typo = code[:-1] + last  # one digit off: the check digit catches it
    page = post_tip(
        client, f"/?lang={language}", category="drugs", what="Chữ đã viết vẫn còn", where="Bản Sa Lông", receipt=typo
    )
    assert page.status_code == 422
    assert sink.handler.messages == []
    assert named in page.text
    assert "Chữ đã viết vẫn còn" in page.text and "Bản Sa Lông" in page.text
    assert f'value="{typo}"' in page.text  # the code comes back as typed, to be corrected
    assert re.search(r'<p class="error" id="receipt-error">[^<]*' + named, page.text)  # on the receipt field
    assert re.search(r"<details[^>]*\bopen\b", page.text)


def test_a_code_from_elsewhere_still_goes_out_marked_unconfirmed(client: TestClient, sink: Sink) -> None:
    # Well-formed, but made under another key (or never handed out): tipbox cannot know, and sends it anyway.
    other_key = b"some-other-deployment-key-0123456789"
    while True:
        code = receipts.new_code(0, other_key)
        if category_for_tag(receipts.read_tag(code, SECRET.encode())) is not None:
            break
    assert post_tip(client, category="border", what="Có người lạ qua biên giới", receipt=code).status_code == 200
    message = _only_new(sink, 0)
    assert message["In-Reply-To"] == receipts.thread_id(code, SECRET.encode(), "example.vn")
    assert str(message["Subject"]).startswith("Re: [Tin báo] [")
    assert CANNOT_CONFIRM in _plain(message)


def test_a_code_tipbox_cannot_have_made_is_said_to_be_so(client: TestClient, sink: Sink) -> None:
    # About 3 in 10 well-formed codes carry a tag digit no category uses: certainly not made here with this key.
    while True:
        code = receipts.new_code()
        if category_for_tag(receipts.read_tag(code, SECRET.encode())) is None:
            break
    assert post_tip(client, category="smuggling", what="Xe chở hàng lậu ban đêm", receipt=code).status_code == 200
    message = _only_new(sink, 0)
    assert str(message["Subject"]).startswith("Re: [Tin báo] [Buôn lậu]")  # its own category: no first to match
    assert message["X-Tipbox-Category"] == "smuggling"
    text = _plain(message)
    assert CANNOT_CONFIRM in text and NOT_OURS in text


def test_more_opens_the_follow_up_section(client: TestClient) -> None:
    page = client.get("/more")
    assert page.status_code == 200
    assert re.search(r"<details[^>]*\bopen\b", page.text)
    assert 'name="receipt"' in page.text
    assert 'action="/more?lang=vi"' in page.text
    plain = client.get("/")
    assert not re.search(r"<details[^>]*\bopen\b", plain.text)


def test_a_follow_up_sent_from_more(client: TestClient, sink: Sink) -> None:
    code, first = _first_tip(client, sink)
    page = post_tip(client, "/more", category="drugs", what="Gửi thêm từ trang báo thêm", receipt=code)
    assert page.status_code == 200
    assert _receipt_on(page.text) == code
    assert 'href="/?lang=vi"' in page.text  # "send another tip" leads to the plain form
    assert _only_new(sink, 1)["In-Reply-To"] == first["Message-ID"]


def test_a_problem_on_more_keeps_the_section_open(client: TestClient, sink: Sink) -> None:
    page = post_tip(client, "/more", category="drugs", what="")
    assert page.status_code == 422
    assert re.search(r"<details[^>]*\bopen\b", page.text)
    assert sink.handler.messages == []


def test_each_post_has_its_own_more_page(sink: Sink, make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    posts = tmp_path / "posts.toml"
    posts.write_text(
        '[posts.ncs]\nname = "Đồn Biên phòng Na Cô Sa"\nmailbox = "nacosa@example.vn"\nlanguages = ["hmn", "vi"]\n',
        encoding="utf-8",
    )
    with TestClient(create_app(make_settings(sink, mailbox=None, posts_file=posts))) as client:
        page = client.get("/p/ncs/more")
        assert page.status_code == 200
        assert 'action="/p/ncs/more?lang=hmn"' in page.text
        assert re.search(r"<details[^>]*\bopen\b", page.text)
        assert client.get("/p/nowhere/more").status_code == 404
        code, first = _first_tip(client, sink, "/p/ncs")
        assert post_tip(client, "/p/ncs/more", category="drugs", what="Thêm nữa", receipt=code).status_code == 200
    follow_up = _only_new(sink, 1)
    assert follow_up["To"] == "nacosa@example.vn"
    assert follow_up["In-Reply-To"] == first["Message-ID"]
    assert follow_up["X-Tipbox-Post"] == "ncs"


@pytest.mark.parametrize(
    ("typed", "problem"),
    [("", False), ("  ", False), ("{code}", False), ("{code_dots}", False), ("{typo}", True), ("12345", True),
     ("{code} {code}", True), ("{long}", True), ("mã của tôi", True)],
)
def test_validate_names_a_bad_receipt_on_its_field(typed: str, problem: bool) -> None:
    code = receipts.new_code(RECEIPT_TAGS["other"], SECRET.encode())
    typo = code[:-1] + str((int(code[-1]) + 5) % 10)
    text = typed.format(code=code, code_dots=code.replace(" ", "."), typo=typo, long=code.replace(" ", "-" * 20))
    values = tips.read_fields({"category": "other", "what": "Một việc", "receipt": text})
    found = [p for p in tips.validate(values, 5000) if p.field == "receipt"]
    assert bool(found) is problem
    if not problem:
        assert tips.follow_up_code(values) == (code if text.strip() else None)
