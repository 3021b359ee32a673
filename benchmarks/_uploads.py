"""The service under upload load: `tipbox serve` and a real aiosmtpd sink, each a process of its own, and
`requests` phones that post the form with the same files at the same moment. Figures: what each phone got back,
what reached the sink, and the server's resident memory (peak: VmHWM, reset once the server is warm).
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import _http
import _smtp
from _procfs import memory_mb

LIFTED_RATE = "100000/hour"
BOUNDARY = "----WebKitFormBoundaryTipboxUploads3x"
TIMEOUT = 300.0

File = tuple[str, str, bytes, str]  # input name, the phone's file name, bytes, declared type


@dataclass
class Load:
    """One run: the settings that differ, and what came of it."""

    label: str
    env: dict[str, str]
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: dict[int, list[float]] = field(default_factory=dict)
    delivered: int = 0
    wall_s: float = 0.0
    rss_idle_mb: float = 0.0
    rss_warm_mb: float = 0.0
    peak_mb: float = 0.0
    rss_after_mb: float = 0.0
    email_mb: float = 0.0


def _field(name: str, value: str) -> bytes:
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


def _file(name: str, filename: str, data: bytes, content_type: str) -> list[bytes]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    )
    return [head.encode(), data, b"\r\n"]


def form_body(hidden: dict[str, str], what: str, files: list[File]) -> list[bytes]:
    """The pieces of a multipart body in the form's order; the files' bytes are shared, never copied."""
    pieces = [_field(name, value) for name, value in hidden.items()]
    pieces += [_field(_http.HONEYPOT, ""), _field("category", "smuggling"), _field("what", what)]
    pieces += [_field("where", _http.WHERE), _field("when", _http.WHEN)]
    for file in files:
        pieces += _file(*file)
    if not any(name == "voice" for name, *_ in files):
        pieces += _file("voice", "", b"", "application/octet-stream")
    pieces += [_field("contact", ""), _field("receipt", ""), f"--{BOUNDARY}--\r\n".encode()]
    return pieces


def post(port: int, pieces: list[bytes]) -> tuple[int, float]:
    """POST the form, its body streamed piece by piece; (status, seconds until the whole answer was read)."""
    head = (
        f"POST /?lang=vi HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {sum(len(piece) for piece in pieces)}\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(head)
        for piece in pieces:
            sock.sendall(piece)
        answer = bytearray()
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), time.perf_counter() - started


def run(load: Load, files: list[File], requests: int, warm_up: list[File]) -> Load:
    """Start the sink and the server, warm the server up, send `requests` tips with `files` at once, stop all."""
    context = multiprocessing.get_context("spawn")
    delivered = context.Value("Q", 0)
    with tempfile.TemporaryDirectory(prefix="tipbox-uploads-") as tmp:
        samples = Path(tmp) / "samples"
        samples.mkdir()
        sink_port, port = _http.free_port(), _http.free_port()
        sink = context.Process(target=_smtp.run_sink, args=(sink_port, delivered, str(samples), None), daemon=True)
        sink.start()
        _http.wait_for_port(sink_port, sink.is_alive)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
        env.update(
            TIPBOX_SMTP_HOST="127.0.0.1", TIPBOX_SMTP_PORT=str(sink_port), TIPBOX_SMTP_SECURITY="none",
            TIPBOX_MAIL_FROM="tipbox@bench.invalid", TIPBOX_MAILBOX="post@bench.invalid",
            TIPBOX_SECRET_KEY=secrets.token_urlsafe(32), TIPBOX_MIN_FILL_SECONDS="0",
            TIPBOX_POST_RATE=LIFTED_RATE, TIPBOX_SOURCE_RATE=LIFTED_RATE, **load.env,
        )  # fmt: skip
        tipbox = Path(sys.executable).parent / "tipbox"
        with (Path(tmp) / "tipbox.log").open("wb") as log:
            server = subprocess.Popen(
                [str(tipbox), "serve", "--port", str(port)], env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            _http.wait_until_responds(port, lambda: server.poll() is None)
            load.rss_idle_mb = memory_mb(server.pid)["rss"]
            status, _ = post(port, form_body(_hidden(port), "khởi động", warm_up))
            if status != 200:
                raise RuntimeError(f"the warm-up tip got {status}: {(Path(tmp) / 'tipbox.log').read_text()}")
            load.rss_warm_mb = memory_mb(server.pid)["rss"]
            bodies = [form_body(_hidden(port), f"{_http.WHAT} (thử {n})", files) for n in range(requests)]
            with open(f"/proc/{server.pid}/clear_refs", "w") as handle:
                handle.write("5")  # VmHWM, the peak resident size, starts again from VmRSS
            load = _send_all(load, port, bodies)
            _settle(delivered, 1 + load.statuses[200])
            load.delivered = int(delivered.value) - 1
            memory = memory_mb(server.pid)
            load.peak_mb, load.rss_after_mb = memory["peak"], memory["rss"]
            emails = sorted(samples.glob("sample-*.eml"))
            load.email_mb = emails[-1].stat().st_size / 1e6 if len(emails) > 1 else 0.0
        finally:
            server.terminate()
            server.wait(timeout=30)
            sink.terminate()
            sink.join(timeout=10)
    return load


def _hidden(port: int) -> dict[str, str]:
    page = _http.request(port, "GET", "/?lang=vi", headers=_http.PHONE_HEADERS)
    return _http.hidden_fields(page.body.decode())[0]


def _send_all(load: Load, port: int, bodies: list[list[bytes]]) -> Load:
    start = threading.Barrier(len(bodies))
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def phone(pieces: list[bytes]) -> None:
        start.wait()
        result = post(port, pieces)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=phone, args=(pieces,)) for pieces in bodies]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    load.wall_s = time.perf_counter() - started
    for status, seconds in results:
        load.statuses[status] += 1
        load.seconds.setdefault(status, []).append(seconds)
    return load


def _settle(counter: object, expected: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while getattr(counter, "value", 0) < expected and time.monotonic() < deadline:
        time.sleep(0.05)


def row(load: Load, upload_mb: float) -> str:
    """The load's line of the markdown table."""
    answers = ", ".join(
        f"{count} x {status} ({statistics.median(load.seconds[status]):.1f} s median, "
        f"{max(load.seconds[status]):.1f} s max)"
        for status, count in sorted(load.statuses.items())
    )
    return (
        f"| {load.label} | {sum(load.statuses.values())} x {upload_mb:.1f} MB | {answers} | {load.delivered} "
        f"| {load.email_mb:.1f} MB | {load.wall_s:.1f} s | {load.rss_warm_mb:.0f} MB | **{load.peak_mb:.0f} MB** "
        f"| {load.rss_after_mb:.0f} MB |"
    )
