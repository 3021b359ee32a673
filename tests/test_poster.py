"""Posters end to end: every code on every sheet followed to the form in the language printed beside it; the
`tipbox poster` command and the poster's web address."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from app import cli, poster
from app.main import create_app
from app.poster import text
from app.settings import Settings
from tests import printed
from tests.helpers import post_tip, require
from tests.mailsink import Sink

PUBLIC_URL = "https://tip.example.vn"
TITLE_VI = "Hòm thư tố giác trực tuyến — không cần ghi tên"
TITLE_HMN = "Thawv xa xov hauv xov tooj — tsis tas sau npe"
POSTS = """
[posts.ncs]
name = "Đồn Biên phòng Na Cô Sa"
mailbox = "nacosa@example.vn"

[posts.ma-lu-thang]
name = "Đồn Biên phòng cửa khẩu quốc tế Ma Lù Thàng"
mailbox = "malu@example.vn"
"""
PHONES = ("vi-VN,vi;q=0.9,en;q=0.5", "hmn", "en-US,en;q=0.9")  # nearly every phone says Vietnamese


@pytest.fixture
def posts_file(tmp_path: Path) -> Path:
    path = tmp_path / "posts.toml"
    path.write_text(POSTS, encoding="utf-8")
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, posts_file: Path) -> None:
    """The environment `tipbox poster` reads its settings from (development mode, two posts)."""
    monkeypatch.setenv("TIPBOX_POSTS_FILE", str(posts_file))
    monkeypatch.setenv("TIPBOX_PUBLIC_URL", PUBLIC_URL)


@pytest.mark.parametrize(
    ("lang", "layout"), [("hmn", "poster"), ("vi", "poster"), ("both", "poster"), ("both", "cards")]
)
def test_every_code_opens_the_form_in_the_language_printed_beside_it(
    sink: Sink, make_settings: Callable[..., Settings], posts_file: Path, tmp_path: Path, lang: str, layout: str
) -> None:
    settings = make_settings(sink, public_url=PUBLIC_URL, posts_file=posts_file)
    pdf = poster.render(settings, settings.load_posts()["ma-lu-thang"], poster.Choice(lang, "A4", layout))
    codes, _ = printed.codes(pdf, tmp_path)
    assert len(codes) == {"poster": 2 if lang == "both" else 1, "cards": 8}[layout]
    words = {language: "\n".join(text.Texts.load(language, None).all()) for language in ("vi", "hmn")}
    with TestClient(create_app(settings), base_url="https://TIP.EXAMPLE.VN") as client:
        for code in codes:
            beside = printed.language_beside(code, pdf, words)
            for phone in PHONES:
                response = client.get(code.text, headers={"Accept-Language": phone})
                assert response.status_code == 200, code.text
                assert response.headers["content-language"] == beside, (code.text, phone)
                assert '<html lang="' + beside + '"' in response.text
                assert "Ma Lù Thàng" in response.text
        # The form the code opened sends to the post, in the code's language.
        sent = post_tip(client, codes[-1].text, category="drugs", what="Có người bán ma túy ở chợ")
    assert sent.status_code == 200
    assert sink.handler.envelopes[-1][1] == ["malu@example.vn"]


def test_the_service_serves_the_poster(make_settings: Callable[..., Settings], posts_file: Path) -> None:
    settings = make_settings(public_url=PUBLIC_URL, posts_file=posts_file)
    with TestClient(create_app(settings)) as client:
        response = client.get("/p/ncs/poster.pdf")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-disposition"] == 'attachment; filename="tipbox-poster-ncs-both-A4.pdf"'
        content = printed.text_of(response.content)
        assert TITLE_VI in content and TITLE_HMN in content
        cards = client.get("/p/NCS/poster.pdf?lang=hmn&size=a5&layout=cards")
        assert cards.status_code == 200
        assert TITLE_HMN in printed.text_of(cards.content) and TITLE_VI not in printed.text_of(cards.content)
        assert client.get("/p/ncs/poster.pdf?size=B5").status_code == 400
        assert client.get("/p/ncs/poster.pdf?lang=fr").status_code == 400
        assert client.get("/p/nope/poster.pdf").status_code == 404


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


def test_the_command_writes_a_pdf_and_a_preview(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require("pdftoppm", "poppler-utils")
    out = tmp_path / "cards.pdf"
    assert cli.main(["poster", "--post", "NCS", "--layout", "cards", "--size", "a4", "--out", str(out), "--png"]) == 0
    assert capsys.readouterr().out.split() == [str(out), str(out.with_suffix(".png"))]
    assert TITLE_VI in printed.text_of(out.read_bytes())
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
    monkeypatch.setattr(text, "_PACKAGED_FONTS", ("No Such Family",))
    monkeypatch.setattr(text, "_SYSTEM_FONTS", ((Path("/nonexistent/a.ttf"), Path("/nonexistent/b.ttf")),))
    line = error_line(["poster"], capsys)
    assert "no font for Vietnamese and Hmong found" in line and "pip install fontpkg-be-vietnam-pro" in line


def test_a_font_without_vietnamese_letters_is_refused_before_anything_is_written(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import reportlab

    vera = Path(reportlab.__file__).parent / "fonts" / "Vera.ttf"  # Bitstream Vera: Latin-1 only
    out = tmp_path / "poster.pdf"
    line = error_line(["poster", "--lang", "vi", "--font", str(vera), "--out", str(out)], capsys)
    assert "Vera.ttf has no letter" in line and "pip install fontpkg-be-vietnam-pro" in line
    assert not out.exists()


def test_the_installed_command_fails_with_one_line(env: None) -> None:
    tipbox = Path(sys.executable).parent / "tipbox"
    if not tipbox.exists():
        pytest.skip("the tipbox command is not installed in this environment")
    result = subprocess.run([tipbox, "poster", "--post", "nope"], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["tipbox: poster: unknown post 'nope'; configured posts: ncs, ma-lu-thang"]
