"""The officer's email as officers use it: subject tags to filter on, X-Tipbox-* headers, a plain part for a phone,
an HTML part that loads nothing, and the attachments list left empty until files come."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from types import SimpleNamespace

from app import i18n, receipts, rendering
from app.categories import RECEIPT_TAGS
from app.mail import Composer, Tip
from app.settings import Post
from tests.reference import parse

POST = Post("ncs", "Đồn Biên phòng Na Cô Sa", "nacosa@example.vn", ("vi", "hmn"))
KEY = b"officer-email-test-key-0123456789abc"
COMPOSER = Composer("tipbox@bienphong.example.vn", KEY)


def _email(tip: Tip) -> EmailMessage:
    """The email for `tip`, read back from its wire form as an officer's mail client reads it."""
    return parse(COMPOSER.compose(tip).data)


def _tip(code: str, **overrides: str | None) -> Tip:
    values: dict[str, str | None] = {
        "category": "drugs",
        "what": "Dòng một\nDòng hai <b>đậm</b>",
        "where": "Chợ phiên",
        "when": "Sáng nay",
        "contact": "",
        "language": "hmn",
    }
    values.update(overrides)
    return Tip(post=POST, received_at=datetime(2026, 11, 29, 23, 30, tzinfo=UTC), receipt=code, **values)  # type: ignore[arg-type]


def test_subject_has_fixed_tags_in_a_fixed_order() -> None:
    code = receipts.new_code(RECEIPT_TAGS["drugs"], KEY)
    message = _email(_tip(code))
    assert str(message["Subject"]) == f"[Tin báo] [Ma túy] Đồn Biên phòng Na Cô Sa · {code}"
    follow_up = _email(_tip(code, category="theft", follow_up_to=code))
    assert str(follow_up["Subject"]) == f"Re: [Tin báo] [Ma túy] Đồn Biên phòng Na Cô Sa · {code}"


def test_filter_headers() -> None:
    code = receipts.new_code(RECEIPT_TAGS["trafficking"], KEY)
    message = _email(_tip(code, category="trafficking"))
    assert message["X-Tipbox-Kind"] == "tip"
    assert message["X-Tipbox-Post"] == "ncs"
    assert message["X-Tipbox-Category"] == "trafficking"
    assert message["X-Tipbox-Receipt"] == code
    assert message["X-Tipbox-Language"] == "hmn"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == receipts.thread_id(code, KEY, "bienphong.example.vn")


def test_plain_part_reads_top_down_on_a_phone() -> None:
    code = receipts.new_code(RECEIPT_TAGS["drugs"], KEY)
    plain = _email(_tip(code)).get_body(("plain",))
    assert plain is not None
    lines = str(plain.get_content()).splitlines()
    assert lines[0] == "TIN BÁO ẨN DANH — Đồn Biên phòng Na Cô Sa"
    assert "Loại việc: Ma túy" in lines
    assert f"Mã biên nhận: {code}" in lines
    assert "Ngôn ngữ người gửi: Hmoob (hmn)" in lines
    assert lines[lines.index("Nội dung sự việc:") + 1 :][:2] == ["Dòng một", "Dòng hai <b>đậm</b>"]
    assert "Liên lạc: không có (người gửi muốn ẩn danh)" in lines
    assert "Trả lời thư này sẽ không đến được người gửi." in lines
    # Labels and values are short lines; only the sender's own text and the notes may run long.
    assert all(len(line) <= 80 for line in lines[:8] if line)


def test_html_part_loads_nothing_and_uses_inline_styles_only() -> None:
    code = receipts.new_code(RECEIPT_TAGS["drugs"], KEY)
    hostile = '<img src="https://tracker.example/p.gif"><link rel=stylesheet href="//evil.example/x.css">'
    message = _email(_tip(code, what=hostile, contact='<a href="http://x.example">Zalo</a>'))
    html_part = message.get_body(("html",))
    assert html_part is not None
    html = str(html_part.get_content())
    assert not re.search(r"<(link|script|style|iframe|object|embed|base|form)\b", html, re.IGNORECASE)
    assert not re.search(r"""\b(src|href|background)\s*=\s*["']?(https?:|//)""", html, re.IGNORECASE)
    assert "url(" not in html
    assert "&lt;img src=&#34;https://tracker.example/p.gif&#34;&gt;" in html
    assert 'lang="hmn"' in html  # the sender's words are marked with the sender's language


def test_html_keeps_the_senders_line_breaks_without_css() -> None:
    code = receipts.new_code(RECEIPT_TAGS["drugs"], KEY)
    html_part = _email(_tip(code)).get_body(("html",))
    assert html_part is not None
    assert "Dòng một<br>Dòng hai &lt;b&gt;đậm&lt;/b&gt;" in str(html_part.get_content())


def test_contact_is_in_the_body_only_also_in_a_follow_up() -> None:
    code = receipts.new_code(RECEIPT_TAGS["drugs"], KEY)
    message = _email(_tip(code, contact="Zalo 0987 654 321", follow_up_to=code))
    assert message["Reply-To"] is None
    assert all("0987" not in str(value) for value in message.values())
    plain = message.get_body(("plain",))
    assert plain is not None and "Zalo 0987 654 321" in str(plain.get_content())


def test_no_attachments_render_nothing_and_a_list_renders_each_file() -> None:
    code = receipts.new_code(RECEIPT_TAGS["drugs"], KEY)
    message = _email(_tip(code))
    for kind in ("plain", "html"):
        part = message.get_body((kind,))
        assert part is not None and "Tệp đính kèm" not in str(part.get_content())
    env = rendering.environment(i18n.OFFICER_LANGUAGE)
    files = [
        SimpleNamespace(kind="Ảnh JPEG", size="1,2 MB", cid="photo1@tipbox"),
        SimpleNamespace(kind="Ghi âm M4A", size="300 KB", cid=None),
    ]
    context = {
        "tip": _tip(code), "category": "Ma túy", "report_category": "Ma túy", "follow_up": False,
        "code_possible": True, "received": "30/11/2026 06:30", "sender_language": "Hmoob (hmn)", "attachments": files,
    }
    text = env.get_template("email/tip.txt").render(context)
    assert "Tệp đính kèm (2):\n1. Ảnh JPEG, 1,2 MB\n2. Ghi âm M4A, 300 KB" in text
    html = env.get_template("email/tip.html").render(context)
    assert '<img src="cid:photo1@tipbox"' in html
    assert html.count("<img") == 1
