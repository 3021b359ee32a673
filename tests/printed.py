"""Reading a printed sheet back as a person would: its text layer, where each piece of text sits, and every QR code
on its rendering (pdftoppm, then zxing-cpp)."""

from __future__ import annotations

import io
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image
from pypdf import PdfReader

from tests.helpers import require

DPI = 150
MM_PER_POINT = 25.4 / 72


def text_of(pdf: bytes) -> str:
    """The page's text layer with every run of whitespace (line breaks of wrapped titles too) made one space."""
    return " ".join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())


@dataclass(frozen=True)
class Run:
    """A piece of text as drawn, and where: its start, in pixels of the rendering at DPI, from the top-left."""

    text: str
    x: float
    y: float


def runs(pdf: bytes) -> list[Run]:
    """Every piece of text on the page with its position."""
    page = PdfReader(io.BytesIO(pdf)).pages[0]
    height = float(page.mediabox.height)
    found: list[Run] = []

    def visit(text: str, cm: Any, tm: Any, font: Any, size: Any) -> None:
        if text.strip():
            x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            found.append(Run(text.strip(), x / 72 * DPI, (height - y) / 72 * DPI))

    page.extract_text(visitor_text=visit)
    return found


def codes(pdf: bytes, tmp_path: Path) -> tuple[list[zxingcpp.Barcode], Image.Image]:
    """Render the page with pdftoppm at DPI and read every QR code on it with zxing-cpp."""
    pdftoppm = require("pdftoppm", "poppler-utils")
    source = tmp_path / "page.pdf"
    source.write_bytes(pdf)
    subprocess.run([pdftoppm, "-png", "-r", str(DPI), "-singlefile", source, tmp_path / "page"], check=True)
    image = Image.open(tmp_path / "page.png").convert("L")
    return zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode), image


def centre(code: zxingcpp.Barcode) -> tuple[float, float]:
    corners = (code.position.top_left, code.position.top_right, code.position.bottom_left, code.position.bottom_right)
    return sum(p.x for p in corners) / 4, sum(p.y for p in corners) / 4


def width_mm(code: zxingcpp.Barcode) -> float:
    """The symbol's printed width (its quiet zone not counted)."""
    return (code.position.top_right.x - code.position.top_left.x) / DPI * 25.4


def language_beside(code: zxingcpp.Barcode, pdf: bytes, words: dict[str, str]) -> str:
    """The language of the text printed nearest the code: `words` maps each language to everything printed in it;
    a piece of text that belongs to one language only counts."""
    x, y = centre(code)
    best: tuple[float, str] | None = None
    for run in runs(pdf):
        languages = [language for language, text in words.items() if run.text in text]
        if len(languages) == 1:
            distance = math.hypot(run.x - x, run.y - y)
            if best is None or distance < best[0]:
                best = (distance, languages[0])
    assert best is not None, "no text in one language on the sheet"
    return best[1]
