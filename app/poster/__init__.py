"""Print-ready posters and pocket cards: a post's QR codes, its title and three steps, in Vietnamese and Hmong.

One code per language, each leading to the form in its language (`/P/{SLUG}/{LANG}`), so a Hmong poster opens the
Hmong form on a phone set to Vietnamese. The PDF is drawn with reportlab: codes as filled rectangles (sharp at any
size), text in an embedded TrueType font whose coverage of every string is checked before anything is drawn.

- `choices`: what to print (language, paper, layout) and the address each code encodes;
- `text`: the words from the catalogs, the font, text fitted into a box;
- `drawing`: the sheet in millimetres, QR codes, pictograms;
- `layout`: where each block goes (`poster/layout.toml`).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path

from reportlab.pdfgen.canvas import Canvas

from app.poster.choices import LANGUAGES, LAYOUTS, SIZES, Choice, PosterError, address, form_url
from app.poster.drawing import PICTOGRAMS, QUIET_ZONE, Sheet, pictogram, qr_matrix
from app.poster.layout import Content, Side, draw, spec
from app.poster.text import PROMISE, STEPS, TITLE, TYPE_ADDRESS, Texts, find_fonts
from app.settings import Post, Settings

__all__ = [
    "LANGUAGES", "LAYOUTS", "PICTOGRAMS", "PROMISE", "QUIET_ZONE", "SIZES", "STEPS", "TITLE", "TYPE_ADDRESS", "Choice",
    "PosterError", "address", "form_url", "make", "pictogram", "preview", "qr_matrix", "render", "render_cached",
]  # fmt: skip

# reportlab keeps per-document font state on shared font objects: one drawing at a time.
_LOCK = threading.Lock()


def render(settings: Settings, post: Post, choice: Choice, font: Path | None = None) -> bytes:
    """The PDF for `post`: one page, vector codes, embedded font subsets, text from the catalogs."""
    fonts = find_fonts(font)
    sides = tuple(
        Side(Texts.load(lang, settings.locales_dir), form_url(settings, post, lang), address(settings, post, lang))
        for lang in choice.languages
    )
    content = Content(unicodedata.normalize("NFC", post.name), sides)
    fonts.check([content.name, *(text for side in sides for text in (side.address, *side.texts.all()))])
    paper = SIZES[choice.size]
    buffer = io.BytesIO()
    with _LOCK:
        canvas = Canvas(buffer, pagesize=paper, invariant=1, pageCompression=1, initialFontName=fonts.regular,
                        lang=choice.languages[0])
        canvas.setTitle(f"{sides[0].texts.title} · {content.name}")
        canvas.setCreator("tipbox")
        canvas.setSubject(" ".join(side.url for side in sides))
        draw(Sheet(canvas, fonts, paper, spec()["colors"]), choice.layout, content)
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
