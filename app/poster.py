"""Print-ready posters and pocket cards: a post's QR code, its title and three steps, in Vietnamese and Hmong.

The PDF is drawn with reportlab: the QR code as filled rectangles (sharp at any size), text in an embedded
TrueType font whose coverage of every string is checked before anything is drawn. The layout numbers live in
`poster/layout.toml` and the step pictograms in `poster/*.svg` (a small subset of SVG, read below).
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import threading
import tomllib
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from itertools import groupby
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import qrcode
from qrcode.util import MODE_8BIT_BYTE, MODE_ALPHA_NUM, QRData
from reportlab.lib.colors import HexColor
from reportlab.lib.pagesizes import A3, A4, A5
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.pdfgen.canvas import Canvas

from app import i18n, rendering
from app.i18n import N_
from app.settings import Post, Settings

TITLE = N_("Anonymous online tip box for reporting crime and illegal exit and entry")
STEPS = (N_("Scan the code with Zalo or the camera"), N_("Write what you saw"), N_("Press Send"))
PROMISE = N_("No name, no login. Nobody will know who sent it.")
TYPE_ADDRESS = N_("Or type this address:")

SIZES = {"A4": A4, "A3": A3, "A5": A5}
LANGUAGES = ("vi", "hmn", "both")
LAYOUTS = ("poster", "cards")
PICTOGRAMS = ("scan", "write", "send")
QUIET_ZONE = 4  # modules of white around the code, as ISO/IEC 18004 asks
_A4_WIDTH = 210.0
_PT = 25.4 / 72  # one point in millimetres
_ALPHANUMERIC = re.compile(r"[0-9A-Z $%*+\-./:]+")
_PACKAGED_FONTS = ("Be Vietnam Pro", "Noto Sans")  # fontpkg-be-vietnam-pro, fontpkg-noto-sans on PyPI
_SYSTEM_FONTS = ((Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
                  Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")),)
_INSTALL_FONT = "pip install fontpkg-be-vietnam-pro (or apt-get install fonts-dejavu-core), or pass --font FILE.ttf"
# reportlab keeps per-document font state on shared font objects: one drawing at a time.
_LOCK = threading.Lock()


class PosterError(Exception):
    """A poster cannot be made; the message is one line saying why and what to do."""


@dataclass(frozen=True, slots=True)
class Choice:
    """What to print: `lang` is vi, hmn or both; `size` A4, A3 or A5; `layout` poster or cards."""

    lang: str
    size: str
    layout: str

    @classmethod
    def parse(cls, post: Post, lang: str | None, size: str | None, layout: str | None) -> Choice:
        """Validate the options (case-insensitively); a wrong one raises ValueError naming it."""
        lang = (lang or default_language(post)).lower()
        size, layout = (size or "A4").upper(), (layout or "poster").lower()
        for value, allowed in ((lang, LANGUAGES), (size, tuple(SIZES)), (layout, LAYOUTS)):
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return cls(lang, size, layout)

    def filename(self, post: Post) -> str:
        return f"tipbox-{self.layout}-{post.slug}-{self.lang}-{self.size}.pdf"


def default_language(post: Post) -> str:
    """Both languages where the post offers both, else its own default (Vietnamese if that has no layout)."""
    if {"vi", "hmn"} <= set(post.languages):
        return "both"
    return post.default_language if post.default_language in LANGUAGES else "vi"


def form_url(settings: Settings, post: Post) -> str:
    """What the code encodes: the post's form, in capitals when QR alphanumeric mode can hold it (smaller code).

    Only a URL without a path prefix is capitalised: scheme and host are case-insensitive, and the service
    routes `/P/{SLUG}` as `/p/{slug}`, but a reverse proxy's prefix may not be.
    """
    url = f"{settings.base_url}/p/{post.slug}"
    bare = re.sub(r"^https?://", "", settings.base_url, flags=re.IGNORECASE)
    if "/" not in bare and _ALPHANUMERIC.fullmatch(url.upper()):
        return url.upper()
    return url


def address(settings: Settings, post: Post) -> str:
    """The form's address as printed under the code, for typing by hand (no `https://`, small letters)."""
    return re.sub(r"^https://", "", f"{settings.base_url}/p/{post.slug}", flags=re.IGNORECASE)


def qr_matrix(text: str) -> list[list[bool]]:
    """The code's modules with the quiet zone, error correction Q; alphanumeric mode when the text allows it."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_Q, border=QUIET_ZONE)
    mode = MODE_ALPHA_NUM if _ALPHANUMERIC.fullmatch(text) else MODE_8BIT_BYTE
    code.add_data(QRData(text if mode == MODE_ALPHA_NUM else text.encode("utf-8"), mode=mode))
    code.make(fit=True)
    return [[bool(cell) for cell in row] for row in code.get_matrix()]


# Fonts ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fonts:
    regular: str
    bold: str

    def check(self, texts: Sequence[str]) -> None:
        """Refuse any character the font cannot draw, before anything is drawn (no empty boxes on paper)."""
        for name in (self.regular, self.bold):
            font = pdfmetrics.getFont(name)
            for text in texts:
                for char in text:
                    if not char.isspace() and ord(char) not in font.face.charToGlyph:
                        raise PosterError(
                            f"font {font.face.filename} has no letter {char!r} (U+{ord(char):04X}, in {text!r}): "
                            + _INSTALL_FONT
                        )


@cache
def _register(path: Path) -> str:
    # reportlab's font registry is global: a name per file, so two fonts with the same file name never clash.
    name = f"tipbox-{path.stem}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
    try:
        pdfmetrics.registerFont(TTFont(name, str(path)))
    except (OSError, TTFError) as exc:
        raise PosterError(f"cannot use font {path}: {exc}") from exc
    return name


def _packaged_font(family: str) -> tuple[Path, Path] | None:
    try:
        import fontpkg

        return fontpkg.path(family, 400), fontpkg.path(family, 700)
    except (ImportError, LookupError, ValueError):  # fontpkg's errors are LookupErrors: not installed
        return None


def find_fonts(explicit: Path | None = None) -> Fonts:
    """`explicit` for everything, else the first of Be Vietnam Pro, Noto Sans (PyPI) or DejaVu Sans (Debian)."""
    if explicit is not None:
        if not explicit.is_file():
            raise PosterError(f"font file {explicit} not found")
        name = _register(explicit)
        return Fonts(name, name)
    candidates = [_packaged_font(family) for family in _PACKAGED_FONTS] + list(_SYSTEM_FONTS)
    for pair in candidates:
        if pair is not None and pair[0].is_file() and pair[1].is_file():
            return Fonts(_register(pair[0]), _register(pair[1]))
    raise PosterError(f"no font for Vietnamese and Hmong found: {_INSTALL_FONT}")


# Text ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Texts:
    """Everything printed in one language, from the gettext catalogs (an operator's override included)."""

    lang: str
    title: str
    steps: tuple[str, str, str]
    promise: str
    type_address: str

    @classmethod
    def load(cls, lang: str, overrides: Path | None) -> Texts:
        gettext = i18n.translations(lang, overrides).gettext

        def text(msgid: str) -> str:
            # Precomposed letters: reportlab places glyphs one by one and cannot stack combining marks.
            return unicodedata.normalize("NFC", gettext(msgid)).strip()

        first, second, third = (text(step) for step in STEPS)
        return cls(lang, text(TITLE), (first, second, third), text(PROMISE), text(TYPE_ADDRESS))

    def all(self) -> tuple[str, ...]:
        return (self.title, *self.steps, self.promise, self.type_address)


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and pdfmetrics.stringWidth(f"{lines[-1]} {word}", font, size) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


_LEADING = 1.18  # line height, in font sizes


def _fit(text: str, font: str, size: float, smallest: float, width: float, height: float) -> tuple[float, list[str]]:
    """The largest size (points) from `size` down to `smallest` at which `text` wraps into the box (mm)."""
    while True:
        em = size * _PT
        lines = _wrap(text, font, em, width)
        widest = max((pdfmetrics.stringWidth(line, font, em) for line in lines), default=0.0)
        if widest <= width and len(lines) * em * _LEADING <= height + 0.01:
            return em, _balance(text, font, em, width, len(lines))
        if size <= smallest:
            raise PosterError(f"{text!r} does not fit on the sheet even at {smallest} pt: shorten it in the catalog")
        size = max(smallest, size - 0.5)


def _balance(text: str, font: str, em: float, width: float, count: int) -> list[str]:
    """The same number of lines, as even as they go: no lone word left on the last line."""
    narrow, wide = width / count, width
    for _ in range(12):  # bisect for the narrowest measure that still needs no more lines
        middle = (narrow + wide) / 2
        lines = _wrap(text, font, em, middle)
        fits = all(pdfmetrics.stringWidth(line, font, em) <= middle for line in lines)
        narrow, wide = (narrow, middle) if fits and len(lines) <= count else (middle, wide)
    return _wrap(text, font, em, wide)


# Drawing -------------------------------------------------------------------------------------------------


@cache
def _layout() -> dict[str, Any]:
    with (rendering.resource_dir("poster") / "layout.toml").open("rb") as handle:
        return tomllib.load(handle)


def _color(name: str) -> HexColor:
    return HexColor(_layout()["colors"][name])


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


class _Sheet:
    """A canvas in A4 millimetres measured from the top-left corner, whatever the real paper size."""

    def __init__(self, canvas: Canvas, fonts: Fonts, paper: tuple[float, float]) -> None:
        self.c, self.fonts = canvas, fonts
        scale = paper[0] / (_A4_WIDTH * mm)
        self.height = paper[1] / (mm * scale)
        canvas.scale(mm * scale, mm * scale)

    def text(self, lines: Sequence[str], font: str, em: float, color: str, x: float, top: float,
             width: float, align: str = "center") -> float:
        """Draw `lines` from `top`; returns the bottom of the text."""
        self.c.setFillColor(_color(color))
        self.c.setFont(font, em, em * _LEADING)
        for number, line in enumerate(lines):
            baseline = self.height - top - em * (0.86 + _LEADING * number)
            if align == "center":
                self.c.drawCentredString(x + width / 2, baseline, line)
            else:
                self.c.drawString(x, baseline, line)
        return top + em * _LEADING * len(lines)

    def box(self, x: float, top: float, width: float, height: float, color: str, radius: float = 0) -> None:
        self.c.setFillColor(_color(color))
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
        self.c.setFillColor(_color("accent"))
        self.c.circle(x, self.height - top, radius, stroke=0, fill=1)
        self.text([str(number)], self.fonts.bold, radius * 1.35, "white", x - radius, top - radius * 0.8, radius * 2)


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


# Layouts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Content:
    name: str
    texts: tuple[Texts, ...]
    url: str
    address: str


def _stack(sheet: _Sheet, items: Sequence[tuple[str, str, float, str]], smallest: float,
           x: float, top: float, width: float, height: float, align: str = "center", middle: bool = True) -> None:
    """(text, font, size, color) items one under another, each fitted to its share of the box."""
    total = sum(size for _, _, size, _ in items)
    fitted = [(_fit(text, font, size, smallest * size / items[0][2], width, height * size / total), font, color)
              for text, font, size, color in items]
    used = sum(em * _LEADING * len(lines) for (em, lines), _, _ in fitted)
    top += (height - used) / 2 if middle else 0
    for (em, lines), font, color in fitted:
        top = sheet.text(lines, font, em, color, x, top, width, align)


def _poster(sheet: _Sheet, spec: dict[str, Any], content: _Content) -> None:
    margin, blocks = spec["margin"], spec["blocks"]
    width = _A4_WIDTH - 2 * margin
    spare = sheet.height - 2 * margin - sum(block["height"] for block in blocks)
    gap = max(spare, 0) / (len(blocks) - 1)
    bold, regular = sheet.fonts.bold, sheet.fonts.regular
    top = margin
    for block in blocks:
        kind, height, smallest = block["kind"], block["height"], block.get("min", 6)
        sizes = (block.get("size", 0), block.get("second", block.get("size", 0)))
        colors = ("ink", "second")
        if kind == "name":
            sheet.box(margin, top, width, height, "accent", radius=2.5)
            _stack(sheet, [(content.name, bold, sizes[0], "white")], smallest, margin + 5, top, width - 10, height)
        elif kind == "title":
            items = [(t.title, bold, sizes[i], ("accent", "second")[i]) for i, t in enumerate(content.texts)]
            _stack(sheet, items, smallest, margin, top, width, height)
        elif kind == "qr":
            sheet.qr(content.url, (_A4_WIDTH - height) / 2, top, height)
        elif kind == "address":
            label = "   /   ".join(t.type_address for t in content.texts)
            items = [(label, regular, block["label"], "second"), (content.address, bold, sizes[0], "ink")]
            _stack(sheet, items, smallest, margin, top, width, height)
        elif kind == "steps":
            _steps(sheet, block, content, margin, top, width, sizes)
        elif kind == "promise":
            sheet.box(margin, top, width, height, "soft", radius=3)
            items = [(t.promise, bold, sizes[i], colors[i]) for i, t in enumerate(content.texts)]
            _stack(sheet, items, smallest, margin + 6, top + 1.5, width - 12, height - 3)
        else:
            raise ValueError(f"poster/layout.toml: unknown block kind {kind!r}")
        top += height + gap


def _steps(sheet: _Sheet, block: dict[str, Any], content: _Content, x: float, top: float, width: float,
           sizes: tuple[float, float]) -> None:
    column, picture = width / 3, block["picture"]
    for index, name in enumerate(PICTOGRAMS):
        left = x + index * column
        sheet.picture(name, left + (column - picture) / 2, top, picture)
        sheet.badge(index + 1, left + (column - picture) / 2 + picture * 0.12, top + picture * 0.12, picture * 0.12)
        items = [(t.steps[index], sheet.fonts.bold if i == 0 else sheet.fonts.regular, sizes[i],
                  ("ink", "second")[i]) for i, t in enumerate(content.texts)]
        _stack(sheet, items, block["min"], left + 1, top + picture + 2, column - 2, block["height"] - picture - 2,
               middle=False)
        if index < 2:  # a chevron pointing on to the next step
            c, middle, right = sheet.c, sheet.height - top - picture / 2, left + column
            c.setStrokeColor(_color("accent"))
            c.setLineWidth(1.4)
            c.setLineCap(1)
            c.setLineJoin(1)
            c.lines([(right - 2, middle + 3.5, right + 1.5, middle), (right + 1.5, middle, right - 2, middle - 3.5)])


def _cards(sheet: _Sheet, spec: dict[str, Any], content: _Content) -> None:
    columns, rows, inset = spec["columns"], spec["rows"], spec["inset"]
    card_width, card_height = _A4_WIDTH / columns, sheet.height / rows
    bold, smallest = sheet.fonts.bold, spec["min"]
    for row in range(rows):
        for col in range(columns):
            texts = content.texts[col % len(content.texts)]
            x, top = col * card_width + inset, row * card_height + inset
            width, height = card_width - 2 * inset, card_height - 2 * inset
            sheet.box(x, top, width, spec["band"], "accent", radius=1.5)
            _stack(sheet, [(content.name, bold, spec["name_size"], "white")], smallest, x + 2, top, width - 4,
                   spec["band"])
            below, qr = top + spec["band"] + 1, spec["qr"]
            sheet.qr(content.url, x - 1, below, qr)
            _stack(sheet, [(content.address, bold, spec["address_size"], "ink")], smallest, x, below + qr,
                   qr - 2, top + height - below - qr)
            left = x + qr - 2 + spec["gutter"]
            right_width, room = x + width - left, top + height - below - 1
            title = room * spec["title_share"]
            _stack(sheet, [(texts.title, bold, spec["title_size"], "accent")], smallest, left, below + 1,
                   right_width, title, align="left", middle=False)
            step_top, step = below + 2.5 + title, spec["step_picture"]
            for index, name in enumerate(PICTOGRAMS):
                sheet.picture(name, left, step_top, step)
                sheet.badge(index + 1, left + step * 0.12, step_top + step * 0.14, step * 0.14)
                _stack(sheet, [(texts.steps[index], sheet.fonts.regular, spec["step_size"], "ink")], smallest,
                       left + step + 1, step_top, right_width - step - 1, step, align="left")
                step_top += step + 0.4
            _stack(sheet, [(texts.promise, bold, spec["promise_size"], "accent")], smallest, left, step_top,
                   right_width, top + height - step_top, align="left")
    _cut_guides(sheet, columns, rows, card_width, card_height)


def _cut_guides(sheet: _Sheet, columns: int, rows: int, card_width: float, card_height: float) -> None:
    c = sheet.c
    c.setStrokeColor(_color("cut"))
    c.setLineWidth(0.2)
    c.setDash([1.5, 1.5])
    c.lines([(col * card_width, 0, col * card_width, sheet.height) for col in range(1, columns)]
            + [(0, row * card_height, _A4_WIDTH, row * card_height) for row in range(1, rows)])
    c.setDash([])


# Files ---------------------------------------------------------------------------------------------------


def render(settings: Settings, post: Post, choice: Choice, font: Path | None = None) -> bytes:
    """The PDF for `post`: one page, vector code, embedded font subsets, text from the catalogs."""
    fonts = find_fonts(font)
    languages = ("vi", "hmn") if choice.lang == "both" else (choice.lang,)
    texts = tuple(Texts.load(language, settings.locales_dir) for language in languages)
    content = _Content(unicodedata.normalize("NFC", post.name), texts, form_url(settings, post),
                       address(settings, post))
    fonts.check([content.name, content.address, *(text for t in texts for text in t.all())])
    paper = SIZES[choice.size]
    buffer = io.BytesIO()
    with _LOCK:
        canvas = Canvas(buffer, pagesize=paper, invariant=1, pageCompression=1, initialFontName=fonts.regular,
                        lang=languages[0])
        canvas.setTitle(f"{texts[0].title} · {content.name}")
        canvas.setCreator("tipbox")
        canvas.setSubject(content.url)
        sheet = _Sheet(canvas, fonts, paper)
        if choice.layout == "cards":
            _cards(sheet, _layout()["cards"], content)
        else:
            _poster(sheet, _layout()["poster-both" if choice.lang == "both" else "poster"], content)
        canvas.showPage()
        canvas.save()
    return buffer.getvalue()


@lru_cache(maxsize=64)
def render_cached(settings: Settings, post: Post, choice: Choice) -> bytes:
    """`render` for the web route: the same few files are asked for again and again, and each costs ~0.1 s."""
    return render(settings, post, choice)


def preview(pdf: Path, png: Path, dpi: int = 100) -> None:
    """Render the PDF's page to `png` with pdftoppm (Debian's poppler-utils)."""
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        raise PosterError("--png needs pdftoppm: apt-get install poppler-utils")
    command = [pdftoppm, "-png", "-r", str(dpi), "-singlefile", str(pdf), str(png.with_suffix(""))]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    if result.returncode != 0:
        raise PosterError(f"pdftoppm could not render {pdf}: {result.stderr.strip() or result.returncode}")


def make(settings: Settings, *, slug: str | None = None, every: bool = False, lang: str | None = None,
         size: str | None = None, layout: str | None = None, out: Path | None = None, png: bool = False,
         font: Path | None = None) -> list[Path]:
    """Write the PDF (and with `png` a preview) for one post or `every` post; returns the files written."""
    posts = settings.load_posts()
    if every:
        targets = list(posts.values())
    elif slug is not None:
        if slug.lower() not in posts:
            raise PosterError(f"unknown post {slug!r}; configured posts: {', '.join(posts)}")
        targets = [posts[slug.lower()]]
    else:
        targets = [next(iter(posts.values()))]
    written: list[Path] = []
    for post in targets:
        try:
            choice = Choice.parse(post, lang, size, layout)
        except ValueError as exc:
            raise PosterError(str(exc)) from None
        if every or (out is not None and out.is_dir()):
            path = (out or Path()) / choice.filename(post)
        else:
            path = out or Path(choice.filename(post))
        data = render(settings, post, choice, font)
        try:
            if every and out is not None:
                out.mkdir(exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            raise PosterError(f"cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
        if png:
            preview(path, path.with_suffix(".png"))
            written.append(path.with_suffix(".png"))
    return written
