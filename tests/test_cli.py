"""app/cli.py: what `tipbox serve` sets up for the process before it serves (the rest: tests/test_serve.py), and the
`tipbox` command as an operator runs it: one line per problem, a non-zero exit status, pages for the proxy."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest

from tests.helpers import SECRET, hidden_fields, wait_until_responds
from tests.mailsink import USERNAME, Sink, free_port

pytestmark = pytest.mark.e2e

UPLOADS, UPLOAD_BYTES, BURSTS = 20, 15_000_000, 3
TIPBOX = str(Path(sys.executable).parent / "tipbox")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """`tipbox serve` as a real process: its URL and process id."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIPBOX_", "MALLOC_"))}
    env.update(TIPBOX_DEV_MAILBOX=str(tmp_path / "mailbox"), TIPBOX_MIN_FILL_SECONDS="0")
    command = [str(Path(sys.executable).parent / "tipbox"), "serve", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_responds(url, process)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_after_a_burst_of_uploads_tipbox_serve_gives_the_memory_back(serve: tuple[str, int]) -> None:
    # Large request bodies are held in memory while they are read (never on disk). glibc would keep their freed
    # buffers in its heap for good once the first was freed (its mmap threshold grows): `tipbox serve` fixes the
    # threshold as the process starts, so the process shrinks back once the burst is over.
    url, pid = serve
    with httpx2.Client(timeout=120) as client:
        fields = hidden_fields(client.get(url + "/").text)

        def upload(number: int, size: int = UPLOAD_BYTES) -> int:
            junk = bytes([number]) * size  # refused as "not a photo" without decoding: memory, not CPU
            data = {**fields, "category": "other", "what": f"burst {number}"}
            return client.post(url + "/", data=data, files={"photo": ("a.jpg", junk, "image/jpeg")}).status_code

        assert upload(0, 100_000) == 422  # every page and path the burst takes, warmed up
        idle = _rss_mb(pid)
        statuses = []
        for _ in range(BURSTS):
            with ThreadPoolExecutor(UPLOADS) as pool:
                statuses += pool.map(upload, range(UPLOADS))
    assert set(statuses) <= {422, 503} and 422 in statuses  # refused, or "busy": each answered with the form
    after = _rss_mb(pid)
    assert after < idle + 8, f"idle {idle:.0f} MB, {after:.0f} MB after {BURSTS} x {UPLOADS} uploads of 15 MB"


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
    assert "proxy wait for tipbox (Caddy read_timeout): 39900s" in done.stdout


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


def test_a_bad_setting_ends_serve_with_one_line_and_status_2(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    """Status 2 is what the systemd unit does not restart on (RestartPreventExitStatus=2): never a traceback."""
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    login = Sink("starttls", server_tls, auth=True).start()
    wrong_password = {
        **_production(login), "SMTP_SECURITY": "starttls", "SMTP_CA_FILE": str(ca_file),
        "SMTP_USERNAME": USERNAME, "SMTP_PASSWORD": "not the password",
    }
    cases = [
        ([], {"PORT": "eighty"}, "TIPBOX_PORT: 'eighty' is not a port number"),
        ([], {"SMTP_PORT": "abc"}, "TIPBOX_SMTP_PORT: "),
        (["--host", "no-such-host.invalid"], {}, "--host (TIPBOX_HOST): 'no-such-host.invalid' is not an address"),
        ([], {"DEV_MAILBOX": str(tmp_path / "a-file" / "mailbox")}, "TIPBOX_DEV_MAILBOX: cannot make the folder"),
        ([], {"METRICS_ADDRESS": f"127.0.0.1:{held.getsockname()[1]}"}, "TIPBOX_METRICS_ADDRESS: cannot listen on"),
        ([], wrong_password, f"TIPBOX_SMTP_USERNAME: 127.0.0.1:{login.port} (starttls) refused the login of"),
    ]
    try:
        for options, settings, problem in cases:
            port = [] if "PORT" in settings else ["--port", str(free_port())]  # --port wins over TIPBOX_PORT
            done = subprocess.run([TIPBOX, "serve", *port, *options], env=_env(**settings),
                                  capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
            lines = (done.stdout + done.stderr).strip().splitlines()
            assert done.returncode == 2, (settings, done.returncode, lines)
            assert len(lines) == 1 and lines[0].startswith(f"tipbox: configuration error: {problem}"), lines
            assert "not the password" not in lines[0]
    finally:
        held.close()
        login.stop()


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


def test_answer_reads_the_settings_file_postfix_pipe_does_not_pass(sink: Sink, tmp_path: Path) -> None:
    """Postfix's pipe(8) runs `tipbox answer` with an empty environment: --env-file gives it the service's settings
    (comments and quotes as in /etc/tipbox/tipbox.env), and a variable that is set wins over the file."""
    import asyncio

    from app.answers import keys
    from app.answers.bound import DerivationBound
    from app.answers.lookup import answers_for
    from app.answers.store import SqliteStore
    from tests import replies

    text = "Dạ, cảm ơn bà con. Chúng tôi sẽ đến xem sáng mai."
    env_file = tmp_path / "tipbox.env"
    env_file.write_text(
        "# tipbox's settings, as the service reads them\n\n"
        f"TIPBOX_SMTP_HOST=127.0.0.1\nTIPBOX_SMTP_PORT={sink.port}\nTIPBOX_SMTP_SECURITY=none\n"
        f'TIPBOX_MAIL_FROM="{replies.TIPBOX}"\nTIPBOX_MAILBOX={replies.OFFICER}\nTIPBOX_POST_SLUG=ncs\n'
        f"TIPBOX_SECRET_KEY='{replies.SECRET.decode()}'\nTIPBOX_REPLY_TO=answers@post.test\n"
        f"TIPBOX_ANSWERS_STORE=sqlite:///{tmp_path / 'from-the-file.sqlite3'}\n",
        encoding="utf-8",
    )
    store = tmp_path / "from-the-environment.sqlite3"
    raw = replies.gmail(replies.tip(keys.derive(replies.CODE, replies.SECRET).public), text)
    command = [TIPBOX, "answer", "--env-file", str(env_file)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TIPBOX_ANSWERS_STORE": f"sqlite:///{store}"}
    done = subprocess.run(command, input=raw, env=env, cwd=tmp_path, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()

    found = asyncio.run(answers_for(replies.CODE, DerivationBound(replies.SECRET), SqliteStore(store, days=90)))
    assert [answer.text for answer in found] == [text]  # what the resident reads with their code
    assert not (tmp_path / "from-the-file.sqlite3").exists()
    assert [message["To"] for message in sink.handler.parsed()] == [replies.OFFICER]  # confirmed by the file's SMTP

    # Without the file the command has no settings (a development run with a random key, which matches no tip):
    # the MTA keeps the message (75) rather than have it dropped for good.
    bare = subprocess.run([TIPBOX, "answer"], input=raw, env={"PATH": env["PATH"]}, cwd=tmp_path,
                          capture_output=True, timeout=60, check=False)
    assert bare.returncode == 75 and b"--env-file" in bare.stderr
    missing = subprocess.run([*command[:2], "--env-file", str(tmp_path / "nowhere.env")], input=raw, env=env,
                             cwd=tmp_path, capture_output=True, timeout=60, check=False)
    assert missing.returncode == 75 and b"--env-file" in missing.stderr
