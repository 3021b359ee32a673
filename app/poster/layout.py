"""Where everything goes on the sheet: the poster's blocks stacked from the top, or eight pocket cards. The numbers
live in `poster/layout.toml`; this module places text, codes and pictograms by them."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from app import rendering
from app.poster.drawing import A4_WIDTH, PICTOGRAMS, Sheet
from app.poster.text import LEADING, Texts, fit


@cache
def spec() -> dict[str, Any]:
    """poster/layout.toml."""
    with (rendering.resource_dir("poster") / "layout.toml").open("rb") as handle:
        return tomllib.load(handle)


@dataclass(frozen=True, slots=True)
class Side:
    """One language on the sheet: its texts, and the code and address of the form in that language."""

    texts: Texts
    url: str
    address: str


@dataclass(frozen=True, slots=True)
class Content:
    """Everything printed: the post's name and each language's side, in print order."""

    name: str
    sides: tuple[Side, ...]


def draw(sheet: Sheet, layout: str, content: Content) -> None:
    """`layout` ("poster" or "cards") of `content` on `sheet`."""
    if layout == "cards":
        _cards(sheet, spec()["cards"], content)
    else:
        _poster(sheet, spec()["poster-both" if len(content.sides) > 1 else "poster"], content)


def stack(sheet: Sheet, items: Sequence[tuple[str, str, float, str]], smallest: float, x: float, top: float,
          width: float, height: float, align: str = "center", middle: bool = True) -> None:
    """(text, font, size, color) items one under another, each fitted to its share of the box."""
    total = sum(size for _, _, size, _ in items)
    fitted = [(fit(text, font, size, smallest * size / items[0][2], width, height * size / total), font, color)
              for text, font, size, color in items]
    used = sum(em * LEADING * len(lines) for (em, lines), _, _ in fitted)
    top += (height - used) / 2 if middle else 0
    for (em, lines), font, color in fitted:
        top = sheet.text(lines, font, em, color, x, top, width, align)


def _poster(sheet: Sheet, spec: dict[str, Any], content: Content) -> None:
    margin, blocks = spec["margin"], spec["blocks"]
    width = A4_WIDTH - 2 * margin
    spare = sheet.height - 2 * margin - sum(block["height"] for block in blocks)
    gap = max(spare, 0) / (len(blocks) - 1)
    bold, regular = sheet.fonts.bold, sheet.fonts.regular
    colors = ("accent", "second")
    top = margin
    for block in blocks:
        kind, height, smallest = block["kind"], block["height"], block.get("min", 6)
        sizes = (block.get("size", 0), block.get("second", block.get("size", 0)))
        texts = [side.texts for side in content.sides]
        if kind == "name":
            sheet.box(margin, top, width, height, "accent", radius=2.5)
            stack(sheet, [(content.name, bold, sizes[0], "white")], smallest, margin + 5, top, width - 10, height)
        elif kind == "title":
            stack(sheet, [(t.title, bold, sizes[i], colors[i]) for i, t in enumerate(texts)], smallest, margin, top,
                  width, height)
        elif kind == "qr":
            sheet.qr(content.sides[0].url, (A4_WIDTH - height) / 2, top, height)
        elif kind == "address":
            side = content.sides[0]
            items = [(side.texts.type_address, regular, block["label"], "second"),
                     (side.address, bold, sizes[0], "ink")]
            stack(sheet, items, smallest, margin, top, width, height)
        elif kind == "codes":
            _codes(sheet, block, content, margin, top, width)
        elif kind == "steps":
            _steps(sheet, block, texts, margin, top, width, sizes)
        elif kind == "promise":
            sheet.box(margin, top, width, height, "soft", radius=3)
            items = [(t.promise, bold, sizes[i], ("ink", "second")[i]) for i, t in enumerate(texts)]
            stack(sheet, items, smallest, margin + 6, top + 1.5, width - 12, height - 3)
        else:
            raise ValueError(f"poster/layout.toml: unknown block kind {kind!r}")
        top += height + gap


def _codes(sheet: Sheet, block: dict[str, Any], content: Content, x: float, top: float, width: float) -> None:
    """One code per language side by side, each under its language's name and over its own address."""
    column, qr, label = width / len(content.sides), block["qr"], block["label_height"]
    bold, regular, smallest = sheet.fonts.bold, sheet.fonts.regular, block["min"]
    for index, side in enumerate(content.sides):
        left = x + index * column
        stack(sheet, [(side.texts.name, bold, block["label"], "accent")], smallest, left, top, column, label)
        sheet.qr(side.url, left + (column - qr) / 2, top + label, qr)
        items = [(side.texts.type_address, regular, block["type"], "second"),
                 (side.address, bold, block["size"], "ink")]
        below = top + label + qr
        stack(sheet, items, smallest, left + 1, below, column - 2, block["height"] - label - qr)


def _steps(sheet: Sheet, block: dict[str, Any], texts: Sequence[Texts], x: float, top: float, width: float,
           sizes: tuple[float, float]) -> None:
    column, picture = width / 3, block["picture"]
    for index, name in enumerate(PICTOGRAMS):
        left = x + index * column
        sheet.picture(name, left + (column - picture) / 2, top, picture)
        sheet.badge(index + 1, left + (column - picture) / 2 + picture * 0.12, top + picture * 0.12, picture * 0.12)
        items = [(t.steps[index], sheet.fonts.bold if i == 0 else sheet.fonts.regular, sizes[i],
                  ("ink", "second")[i]) for i, t in enumerate(texts)]
        stack(sheet, items, block["min"], left + 1, top + picture + 2, column - 2, block["height"] - picture - 2,
              middle=False)
        if index < 2:  # a chevron pointing on to the next step
            sheet.chevron(left + column + 1.5, top + picture / 2)


def _cards(sheet: Sheet, spec: dict[str, Any], content: Content) -> None:
    """Eight cards, each in one language with its own code: on a sheet of two languages, a column each."""
    columns, rows, inset = spec["columns"], spec["rows"], spec["inset"]
    card_width, card_height = A4_WIDTH / columns, sheet.height / rows
    bold, smallest = sheet.fonts.bold, spec["min"]
    for row in range(rows):
        for col in range(columns):
            side = content.sides[col % len(content.sides)]
            texts = side.texts
            x, top = col * card_width + inset, row * card_height + inset
            width, height = card_width - 2 * inset, card_height - 2 * inset
            sheet.box(x, top, width, spec["band"], "accent", radius=1.5)
            stack(sheet, [(content.name, bold, spec["name_size"], "white")], smallest, x + 2, top, width - 4,
                  spec["band"])
            below, qr = top + spec["band"] + 1, spec["qr"]
            sheet.qr(side.url, x - 1, below, qr)
            stack(sheet, [(side.address, bold, spec["address_size"], "ink")], smallest, x, below + qr,
                  qr - 2, top + height - below - qr)
            left = x + qr - 2 + spec["gutter"]
            right_width, room = x + width - left, top + height - below - 1
            title = room * spec["title_share"]
            stack(sheet, [(texts.title, bold, spec["title_size"], "accent")], smallest, left, below + 1,
                  right_width, title, align="left", middle=False)
            step_top, step = below + 2.5 + title, spec["step_picture"]
            for index, name in enumerate(PICTOGRAMS):
                sheet.picture(name, left, step_top, step)
                sheet.badge(index + 1, left + step * 0.12, step_top + step * 0.14, step * 0.14)
                stack(sheet, [(texts.steps[index], sheet.fonts.regular, spec["step_size"], "ink")], smallest,
                      left + step + 1, step_top, right_width - step - 1, step, align="left")
                step_top += step + 0.4
            stack(sheet, [(texts.promise, bold, spec["promise_size"], "accent")], smallest, left, step_top,
                  right_width, top + height - step_top, align="left")
    sheet.cut_guides(columns, rows)
