"""Drawing on the sheet: a canvas in A4 millimetres, QR codes as vector rectangles, and the step pictograms read
from `poster/*.svg` (a small subset of SVG: rect, circle and path with absolute M L H V C Z)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from itertools import groupby
from typing import Any
from xml.etree import ElementTree

import qrcode
from qrcode.util import MODE_8BIT_BYTE, MODE_ALPHA_NUM, QRData
from reportlab.lib.colors import HexColor
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from app import rendering
from app.poster.choices import alphanumeric
from app.poster.text import LEADING, Fonts

PICTOGRAMS = ("scan", "write", "send")
QUIET_ZONE = 4  # modules of white around the code, as ISO/IEC 18004 asks
A4_WIDTH = 210.0


def qr_matrix(text: str) -> list[list[bool]]:
    """The code's modules with the quiet zone, error correction Q; alphanumeric mode when the text allows it."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_Q, border=QUIET_ZONE)
    mode = MODE_ALPHA_NUM if alphanumeric(text) else MODE_8BIT_BYTE
    code.add_data(QRData(text if mode == MODE_ALPHA_NUM else text.encode("utf-8"), mode=mode))
    code.make(fit=True)
    return [[bool(cell) for cell in row] for row in code.get_matrix()]


@cache
def pictogram(name: str) -> tuple[tuple[str, dict[str, str]], ...]:
    """The shapes of `poster/{name}.svg` (viewBox 0 0 100 100): rect, circle and path with M L H V C Z."""
    path = rendering.resource_dir("poster") / f"{name}.svg"
    root = ElementTree.parse(path).getroot()  # noqa: S314 - our own packaged drawing, not input
    shapes = tuple((element.tag.rsplit("}", 1)[-1], dict(element.attrib)) for element in root)
    for tag, attrib in shapes:
        if tag not in ("rect", "circle", "path"):
            raise ValueError(f"{path}: <{tag}> is not supported")
        if tag == "path":
            list(_path_commands(attrib["d"]))
    return shapes


def _path_commands(d: str) -> Iterator[tuple[str, list[float]]]:
    arity = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "Z": 0}
    tokens = re.findall(r"[A-Za-z]|-?\d*\.?\d+", d)
    index = 0
    while index < len(tokens):
        command = tokens[index]
        if command not in arity:
            raise ValueError(f"path command {command!r} is not supported (absolute M L H V C Z only)")
        count = arity[command]
        yield command, [float(token) for token in tokens[index + 1 : index + 1 + count]]
        index += 1 + count


def _trace(shape: Any, d: str) -> None:
    x = y = 0.0
    for command, args in _path_commands(d):
        if command == "M":
            x, y = args
            shape.moveTo(x, y)
        elif command in "LHV":
            x = args[0] if command in "LH" else x
            y = args[-1] if command in "LV" else y
            shape.lineTo(x, y)
        elif command == "C":
            shape.curveTo(*args)
            x, y = args[4], args[5]
        else:
            shape.close()


class Sheet:
    """A canvas in A4 millimetres measured from the top-left corner, whatever the real paper size; `colors` names
    the colours drawings use (poster/layout.toml)."""

    def __init__(self, canvas: Canvas, fonts: Fonts, paper: tuple[float, float], colors: Mapping[str, str]) -> None:
        self.c, self.fonts, self.colors = canvas, fonts, colors
        scale = paper[0] / (A4_WIDTH * mm)
        self.height = paper[1] / (mm * scale)
        canvas.scale(mm * scale, mm * scale)

    def color(self, name: str) -> HexColor:
        return HexColor(self.colors[name])

    def text(self, lines: Sequence[str], font: str, em: float, color: str, x: float, top: float,
             width: float, align: str = "center") -> float:
        """Draw `lines` from `top`; returns the bottom of the text."""
        self.c.setFillColor(self.color(color))
        self.c.setFont(font, em, em * LEADING)
        for number, line in enumerate(lines):
            baseline = self.height - top - em * (0.86 + LEADING * number)
            if align == "center":
                self.c.drawCentredString(x + width / 2, baseline, line)
            else:
                self.c.drawString(x, baseline, line)
        return top + em * LEADING * len(lines)

    def box(self, x: float, top: float, width: float, height: float, color: str, radius: float = 0) -> None:
        self.c.setFillColor(self.color(color))
        self.c.roundRect(x, self.height - top - height, width, height, radius, stroke=0, fill=1)

    def qr(self, text: str, x: float, top: float, size: float) -> None:
        """The code, quiet zone included, `size` mm square: one filled path, a rectangle per run of dark modules.

        One path rather than a rectangle per module: no hairline seams between neighbours in any viewer.
        """
        matrix = qr_matrix(text)
        module = size / len(matrix)
        self.box(x, top, size, size, "white")
        path = self.c.beginPath()
        for row, cells in enumerate(matrix):
            column, y = 0, self.height - top - (row + 1) * module
            for dark, run in groupby(cells):
                length = len(list(run))
                if dark:
                    path.rect(x + column * module, y, length * module, module)
                column += length
        self.c.setFillColor(HexColor("#000000"))
        self.c.drawPath(path, stroke=0, fill=1)

    def picture(self, name: str, x: float, top: float, size: float) -> None:
        c = self.c
        c.saveState()
        c.translate(x, self.height - top)
        c.scale(size / 100, -size / 100)
        for tag, a in pictogram(name):
            fill, stroke = a.get("fill", "#000000"), a.get("stroke", "none")
            if fill != "none":
                c.setFillColor(HexColor(fill))
            if stroke != "none":
                c.setStrokeColor(HexColor(stroke))
                c.setLineWidth(float(a.get("stroke-width", "1")))
                c.setLineCap({"butt": 0, "round": 1, "square": 2}[a.get("stroke-linecap", "butt")])
                c.setLineJoin({"miter": 0, "round": 1, "bevel": 2}[a.get("stroke-linejoin", "miter")])
                c.setDash([float(v) for v in a.get("stroke-dasharray", "").replace(",", " ").split()])
            shape = c.beginPath()
            if tag == "rect":
                box = [float(a[k]) for k in ("x", "y", "width", "height")]
                if "rx" in a:
                    shape.roundRect(*box, float(a["rx"]))
                else:
                    shape.rect(*box)
            elif tag == "circle":
                shape.circle(float(a["cx"]), float(a["cy"]), float(a["r"]))
            else:
                _trace(shape, a["d"])
            c.drawPath(shape, stroke=int(stroke != "none"), fill=int(fill != "none"))
        c.restoreState()

    def badge(self, number: int, x: float, top: float, radius: float) -> None:
        self.c.setFillColor(self.color("accent"))
        self.c.circle(x, self.height - top, radius, stroke=0, fill=1)
        self.text([str(number)], self.fonts.bold, radius * 1.35, "white", x - radius, top - radius * 0.8, radius * 2)

    def chevron(self, x: float, middle: float) -> None:
        """An arrow head pointing right, its tip at `x`, centred on `middle` (from the top)."""
        c, y = self.c, self.height - middle
        c.setStrokeColor(self.color("accent"))
        c.setLineWidth(1.4)
        c.setLineCap(1)
        c.setLineJoin(1)
        c.lines([(x - 3.5, y + 3.5, x, y), (x, y, x - 3.5, y - 3.5)])

    def cut_guides(self, columns: int, rows: int) -> None:
        """Dashed lines between `columns` x `rows` cards filling the sheet."""
        c, width, height = self.c, A4_WIDTH / columns, self.height / rows
        c.setStrokeColor(self.color("cut"))
        c.setLineWidth(0.2)
        c.setDash([1.5, 1.5])
        c.lines([(col * width, 0, col * width, self.height) for col in range(1, columns)]
                + [(0, row * height, A4_WIDTH, row * height) for row in range(1, rows)])
        c.setDash([])
