"""Posters and pocket cards: valid PDFs whose text layer, QR code and size are read back as a printer would."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import reportlab
import zxingcpp
from PIL import Image
from pypdf import PdfReader
from starlette.testclient import TestClient

from app import cli, poster
from app.main import create_app
from app.settings import Post, Settings
from tests.helpers import post_tip, require
from tests.mailsink import Sink

PUBLIC_URL = "https://tip.example.vn"
TITLE_VI = "Hòm thư điện tử ẩn danh tố giác tội phạm và xuất, nhập cảnh trái phép"
TITLE_HMN = "Thawv xa xov zais npe qhia txog kev ua txhaum cai thiab kev tawm, nkag ciam teb tsis raug cai"
POSTS = """
[posts.ncs]
name = "Đồn Biên phòng Na Cô Sa"
mailbox = "nacosa@example.vn"

[posts.ma-lu-thang]
name = "Đồn Biên phòng cửa khẩu quốc tế Ma Lù Thàng"
mailbox = "malu@example.vn"
"""
DPI = 150
MM_PER_POINT = 25.4 / 72
PAPER_MM = {"A4": (210, 297), "A3": (297, 420), "A5": (148, 210)}


@pytest.fixture
def posts_file(tmp_path: Path) -> Path:
    path = tmp_path / "posts.toml"
    path.write_text(POSTS, encoding="utf-8")
    return path


@pytest.fixture
def settings(make_settings: Callable[..., Settings], posts_file: Path) -> Settings:
    return make_settings(public_url=PUBLIC_URL, posts_file=posts_file)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, posts_file: Path) -> None:
    """The environment `tipbox poster` reads its settings from (development mode, two posts)."""
    monkeypatch.setenv("TIPBOX_POSTS_FILE", str(posts_file))
    monkeypatch.setenv("TIPBOX_PUBLIC_URL", PUBLIC_URL)


def text_of(pdf: bytes) -> str:
    """The page's text layer with every run of whitespace (line breaks of wrapped titles too) made one space."""
    return " ".join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())


def decode(pdf: bytes, tmp_path: Path) -> tuple[list[zxingcpp.Barcode], Image.Image]:
    """Render the page with pdftoppm at `DPI` and read every QR code on it with zxing-cpp."""
    pdftoppm = require("pdftoppm", "poppler-utils")
    source = tmp_path / "page.pdf"
    source.write_bytes(pdf)
    subprocess.run([pdftoppm, "-png", "-r", str(DPI), "-singlefile", source, tmp_path / "page"], check=True)
    image = Image.open(tmp_path / "page.png").convert("L")
    return zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode), image


def assert_quiet_zone(image: Image.Image, code: zxingcpp.Barcode, modules: int) -> None:
    """Four modules of white on every side of the symbol, in the rendering itself."""
    top_left, bottom_right = code.position.top_left, code.position.bottom_right
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


def test_the_code_spells_the_url_in_capitals_when_it_can(settings: Settings) -> None:
    post = settings.load_posts()["ncs"]
    url = poster.form_url(settings, post)
    assert url == "HTTPS://TIP.EXAMPLE.VN/P/NCS"
    # Alphanumeric mode needs a smaller code than the same URL in small letters (byte mode): 25 modules, not 29.
    assert len(poster.qr_matrix(url)) < len(poster.qr_matrix(url.lower()))
    assert poster.address(settings, post) == "tip.example.vn/p/ncs"


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("https://tip.example.vn/tipbox", "https://tip.example.vn/tipbox/p/ncs"),  # a proxy's prefix keeps its case
        ("https://tip_box.example.vn", "https://tip_box.example.vn/p/ncs"),  # "_" is not alphanumeric in QR
        ("http://127.0.0.1:8000", "HTTP://127.0.0.1:8000/P/NCS"),
    ],
)
def test_the_code_keeps_small_letters_otherwise(
    make_settings: Callable[..., Settings], posts_file: Path, public_url: str, expected: str
) -> None:
    settings = make_settings(public_url=public_url, posts_file=posts_file)
    assert poster.form_url(settings, settings.load_posts()["ncs"]) == expected


def test_the_code_has_error_correction_q_and_a_quiet_zone() -> None:
    matrix = poster.qr_matrix("HTTPS://TIP.EXAMPLE.VN/P/NCS")
    border = [row[:4] + row[-4:] for row in matrix] + matrix[:4] + matrix[-4:]
    assert not any(any(row) for row in border)
    assert matrix[4][4]  # the first finder pattern starts right after the quiet zone


@pytest.mark.parametrize("size", ["A4", "A3", "A5"])
@pytest.mark.parametrize("layout", ["poster", "cards"])
def test_every_layout_and_size_prints_the_title_and_a_code_that_scans(
    settings: Settings, tmp_path: Path, layout: str, size: str
) -> None:
    post = settings.load_posts()["ncs"]
    pdf = poster.render(settings, post, poster.Choice("both", size, layout))

    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    paper = (float(box.width) * MM_PER_POINT, float(box.height) * MM_PER_POINT)
    assert paper == pytest.approx(PAPER_MM[size], abs=0.5)
    fonts = embedded_fonts(pdf)
    assert fonts, "no font on the page"
    assert all(fonts.values()), f"fonts not embedded: {fonts}"

    text = text_of(pdf)
    copies = 1 if layout == "poster" else 4  # cards on `both`: a column of Vietnamese, a column of Hmong
    assert text.count(TITLE_VI) == copies
    assert text.count(TITLE_HMN) == copies
    assert "tip.example.vn/p/ncs" in text

    codes, image = decode(pdf, tmp_path)
    assert len(codes) == (1 if layout == "poster" else 8)
    modules = len(poster.qr_matrix(poster.form_url(settings, post))) - 2 * poster.QUIET_ZONE
    for code in codes:
        assert code.text == poster.form_url(settings, post) == "HTTPS://TIP.EXAMPLE.VN/P/NCS"
        assert code.text.lower() == f"{PUBLIC_URL}/p/ncs"
        assert code.ec_level == "Q"
        assert_quiet_zone(image, code, modules)
    if layout == "poster" and size == "A4":
        (code,) = codes
        width_mm = (code.position.top_right.x - code.position.top_left.x) / DPI * 25.4
        assert width_mm >= 60, f"the code is {width_mm:.1f} mm wide on A4"


@pytest.mark.parametrize(("lang", "title", "other"), [("vi", TITLE_VI, TITLE_HMN), ("hmn", TITLE_HMN, TITLE_VI)])
@pytest.mark.parametrize("layout", ["poster", "cards"])
def test_one_language(settings: Settings, lang: str, title: str, other: str, layout: str) -> None:
    pdf = poster.render(settings, settings.load_posts()["ncs"], poster.Choice(lang, "A4", layout))
    text = text_of(pdf)
    assert text.count(title) == (1 if layout == "poster" else 8)
    assert other not in text
    assert "Đồn Biên phòng Na Cô Sa" in text


def test_the_code_is_at_least_6_cm_wide_on_a4_in_one_language(settings: Settings, tmp_path: Path) -> None:
    pdf = poster.render(settings, settings.load_posts()["ma-lu-thang"], poster.Choice("vi", "A4", "poster"))
    (code,), _ = decode(pdf, tmp_path)
    assert code.text == "HTTPS://TIP.EXAMPLE.VN/P/MA-LU-THANG"
    assert (code.position.top_right.x - code.position.top_left.x) / DPI * 25.4 >= 60


def test_an_operators_catalog_changes_the_poster(
    make_settings: Callable[..., Settings], posts_file: Path, tmp_path: Path
) -> None:
    overrides = tmp_path / "locales"
    overrides.mkdir()
    (overrides / "vi.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        f'msgid "{poster.TITLE}"\nmsgstr "Hòm thư tố giác của đồn"\n\n'
        f'msgid "{poster.STEPS[2]}"\nmsgstr "Ấn nút Gửi"\n',
        encoding="utf-8",
    )
    settings = make_settings(public_url=PUBLIC_URL, posts_file=posts_file, locales_dir=overrides)
    text = text_of(poster.render(settings, settings.load_posts()["ncs"], poster.Choice("vi", "A4", "poster")))
    assert "Hòm thư tố giác của đồn" in text
    assert "Ấn nút Gửi" in text
    assert TITLE_VI not in text


def test_the_uppercase_address_reaches_the_same_form(
    sink: Sink, make_settings: Callable[..., Settings], posts_file: Path
) -> None:
    settings = make_settings(sink, public_url=PUBLIC_URL, posts_file=posts_file)
    with TestClient(create_app(settings), base_url="https://TIP.EXAMPLE.VN") as client:
        upper, lower = client.get("/P/NCS?lang=vi"), client.get("/p/ncs?lang=vi")
        assert upper.status_code == lower.status_code == 200
        assert "Đồn Biên phòng Na Cô Sa" in upper.text
        assert 'action="/p/ncs?lang=vi"' in upper.text
        assert client.get("/P/NOPE").status_code == 404
        sent = post_tip(client, "/P/NCS?lang=vi", category="drugs", what="Có người bán ma túy ở chợ")
    assert sent.status_code == 200
    assert sink.handler.envelopes[-1][1] == ["nacosa@example.vn"]


def test_the_service_serves_the_poster(
    make_settings: Callable[..., Settings], posts_file: Path
) -> None:
    settings = make_settings(public_url=PUBLIC_URL, posts_file=posts_file)
    with TestClient(create_app(settings)) as client:
        response = client.get("/p/ncs/poster.pdf")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-disposition"] == 'attachment; filename="tipbox-poster-ncs-both-A4.pdf"'
        assert TITLE_VI in text_of(response.content)
        cards = client.get("/p/NCS/poster.pdf?lang=hmn&size=a5&layout=cards")
        assert cards.status_code == 200
        assert TITLE_HMN in text_of(cards.content)
        assert client.get("/p/ncs/poster.pdf?size=B5").status_code == 400
        assert client.get("/p/ncs/poster.pdf?lang=fr").status_code == 400
        assert client.get("/p/nope/poster.pdf").status_code == 404


def test_the_command_writes_a_pdf_and_a_preview(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require("pdftoppm", "poppler-utils")
    out = tmp_path / "cards.pdf"
    assert cli.main(["poster", "--post", "NCS", "--layout", "cards", "--size", "a4", "--out", str(out), "--png"]) == 0
    assert capsys.readouterr().out.split() == [str(out), str(out.with_suffix(".png"))]
    assert TITLE_VI in text_of(out.read_bytes())
    with Image.open(out.with_suffix(".png")) as preview:
        assert preview.format == "PNG"
        assert preview.width < preview.height  # A4 portrait


def test_all_writes_one_file_per_post(env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["poster", "--all", "--lang", "vi", "--out", str(tmp_path / "posters")]) == 0
    written = sorted(path.name for path in (tmp_path / "posters").iterdir())
    assert written == ["tipbox-poster-ma-lu-thang-vi-A4.pdf", "tipbox-poster-ncs-vi-A4.pdf"]
    assert len(capsys.readouterr().out.splitlines()) == 2


def error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `tipbox` in-process; it must fail with exactly one line on stderr and nothing on stdout."""
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code != 0
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tipbox: poster: ")
    return lines[0]


def test_unknown_post(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    line = error_line(["poster", "--post", "nope"], capsys)
    assert line == "tipbox: poster: unknown post 'nope'; configured posts: ncs, ma-lu-thang"


def test_unwritable_output(env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    line = error_line(["poster", "--out", str(tmp_path / "a-file" / "poster.pdf")], capsys)
    assert line == f"tipbox: poster: cannot write {tmp_path / 'a-file' / 'poster.pdf'}: Not a directory"
    line = error_line(["poster", "--out", str(tmp_path / "missing" / "poster.pdf")], capsys)
    assert line.endswith(": No such file or directory")


def test_no_font_says_what_to_install(
    env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(poster, "_PACKAGED_FONTS", ("No Such Family",))
    monkeypatch.setattr(poster, "_SYSTEM_FONTS", ((Path("/nonexistent/a.ttf"), Path("/nonexistent/b.ttf")),))
    line = error_line(["poster"], capsys)
    assert "no font for Vietnamese and Hmong found" in line
    assert "pip install fontpkg-be-vietnam-pro" in line
    assert "apt-get install fonts-dejavu-core" in line


def test_a_missing_font_file(env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = error_line(["poster", "--font", str(tmp_path / "missing.ttf")], capsys)
    assert line == f"tipbox: poster: font file {tmp_path / 'missing.ttf'} not found"


def test_a_font_without_vietnamese_letters_is_refused_before_drawing(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vera = Path(reportlab.__file__).parent / "fonts" / "Vera.ttf"  # Bitstream Vera: Latin-1 only
    out = tmp_path / "poster.pdf"
    line = error_line(["poster", "--lang", "vi", "--font", str(vera), "--out", str(out)], capsys)
    assert "Vera.ttf has no letter" in line
    assert "pip install fontpkg-be-vietnam-pro" in line
    assert not out.exists()


def test_text_too_long_for_the_sheet_is_refused(settings: Settings) -> None:
    post = Post("ncs", "Đồn " * 200, "nacosa@example.vn", ("vi", "hmn"))
    with pytest.raises(poster.PosterError, match="does not fit"):
        poster.render(settings, post, poster.Choice("vi", "A4", "cards"))


def test_the_installed_command_fails_with_one_line(env: None) -> None:
    tipbox = Path(sys.executable).parent / "tipbox"
    if not tipbox.exists():
        pytest.skip("the tipbox command is not installed in this environment")
    result = subprocess.run([tipbox, "poster", "--post", "nope"], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["tipbox: poster: unknown post 'nope'; configured posts: ncs, ma-lu-thang"]


@pytest.mark.parametrize("name", poster.PICTOGRAMS)
def test_pictograms_are_drawn_from_supported_shapes(name: str) -> None:
    shapes = poster.pictogram(name)
    assert shapes
    assert {tag for tag, _ in shapes} <= {"rect", "circle", "path"}


def test_a_poster_that_cannot_be_made_is_a_clear_503_not_a_crash(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """An operator's translation with a letter no font has: one clear line for the officer, never a 500."""
    (tmp_path / "vi.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "Press Send"\nmsgstr "Bấm Gửi \U00013000"\n', encoding="utf-8",
    )
    client = TestClient(create_app(make_settings(locales_dir=tmp_path, public_url="https://tip.example.vn")))
    response = client.get("/p/post/poster.pdf?lang=vi")
    assert response.status_code == 503
    assert response.text.startswith("tipbox: poster:")
    assert client.head("/healthz").status_code == 200
