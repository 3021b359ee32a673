"""What a poster prints and where each of its codes leads: the form in the code's own language."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.poster import choices, drawing
from app.poster.choices import Choice
from app.settings import Post, Settings

PUBLIC_URL = "https://tip.example.vn"
POST = Post("ncs", "Đồn Biên phòng Na Cô Sa", "nacosa@example.vn", ("vi", "hmn"))


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(public_url=PUBLIC_URL)


@pytest.mark.parametrize("lang", ["vi", "hmn"])
def test_each_code_carries_its_language_in_capitals_when_it_can(settings: Settings, lang: str) -> None:
    url = choices.form_url(settings, POST, lang)
    assert url == f"HTTPS://TIP.EXAMPLE.VN/P/NCS/{lang.upper()}"
    assert choices.address(settings, POST, lang) == f"tip.example.vn/p/ncs/{lang}"
    # Alphanumeric mode needs a smaller code than the same URL in small letters (byte mode): 29 modules, not 33.
    longer = choices.form_url(settings, Post("ma-lu-thang", "Ma Lù Thàng", "malu@example.vn", ("vi", "hmn")), lang)
    assert longer == f"HTTPS://TIP.EXAMPLE.VN/P/MA-LU-THANG/{lang.upper()}"
    assert len(drawing.qr_matrix(longer)) < len(drawing.qr_matrix(longer.lower()))


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("https://tip.example.vn/tipbox", "https://tip.example.vn/tipbox/p/ncs/hmn"),  # a proxy's prefix keeps its case
        ("https://tip_box.example.vn", "https://tip_box.example.vn/p/ncs/hmn"),  # "_" is not alphanumeric in QR
        ("http://127.0.0.1:8000", "HTTP://127.0.0.1:8000/P/NCS/HMN"),
    ],
)
def test_the_code_keeps_small_letters_otherwise(
    make_settings: Callable[..., Settings], public_url: str, expected: str
) -> None:
    assert choices.form_url(make_settings(public_url=public_url), POST, "hmn") == expected


def test_the_printed_address_is_for_typing_by_hand(make_settings: Callable[..., Settings]) -> None:
    assert choices.address(make_settings(public_url="http://10.0.0.5:8000"), POST, "vi") == "http://10.0.0.5:8000/p/ncs/vi"


def test_options_are_read_case_insensitively_and_a_wrong_one_is_named() -> None:
    assert Choice.parse(POST, "HMN", "a5", "Cards") == Choice("hmn", "A5", "cards")
    wrongs = ((("fr", None, None), "'fr'"), ((None, "B5", None), "'B5'"), ((None, None, "flyer"), "'flyer'"))
    for wrong, named in wrongs:
        with pytest.raises(ValueError, match=named):
            Choice.parse(POST, *wrong)


def test_the_default_sheet_carries_every_language_the_post_offers() -> None:
    assert Choice.parse(POST, None, None, None) == Choice("both", "A4", "poster")
    assert Choice("both", "A4", "poster").languages == ("vi", "hmn")
    assert Choice.parse(Post("x", "X", "x@example.vn", ("hmn",)), None, None, None).languages == ("hmn",)
    # A language without a poster layout of its own (an operator's catalog) gets the Vietnamese poster.
    assert Choice.parse(Post("y", "Y", "y@example.vn", ("blt", "vi")), None, None, None).languages == ("vi",)


def test_the_file_is_named_by_what_is_on_it(tmp_path: Path) -> None:
    assert Choice("hmn", "A3", "cards").filename(POST) == "tipbox-cards-ncs-hmn-A3.pdf"
