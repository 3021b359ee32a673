"""The sheets as printed: every block in its place, every code scanning, each code beside its own language."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from pypdf import PdfReader

from app import poster
from app.poster import text
from app.settings import Post, Settings
from tests import printed

PUBLIC_URL = "https://tip.example.vn"
POST = Post("ncs", "Đồn Biên phòng Na Cô Sa", "nacosa@example.vn", ("vi", "hmn"))
LONG = Post("ma-lu-thang", "Đồn Biên phòng cửa khẩu quốc tế Ma Lù Thàng", "malu@example.vn", ("vi", "hmn"))
TITLE = {"vi": "Hòm thư tố giác trực tuyến — không cần ghi tên", "hmn": "Thawv xa xov hauv xov tooj — tsis tas sau npe"}
PAPER_MM = {"A4": (210, 297), "A3": (297, 420), "A5": (148, 210)}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(public_url=PUBLIC_URL)


def words() -> dict[str, str]:
    """Everything printed in each language."""
    return {lang: "\n".join(text.Texts.load(lang, None).all()) for lang in ("vi", "hmn")}


def embedded_fonts(pdf: bytes) -> dict[str, bool]:
    """Each font the page uses, and whether its program is embedded in the file."""
    fonts = PdfReader(io.BytesIO(pdf)).pages[0]["/Resources"]["/Font"]
    found = {}
    for ref in fonts.values():
        font = ref.get_object()
        descriptor = font.get("/FontDescriptor")
        found[str(font["/BaseFont"])] = descriptor is not None and any(
            key in descriptor.get_object() for key in ("/FontFile", "/FontFile2", "/FontFile3")
        )
    return found


@pytest.mark.parametrize("size", ["A4", "A3", "A5"])
@pytest.mark.parametrize("layout", ["poster", "cards"])
def test_both_languages_each_with_codes_that_open_that_language(
    settings: Settings, tmp_path: Path, layout: str, size: str
) -> None:
    pdf = poster.render(settings, POST, poster.Choice("both", size, layout))
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    paper = (float(box.width) * printed.MM_PER_POINT, float(box.height) * printed.MM_PER_POINT)
    assert paper == pytest.approx(PAPER_MM[size], abs=0.5)
    fonts = embedded_fonts(pdf)
    assert fonts and all(fonts.values()), f"fonts not embedded: {fonts}"

    copies = 1 if layout == "poster" else 4  # cards: a column of Vietnamese, a column of Hmong
    content = printed.text_of(pdf)
    for lang in ("vi", "hmn"):
        assert content.count(TITLE[lang]) == copies
        assert content.count(f"tip.example.vn/p/ncs/{lang}") == copies

    codes, _ = printed.codes(pdf, tmp_path)
    assert len(codes) == (2 if layout == "poster" else 8)
    for code in codes:
        assert code.ec_level == "Q"
        lang = printed.language_beside(code, pdf, words())
        assert code.text == f"HTTPS://TIP.EXAMPLE.VN/P/NCS/{lang.upper()}"
    assert sorted(code.text for code in codes) == sorted(
        f"HTTPS://TIP.EXAMPLE.VN/P/NCS/{lang}" for lang in ("HMN", "VI") for _ in range(copies)
    )


def test_on_the_bilingual_poster_each_code_is_labelled_in_its_own_language_and_6_cm_wide(
    settings: Settings, tmp_path: Path
) -> None:
    pdf = poster.render(settings, LONG, poster.Choice("both", "A4", "poster"))
    codes, _ = printed.codes(pdf, tmp_path)
    labels = {run.text: run for run in printed.runs(pdf) if run.text in ("Tiếng Việt", "Hmoob")}
    assert set(labels) == {"Tiếng Việt", "Hmoob"}
    for code in codes:
        x, y = printed.centre(code)
        nearest = min(labels.values(), key=lambda run: abs(run.x - x))
        lang = {"Tiếng Việt": "VI", "Hmoob": "HMN"}[nearest.text]
        assert code.text == f"HTTPS://TIP.EXAMPLE.VN/P/MA-LU-THANG/{lang}"
        assert nearest.y < y  # the name above its code
        assert printed.width_mm(code) >= 60, f"the {lang} code is {printed.width_mm(code):.1f} mm wide on A4"


@pytest.mark.parametrize("lang", ["vi", "hmn"])
@pytest.mark.parametrize("layout", ["poster", "cards"])
def test_one_language(settings: Settings, tmp_path: Path, lang: str, layout: str) -> None:
    pdf = poster.render(settings, LONG, poster.Choice(lang, "A4", layout))
    content = printed.text_of(pdf)
    other = "hmn" if lang == "vi" else "vi"
    assert content.count(TITLE[lang]) == (1 if layout == "poster" else 8)
    assert TITLE[other] not in content
    assert "Ma Lù Thàng" in content
    codes, _ = printed.codes(pdf, tmp_path)
    assert [code.text for code in codes] == [f"HTTPS://TIP.EXAMPLE.VN/P/MA-LU-THANG/{lang.upper()}"] * len(codes)
    assert len(codes) == (1 if layout == "poster" else 8)
    if layout == "poster":
        assert printed.width_mm(codes[0]) >= 60


def test_text_too_long_for_the_sheet_is_refused(settings: Settings) -> None:
    post = Post("ncs", "Đồn " * 200, "nacosa@example.vn", ("vi", "hmn"))
    with pytest.raises(poster.PosterError, match="does not fit"):
        poster.render(settings, post, poster.Choice("vi", "A4", "cards"))
