"""The log filter: the second lock behind the privacy middleware."""

from __future__ import annotations

import logging
import random
import re
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from app.logs import REDACTED, CollapseRepeats, RedactAddresses, redact
from tests.served import Served, serve


@pytest.mark.parametrize(
    "address",
    ["203.0.113.9", "198.51.100.250", "2001:db8::1", "[2001:db8:85a3::8a2e:370:7334]", "fe80::1ff:fe23:4567:890a",
     "2001:0db8:0000:0000:0000:ff00:0042:8329", "::ffff:203.113.45.67", "2402:800:6371:ab12"],
)
def test_addresses_are_removed(address: str) -> None:
    assert address.strip("[]") not in redact(f"connection from {address}:51234 closed")
    assert REDACTED in redact(f"peer={address}")


@pytest.mark.parametrize("text", ["at 22:40:11", "ratio 3:2", "version 1.2.3", "listening on 127.0.0.1:8000",
                                  "bound to 0.0.0.0:80", "code 4821 0937 5512 9634"])
def test_ordinary_text_and_own_bind_addresses_are_kept(text: str) -> None:
    assert redact(text) == text


def test_filter_rewrites_records_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "peer %s said %s", ("203.0.113.9", "hi"), None)
    try:
        raise ConnectionError("reset by 198.51.100.7")
    except ConnectionError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactAddresses().filter(record)
    assert record.getMessage() == f"peer {REDACTED} said hi"
    assert record.exc_text is not None
    assert "198.51.100.7" not in record.exc_text and REDACTED in record.exc_text


def test_pillow_never_logs_below_info(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow logs EXIF values (camera, owner, GPS) at DEBUG: held at INFO by configure, by the cleaners' import
    and by the app factory, so an embedder that never calls `configure` is covered too."""
    from app import logs
    from app.main import create_app
    from app.settings import load_settings

    pil = logging.getLogger("PIL")
    monkeypatch.setattr(pil, "level", logging.NOTSET)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)
    logs.configure("debug")
    assert pil.getEffectiveLevel() == logging.INFO and logging.getLogger().level == logging.DEBUG
    pil.setLevel(logging.NOTSET)
    create_app(load_settings(min_fill_seconds=0))
    assert pil.level == logging.INFO
    pil.setLevel(logging.WARNING)  # an operator may quieten it further
    logs.quiet_libraries()
    assert pil.level == logging.WARNING


class _Written(logging.Handler):
    """The lines a handler behind `CollapseRepeats` was given."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_line_repeated_all_minute_is_written_once_then_counted() -> None:
    now = [0.0]
    written = _Written()
    collapse = CollapseRepeats(written, clock=lambda: now[0])
    logger = logging.getLogger("tipbox.test.collapse")
    logger.propagate, logger.handlers[:] = False, [collapse]
    try:
        for n in range(1200):  # twenty a second for a minute
            now[0] = n / 20
            logger.warning("Exceeded concurrency limit.")
        now[0] = 60.5
        logger.error("tip for post %s NOT delivered: %s", "ncs", "server answered 451")  # another kind: written
        for n in range(600):  # the flood goes on for half a minute more
            now[0] = 61 + n / 20
            logger.warning("Exceeded concurrency limit.")
        collapse.flush()  # at exit: what was counted is written
    finally:
        logger.handlers[:] = []
        collapse.close()
    assert written.lines == [
        "Exceeded concurrency limit.",
        "… and 1199 more like this in the last minute: Exceeded concurrency limit.",
        "tip for post ncs NOT delivered: server answered 451",
        "… and 600 more like this in the last minute: Exceeded concurrency limit.",
    ]


def test_a_flood_of_ever_different_lines_is_counted_past_a_few() -> None:
    now = [0.0]
    written = _Written()
    collapse = CollapseRepeats(written, clock=lambda: now[0])
    logger = logging.getLogger("tipbox.test.different")
    logger.propagate, logger.handlers[:] = False, [collapse]
    try:
        rng = random.Random(5)
        for _ in range(5000):  # a library that writes what it was sent into its message
            logger.warning("Unknown header %s", "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=12)))
            now[0] += 0.01
        collapse.flush()
    finally:
        logger.handlers[:] = []
        collapse.close()
    assert len(written.lines) < 100
    assert written.lines[-1] == "… and 4960 more lines of other kinds in the last minute"


def test_lines_that_differ_only_in_numbers_are_one_kind() -> None:
    now = [0.0]
    written = _Written()
    collapse = CollapseRepeats(written, clock=lambda: now[0])
    try:
        for reason in ("too fast", "too fast", "honeypot filled", "too fast"):
            collapse.handle(logging.makeLogRecord({
                "name": "app.guard", "levelno": logging.INFO, "msg": "guard: %s, %d since start; nothing sent for it",
                "args": (reason, len(written.lines) + 1),
            }))
        for offset in (17, 4711, 23):
            collapse.handle(logging.makeLogRecord({"name": "lib", "levelno": logging.WARNING,
                                                   "msg": f"bad byte at {offset}"}))
        collapse.flush()
    finally:
        collapse.close()
    assert written.lines == [
        "guard: too fast, 1 since start; nothing sent for it",
        "guard: honeypot filled, 2 since start; nothing sent for it",
        "bad byte at 17",
        "… and 2 more like this in the last minute: guard: too fast, 1 since start; nothing sent for it",
        "… and 2 more like this in the last minute: bad byte at 17",
    ]


def test_the_count_is_written_when_nothing_else_is_logged() -> None:
    written = _Written()
    collapse = CollapseRepeats(written, window=0.2)  # the real clock, and a timer thread
    try:
        for _ in range(3):
            collapse.handle(logging.makeLogRecord({"name": "x", "levelno": logging.WARNING, "msg": "again"}))
        for _ in range(100):
            if len(written.lines) == 2:
                break
            time.sleep(0.05)
    finally:
        collapse.close()
    assert written.lines == ["again", "… and 2 more like this in the last minute: again"]


@pytest.mark.e2e
def test_a_flood_of_malformed_requests_writes_a_few_lines(tmp_path: Path) -> None:
    """Junk bytes, malformed multipart bodies and requests over the concurrency limit, a thousand, against `tipbox
    serve` at its default log level: a handful of lines, none quoting what was sent."""
    boundary = "----flood"
    multipart = (
        f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: 64\r\nConnection: close\r\n\r\n--{boundary}\r\nX" + "Z" * (62 - len(boundary) - 5) + "\r\n"
    ).encode()
    rng = random.Random(15)
    answers: Counter[bytes] = Counter()
    with serve(tmp_path, {}, args=["--limit-concurrency", "2"]) as served:
        for n in range(400):
            answers[_exchange(served, rng.randbytes(200) + b"MARKER-JUNK\r\n\r\n")] += 1
            answers[_exchange(served, multipart.replace(b"\r\nX", b"\r\nMARKER-" + str(n).encode()))] += 1
        for _ in range(8):  # a connection held open (a new one for every 50, well within its 10 s for headers)
            with socket.create_connection((served.host, served.port)) as held:
                held.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # with it open, the next is over the limit of 2
                for _ in range(50):
                    answers[_exchange(served, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")] += 1
    assert answers[b"400"] == 800 and answers[b"503"] > 1, answers
    lines = served.log_lines()
    assert len(lines) < 20, "\n".join(lines)
    assert not [line for line in lines if "MARKER" in line or "Invalid HTTP request" in line]
    # Every 503 is accounted for: one line written in full, the others counted.
    over = [line for line in lines if line.endswith("Exceeded concurrency limit.")]
    counted = [re.search(r"… and (\d+) more like this in the last minute: ", line) for line in over]
    assert sum(int(match.group(1)) if match else 1 for match in counted) == answers[b"503"], "\n".join(lines)


def _exchange(served: Served, request: bytes) -> bytes:
    """Send `request` on a connection of its own; the status code of the answer (b"" if none)."""
    with socket.create_connection((served.host, served.port), timeout=10) as sock:
        sock.sendall(request)
        answer = sock.recv(64)
    return answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.1 ") else b""
