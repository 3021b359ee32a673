"""Only the officer's new text: replies as Gmail, Outlook and Thunderbird write them, in Vietnamese and English."""

from __future__ import annotations

import pytest

from app.answers.ingest import parse
from app.answers.text import html_to_text, new_text, reply_text
from tests import replies
from tests.replies import CODE, TIP_TEXT

ANSWER = "Cảm ơn anh đã báo tin.\nNhà nào? Anh thấy họ lúc mấy giờ?"


def _leaks(text: str) -> list[str]:
    """Pieces of the quoted tip or its quote header still in `text`."""
    pieces = ["Có hai người lạ", "Chợ Na Cô Sa", CODE, "đã viết", "wrote", "Tipbox", "Từ:", "Đã gửi", "Chủ đề", ">"]
    return [piece for piece in pieces if piece in text]


@pytest.mark.parametrize("client", [replies.gmail, replies.outlook, replies.thunderbird])
def test_each_clients_reply_gives_only_the_new_text(client: replies.Client) -> None:
    got = reply_text(parse(client(replies.tip(), ANSWER)))
    assert got.text == ANSWER
    assert got.files == 0


def test_a_gmail_reply_in_english_too() -> None:
    assert reply_text(parse(replies.gmail(replies.tip(), ANSWER, language="en"))).text == ANSWER


def test_the_vietnamese_gmail_header_wrapped_before_the_address_is_removed() -> None:
    # Gmail wraps its quote header before the address; the first half has no "đã viết" to recognise it by.
    text = f"Dạ.\n\nVào Th 2, 6 thg 5, 2024 vào lúc 10:15 Tipbox <\ntipbox@bienphong.test> đã viết:\n\n> {TIP_TEXT}\n"
    assert new_text(text) == "Dạ."


def test_an_outlook_block_without_any_quote_marks_is_cut() -> None:
    text = f"Đã xử lý.\n\nTừ: Tipbox <t@x.vn>\nĐã gửi: Thứ Hai\nĐến: a@b.vn\nChủ đề: [Tin báo]\n\n{TIP_TEXT}"
    assert new_text(text) == "Đã xử lý."


def test_a_reply_below_the_quote_and_a_dash_list_are_kept() -> None:
    got = reply_text(parse(replies.thunderbird(replies.tip(), "Nhà nào?\n- nhà số 5\n- nhà số 6", bottom=True)))
    assert got.text == "Nhà nào?\n- nhà số 5\n- nhà số 6"


def test_an_html_only_reply_becomes_text_without_its_quote() -> None:
    got = reply_text(parse(replies.html_only(replies.tip(), ANSWER)))
    assert got.text.split() == ANSWER.split() and _leaks(got.text) == []


def test_html_entities_scripts_and_styles() -> None:
    html = "<style>p{x}</style><script>alert(1)</script><p>A &amp; B&nbsp;&lt;3</p><br><div>C</div>"
    assert html_to_text(html) == "A & B <3\n\nC"


def test_attachments_are_counted_not_kept() -> None:
    got = reply_text(parse(replies.outlook(replies.tip(), ANSWER, attach=b"\x89PNG\r\n\x1a\n" + b"\0" * 100)))
    assert got.text == ANSWER and got.files == 1


def test_a_reply_that_only_quotes_says_nothing() -> None:
    assert reply_text(parse(replies.gmail(replies.tip(), ""))).text == ""
    assert new_text("> only\n> quoted\n") == ""


def test_a_signature_is_left_out() -> None:
    assert new_text("Cảm ơn.\n-- \nĐồn Biên phòng Na Cô Sa\nĐT 0215 000 000") == "Cảm ơn."
