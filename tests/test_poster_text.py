"""The words on a poster: from the catalogs, in a font that has every letter, fitted to their box or refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import reportlab

from app.poster import text
from app.poster.choices import PosterError


def test_each_language_brings_its_own_words_and_name() -> None:
    vi, hmn = text.Texts.load("vi", None), text.Texts.load("hmn", None)
    assert (vi.name, hmn.name) == ("Tiếng Việt", "Hmoob")
    assert vi.title == "Hòm thư tố giác trực tuyến — không cần ghi tên"
    assert vi.steps[1] == "Viết hoặc nói những gì bạn đã thấy"  # write or say: a voice note is a tip too
    assert hmn.steps[1] == "Sau los yog hais tej yam koj tau pom"
    assert vi.promise.startswith("Không cần ghi tên, không cần đăng nhập")  # the form's own words


def test_an_operators_catalog_changes_the_words(tmp_path: Path) -> None:
    (tmp_path / "vi.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        f'msgid "{text.TITLE}"\nmsgstr "Hòm thư tố giác của đồn"\n\n'
        # Decomposed letters (as some editors save them) are composed: reportlab cannot stack combining marks.
        f'msgid "{text.STEPS[2]}"\nmsgstr "A\u0302\u0301n nút Gửi"\n',
        encoding="utf-8",
    )
    texts = text.Texts.load("vi", tmp_path)
    assert texts.title == "Hòm thư tố giác của đồn"
    assert texts.steps[2] == "Ấn nút Gửi"


def test_text_takes_the_largest_size_that_fits_its_box() -> None:
    fonts = text.find_fonts()
    em, lines = text.fit("Hòm thư tố giác trực tuyến", fonts.bold, 40, 10, width=80, height=30)
    assert len(lines) >= 2 and em < 40 * text.PT
    assert " ".join(lines) == "Hòm thư tố giác trực tuyến"
    with pytest.raises(PosterError, match="does not fit on the sheet even at 10 pt"):
        text.fit("Đồn " * 200, fonts.bold, 40, 10, width=80, height=30)


def test_no_font_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text, "_PACKAGED_FONTS", ("No Such Family",))
    monkeypatch.setattr(text, "_SYSTEM_FONTS", ((Path("/nonexistent/a.ttf"), Path("/nonexistent/b.ttf")),))
    with pytest.raises(PosterError) as caught:
        text.find_fonts()
    message = str(caught.value)
    assert "no font for Vietnamese and Hmong found" in message
    assert "pip install fontpkg-be-vietnam-pro" in message and "apt-get install fonts-dejavu-core" in message


def test_a_missing_font_file(tmp_path: Path) -> None:
    with pytest.raises(PosterError, match=f"font file {tmp_path / 'missing.ttf'} not found"):
        text.find_fonts(tmp_path / "missing.ttf")


def test_a_font_without_a_letter_is_refused_before_drawing() -> None:
    vera = text.find_fonts(Path(reportlab.__file__).parent / "fonts" / "Vera.ttf")  # Bitstream Vera: Latin-1 only
    with pytest.raises(PosterError, match=r"Vera\.ttf has no letter 'ế'"):
        vera.check(text.Texts.load("vi", None).all())
    text.find_fonts().check([*text.Texts.load("vi", None).all(), *text.Texts.load("hmn", None).all()])
