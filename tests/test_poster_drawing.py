"""Drawing on the sheet: QR codes that scan with their quiet zone, at the size asked for, on any paper."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from reportlab.pdfgen.canvas import Canvas

from app.poster import choices, drawing, layout, text
from tests import printed


def test_the_code_has_error_correction_q_and_a_quiet_zone() -> None:
    matrix = drawing.qr_matrix("HTTPS://TIP.EXAMPLE.VN/P/NCS/HMN")
    border = [row[:4] + row[-4:] for row in matrix] + matrix[:4] + matrix[-4:]
    assert not any(any(row) for row in border)
    assert matrix[4][4]  # the first finder pattern starts right after the quiet zone


def assert_quiet_zone(image: Image.Image, code: object, modules: int) -> None:
    """Four modules of white on every side of the symbol, in the rendering itself."""
    top_left, bottom_right = code.position.top_left, code.position.bottom_right  # type: ignore[attr-defined]
    module = (bottom_right.x - top_left.x + 1) / modules
    quiet = 4 * module
    left, top = top_left.x - quiet + 1, top_left.y - quiet + 1
    right, bottom = bottom_right.x + quiet - 1, bottom_right.y + quiet - 1
    for box in (
        (left, top, top_left.x - 2, bottom),  # left strip
        (bottom_right.x + 2, top, right, bottom),  # right strip
        (left, top, right, top_left.y - 2),  # top strip
        (left, bottom_right.y + 2, right, bottom),  # bottom strip
    ):
        darkest, _ = image.crop(tuple(round(v) for v in box)).getextrema()
        assert darkest > 200, f"ink in the quiet zone {box}"


@pytest.mark.parametrize(("paper", "scale"), [("A4", 1.0), ("A5", 148 / 210)])
def test_a_code_is_drawn_at_its_size_and_scans(tmp_path: Path, paper: str, scale: float) -> None:
    url = "HTTPS://TIP.EXAMPLE.VN/P/NCS/VI"
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=choices.SIZES[paper])
    sheet = drawing.Sheet(canvas, text.find_fonts(), choices.SIZES[paper], layout.spec()["colors"])
    sheet.box(0, 0, drawing.A4_WIDTH, sheet.height, "soft")  # a tinted page: the code brings its own white
    sheet.qr(url, 40, 40, 74)
    canvas.showPage()
    canvas.save()
    (code,), image = printed.codes(buffer.getvalue(), tmp_path)
    assert code.text == url and code.ec_level == "Q"
    modules = len(drawing.qr_matrix(url)) - 2 * drawing.QUIET_ZONE
    assert printed.width_mm(code) == pytest.approx(74 * scale * modules / (modules + 8), abs=1.0)
    assert_quiet_zone(image, code, modules)


@pytest.mark.parametrize("name", drawing.PICTOGRAMS)
def test_pictograms_are_drawn_from_supported_shapes(name: str) -> None:
    shapes = drawing.pictogram(name)
    assert shapes
    assert {tag for tag, _ in shapes} <= {"rect", "circle", "path"}


def test_an_unsupported_path_command_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="path command 'a' is not supported"):
        list(drawing._path_commands("M 0 0 a 1 1 0 0 1 2 2"))
