"""app/tips.py: what a sender typed, cleaned and checked, before anything is sent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app import receipts, tips
from app.categories import CATEGORIES, RECEIPT_TAGS
from app.settings import Post

POST = Post("ncs", "Đồn Biên phòng Na Cô Sa", "nacosa@example.vn", ("vi", "hmn"))
SECRET = b"tips-test-secret-0123456789abcdef"


def _problems(**fields: str) -> dict[str, str]:
    values = tips.read_fields({"category": "drugs", "what": "Có người bán ma túy", **fields})
    return {problem.field: problem.message for problem in tips.validate(values, 5000)}


def test_text_is_normalised_stripped_of_controls_and_one_line_where_it_should_be() -> None:
    decomposed = "Bản Nâ\u0301m"  # "Bản Nấm" typed with a combining accent, as some keyboards send it
    assert tips.clean_text(decomposed, multiline=False) == "Bản Nấm"
    hostile = "  a\r\nb\rc\u2028d\u202ee\x00f\tg  "
    assert tips.clean_text(hostile, multiline=False) == "a b cdef g"
    assert tips.clean_text("dòng một  \r\n\r\n\r\n\r\ndòng hai\r\n", multiline=True) == "dòng một\n\ndòng hai"


def test_read_fields_keeps_the_tips_own_fields_only() -> None:
    values = tips.read_fields({"what": " Xe lạ \r\n đêm qua ", "where": "Chợ\nphiên", "category": " drugs ",
                               "t": "token", "hp_extra": "", "receipt": " 4821-0937 "})  # fmt: skip
    assert values == {"what": "Xe lạ\n đêm qua", "where": "Chợ phiên", "when": "", "contact": "",
                      "category": "drugs", "receipt": "4821-0937"}  # fmt: skip


def test_every_problem_is_found_at_once_in_form_order() -> None:
    values = tips.read_fields({"category": "aliens", "what": "", "where": "x" * 301, "receipt": "1234"})
    problems = tips.validate(values, 5000)
    assert [problem.field for problem in problems] == ["receipt", "category", "what", "where"]
    assert _problems() == {}


@pytest.mark.parametrize(("field", "limit"), [("what", 5000), ("where", 300), ("when", 200), ("contact", 200)])
def test_each_field_has_its_limit(field: str, limit: int) -> None:
    assert field not in _problems(**{field: "ồ" * limit})
    too_long = tips.validate(tips.read_fields({"category": "drugs", "what": "x", field: "ồ" * (limit + 1)}), 5000)
    assert [(p.field, dict(p.params)) for p in too_long] == [(field, {"max": limit})]


def test_a_follow_up_code_is_read_as_typed_and_a_wrong_one_is_a_problem() -> None:
    code = receipts.new_code(RECEIPT_TAGS["drugs"], SECRET)
    digits = code.replace(" ", "")
    for typed in (code, digits, f"{digits[:4]}.{digits[4:8]}-{digits[8:]}", f" {code} "):
        values = tips.read_fields({"receipt": typed})
        assert tips.follow_up_code(values) == code and "receipt" not in _problems(receipt=typed)
    wrong = digits[:-1] + str((int(digits[-1]) + 1) % 10)  # the check digit catches one wrong digit
    assert tips.follow_up_code(tips.read_fields({"receipt": wrong})) is None
    assert _problems(receipt=wrong) == {"receipt": tips.BAD_RECEIPT}
    assert tips.follow_up_code(tips.read_fields({"receipt": "1" * 65})) is None
    assert tips.follow_up_code(tips.read_fields({})) is None


def test_make_tip_carries_what_was_validated() -> None:
    code = receipts.new_code(RECEIPT_TAGS["border"], SECRET)
    values = tips.read_fields({"category": "border", "what": "Có người vượt biên", "contact": "Zalo 0912"})
    assert tips.validate(values, 5000) == [] and "border" in CATEGORIES
    received = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    tip = tips.make_tip(values, POST, "hmn", received, code, follow_up_to=code)
    assert (tip.post, tip.category, tip.what, tip.where, tip.contact) == (POST, "border", "Có người vượt biên", "",
                                                                       "Zalo 0912")  # fmt: skip
    assert (tip.language, tip.received_at, tip.receipt, tip.follow_up_to) == ("hmn", received, code, code)
