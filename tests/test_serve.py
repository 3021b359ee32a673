"""End to end: `tipbox serve` as a real uvicorn process, with the embedded dev mailbox."""

from __future__ import annotations

import email
import email.policy
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.helpers import hidden_fields, wait_until_responds
from tests.mailsink import free_port

pytestmark = pytest.mark.e2e

HOST = "127.0.0.2"  # a loopback address of its own, so the client's (127.0.0.3) is distinctive
CLIENT = "127.0.0.3"
SECRET_UA = "Mozilla/5.0 (Linux; Android 8.1; Distinctive-Phone-X9) Zalo android/99887766"


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int, mailbox: Path, log: Path) -> None:
        self.process, self.port, self.mailbox, self.log = process, port, mailbox, log
        self.url = f"http://{HOST}:{port}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    log = root / "tipbox.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
    env.update(TIPBOX_DEV_MAILBOX=str(root / "mailbox"), TIPBOX_MIN_FILL_SECONDS="0", TIPBOX_MAX_UPLOAD_BYTES="2000")
    tipbox = Path(sys.executable).parent / "tipbox"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(tipbox), "serve", "--host", HOST, "--port", str(port), "--log-level", "debug"],
            env=env, cwd=root, stdout=sink, stderr=subprocess.STDOUT,
        )
        try:
            wait_until_responds(f"http://{HOST}:{port}", process)
            yield Served(process, port, root / "mailbox", log)
        finally:
            process.terminate()
            process.wait(timeout=10)


def _client() -> httpx2.Client:
    transport = httpx2.HTTPTransport(local_address=CLIENT)
    return httpx2.Client(transport=transport, headers={"User-Agent": SECRET_UA, "X-Forwarded-For": "192.0.2.99"})


def test_a_tip_lands_in_the_dev_mailbox(served: Served) -> None:
    with _client() as client:
        form = client.get(served.url + "/")
        assert form.status_code == 200
        assert "server" not in form.headers  # uvicorn's Server header is off
        assert "set-cookie" not in form.headers
        assert "Development run" in form.text or "Bản chạy thử" in form.text
        data = {**hidden_fields(form.text), "category": "weapons", "what": "Có người giấu súng kíp trong nương ngô"}
        sent = client.post(served.url + "/", data=data)
        # A websocket handshake: uvicorn would log "<address>:<port> - WebSocket /" before any middleware runs.
        upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        assert client.get(served.url + "/?ws=1", headers=upgrade).status_code != 101
    assert sent.status_code == 200, sent.text
    files = sorted(served.mailbox.glob("*.eml"))
    assert len(files) == 1
    raw = files[0].read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    plain = message.get_body(("plain",))  # type: ignore[attr-defined]
    assert plain is not None and "giấu súng kíp" in plain.get_content()
    # Nothing about the sender: not the address, not the phone, not the proxy header.
    log = served.log.read_text(errors="replace")
    for marker in (CLIENT, "Distinctive-Phone-X9", "99887766", "192.0.2.99"):
        assert marker.encode() not in raw
        assert marker not in log
    assert files[0].name in log  # the log names the stored file


def test_a_body_over_the_limit_is_answered_before_it_ends(served: Served) -> None:
    """Chunked upload with no Content-Length: uvicorn must answer 413 while the client is still sending."""
    sent = 0
    with socket.create_connection((HOST, served.port), timeout=5, source_address=(CLIENT, 0)) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (8192, b"x" * 8192)
        answer = b""
        sock.settimeout(0.05)
        for _ in range(2000):  # up to 16 MB, far over the 66 KB limit
            try:
                sock.sendall(chunk)
                sent += 8192
            except OSError:
                break
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            if b"\r\n\r\n" in answer:
                break
        sock.settimeout(5)
        while b"</html>" not in answer:
            try:
                more = sock.recv(65536)
            except OSError:
                break
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 413")
    assert sent < 2000 * 8192
    assert "Gửi quá nhiều".encode() in answer
