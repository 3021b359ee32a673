"""The `tipbox` command as an operator runs it: one line per problem, a non-zero exit status, pages for the proxy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SECRET, wait_until_responds
from tests.mailsink import Sink, free_port

TIPBOX = str(Path(sys.executable).parent / "tipbox")


def _env(**settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("TIPBOX_")}
    env.update({f"TIPBOX_{name}": value for name, value in settings.items()})
    return env


def _production(sink: Sink) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port), "SMTP_SECURITY": "none",
        "MAIL_FROM": "tipbox@example.vn", "MAILBOX": "post@example.vn", "SECRET_KEY": SECRET,
        "PUBLIC_URL": "https://tip.example.vn",
    }


def test_check_lists_the_posts_and_the_kits_figures(sink: Sink, tmp_path: Path) -> None:
    done = subprocess.run([TIPBOX, "check"], env=_env(**_production(sink)), capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert f"configuration OK: SMTP 127.0.0.1:{sink.port} (none)" in done.stdout
    assert "post@example.vn" in done.stdout
    assert "proxy body limit (nginx client_max_body_size, Caddy request_body max_size): 80262144 bytes" in done.stdout
    assert "Postfix message_size_limit: 28000000" in done.stdout
    assert "memory (systemd MemoryMax, Compose mem_limit): 600M" in done.stdout


def test_a_bad_log_level_is_one_line(tmp_path: Path) -> None:
    for command, env, given in (
        (["serve", "--log-level", "loud"], _env(), "loud"), (["serve"], _env(LOG_LEVEL="LOUD"), "LOUD")
    ):
        done = subprocess.run([TIPBOX, *command], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              check=False)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            f"tipbox: configuration error: --log-level (TIPBOX_LOG_LEVEL): {given!r}"
            " is not one of critical, error, warning, info, debug"
        ]


def test_serve_starts_when_the_mail_server_is_not_up_yet_and_says_so(tmp_path: Path) -> None:
    """Postfix may start after tipbox: a warning, not a refusal (tips wait for it with "not sent yet")."""
    closed = Sink()  # a port nothing listens on once the sink is gone
    closed.start()
    closed.stop()
    port = free_port()
    log = tmp_path / "tipbox.log"
    with log.open("wb") as output:
        process = subprocess.Popen([TIPBOX, "serve", "--port", str(port)], env=_env(**_production(closed)),
                                   cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until_responds(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        process.wait(timeout=10)
    warnings = [line for line in log.read_text().splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and f"127.0.0.1:{closed.port} cannot be reached yet" in warnings[0], warnings


def test_proxy_pages_speak_every_language_and_no_english(tmp_path: Path) -> None:
    done = subprocess.run([TIPBOX, "proxy-pages", str(tmp_path / "pages")], env=_env(), capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, check=True)
    too_large, unavailable = (tmp_path / "pages" / "too-large.html"), (tmp_path / "pages" / "unavailable.html")
    assert done.stdout.split() == [str(too_large), str(unavailable)]
    pages = {path.name: path.read_text(encoding="utf-8") for path in (too_large, unavailable)}
    assert "Gửi quá nhiều" in pages["too-large.html"] and "Xa ntau dhau" in pages["too-large.html"]
    assert "Hòm thư tạm thời chưa trả lời được" in pages["unavailable.html"]
    assert "Lub thawv xa xov tam sim no teb tsis tau" in pages["unavailable.html"]
    for html in pages.values():
        assert '<section lang="vi">' in html and '<section lang="hmn">' in html
        assert "Too much" not in html and "cannot answer" not in html  # the English msgids stay keys
        assert "http" not in html.replace("http-equiv", "")  # nothing fetched from anywhere
        assert oct((tmp_path / "pages" / "too-large.html").stat().st_mode & 0o777) == "0o644"
