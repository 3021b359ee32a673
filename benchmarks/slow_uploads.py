"""Slow uploads (issue 15, item 4): do residents' photos still get through while connections hold the upload memory?

`--attackers` (11) connections from 127.0.0.1 each send a form with an 18.2 MB photo at once (together ~200 MB,
the whole default `TIPBOX_UPLOAD_MEMORY_BYTES`), then one byte every 10 s, their bodies never finished; with
`--tokens` each first fetches a form, so its token is real. Meanwhile a resident sends a tip with a ~1.6 MB photo
(a phone photo, unshrunk) every `--interval` (5) seconds from an address of their own (127.0.1.N), fetching the
form and writing for 3.5 s, for `--seconds` (60). `tipbox serve`
runs with its default settings and a real aiosmtpd sink in this process.

Reports residents' photo tips delivered / sent (target: all), their latency, what each attacker got back and
after how long (the sliding-window body deadline: ~30 s after its burst), and the server's peak RSS. Loopback only.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import io
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _http import free_port, wait_until_responds
from _procfs import memory_mb
from aiosmtpd.controller import Controller
from PIL import Image

HOST = "127.0.0.1"
BOUNDARY = "----tipboxslow7MA4YWxkTrZu0gW"
BURST = 18_200_000  # under the 20 MB per-tip limit, so nothing is "too large"


class _Sink:
    """Accepts every message; counts those that carry a photo."""

    def __init__(self) -> None:
        self.photos = 0
        self.texts: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.texts.append(str(message.get_body(("plain",)).get_content()))  # type: ignore[union-attr]
        self.photos += any(part.get_content_type() == "image/jpeg" for part in message.walk())
        return "250 2.0.0 accepted"


def _part(name: str, value: str) -> bytes:
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


def _file_head(name: str) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="IMG_1.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode()


def _token(port: int, local: str) -> str:
    with socket.create_connection((HOST, port), timeout=30, source_address=(local, 0)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        page = b"".join(iter(lambda: sock.recv(65536), b""))
    match = re.search(rb'name="t" value="([^"]+)"', page)
    assert match is not None
    return match.group(1).decode()


def _attacker(port: int, tokens: bool, results: list[tuple[str, float]], stop: threading.Event) -> None:
    """Send the burst, then a byte every 10 s until the server answers or closes; note what it said and when."""
    text = _part("t", _token(port, HOST)) + _part("hp_extra", "") if tokens else b""
    head = text + _file_head("photo")
    length = len(head) + BURST + 1000 + len(f"\r\n--{BOUNDARY}--\r\n")
    outcome = "held until the end"
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode() + head + b"\xff\xd8\xff" + bytes(BURST - 3))
        burst_done = time.monotonic()
        sock.settimeout(10.0)
        while not stop.is_set():
            try:
                answer = sock.recv(64)
            except TimeoutError:
                try:
                    sock.sendall(b"\x00")
                except OSError:
                    outcome = "closed"
                    break
                continue
            except OSError:
                outcome = "reset"
                break
            outcome = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"
            break
    results.append((outcome, time.monotonic() - burst_done))


FILL_SECONDS = 3.5  # a person takes longer than the minimum fill time (3 s)


def _resident(port: int, number: int, photo: bytes, run: str, answers: list[tuple[int, float]]) -> None:
    local = f"127.0.1.{number + 1}"
    hidden = {"t": _token(port, local), "hp_extra": ""}
    time.sleep(FILL_SECONDS)
    body = b"".join(_part(name, value) for name, value in {
        **hidden, "category": "smuggling", "what": f"Ảnh xe chở hàng lậu ({run}-{number})", "where": "Bản Nậm Chim",
    }.items()) + _file_head("photo") + photo + f"\r\n--{BOUNDARY}--\r\n".encode()
    started = time.monotonic()
    with socket.create_connection((HOST, port), timeout=120, source_address=(local, 0)) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; "
                     f"boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        answer = sock.recv(64)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    answers.append((status, time.monotonic() - started))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attackers", type=int, default=11)
    parser.add_argument("--tokens", action="store_true", help="attackers fetch a form first: their tokens are real")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    picture = Image.merge("RGB", [Image.effect_noise((1800, 1400), 90).convert("L") for _ in range(3)])
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG")
    photo, run = buffer.getvalue(), secrets.token_hex(3)

    sink = _Sink()
    smtp_port, port = free_port(), free_port()
    controller = Controller(sink, hostname=HOST, port=smtp_port)
    controller.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
    env.update(TIPBOX_SMTP_HOST=HOST, TIPBOX_SMTP_PORT=str(smtp_port), TIPBOX_SMTP_SECURITY="none",
               TIPBOX_MAIL_FROM="tipbox@bench.invalid", TIPBOX_MAILBOX="post@bench.invalid",
               TIPBOX_SECRET_KEY=secrets.token_urlsafe(32))
    tipbox = Path(sys.executable).parent / "tipbox"
    results: list[tuple[str, float]] = []
    residents: list[tuple[int, float]] = []
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="tipbox-slow-") as folder:
        log = (Path(folder) / "tipbox.log").open("wb")
        server = subprocess.Popen([str(tipbox), "serve", "--host", HOST, "--port", str(port)], env=env, cwd=folder,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_responds(port, server)
            idle = memory_mb(server.pid)["peak"]
            attackers = [threading.Thread(target=_attacker, args=(port, args.tokens, results, stop), daemon=True)
                         for _ in range(args.attackers)]
            for thread in attackers:
                thread.start()
            time.sleep(3.0)  # the bursts are in
            started, sending = time.monotonic(), []
            for number in range(max(1, int(args.seconds / args.interval))):
                sending.append(threading.Thread(target=_resident, args=(port, number, photo, run, residents)))
                sending[-1].start()
                time.sleep(max(0.0, started + (number + 1) * args.interval - time.monotonic()))
            for thread in sending:
                thread.join(timeout=180)
            stop.set()
            for thread in attackers:
                thread.join(timeout=15)
            peak = memory_mb(server.pid)["peak"]
        finally:
            server.terminate()
            server.wait(timeout=15)
            controller.stop()
    sent = max(1, int(args.seconds / args.interval))
    delivered = sum(1 for number in range(sent) if any(f"({run}-{number})" in t for t in sink.texts))
    latency = [seconds for status, seconds in residents if status == 200]
    print(f"slow uploads: {args.attackers} connections from {HOST}, each {BURST / 1e6:.1f} MB at once then a byte "
          f"every 10 s{', with real tokens' if args.tokens else ', no token'}; a resident's ~{len(photo) / 1e6:.1f} MB "
          f"photo every {args.interval:g} s for {args.seconds:g} s; default settings")
    print(f"residents' photo tips delivered / sent: {delivered} / {sent} (with the photo: {sink.photos}); "
          f"answers {dict(Counter(status for status, _ in residents))}")
    if latency:
        median, most = 1000 * statistics.median(latency), 1000 * max(latency)
        print(f"resident send latency: p50 {median:.0f} ms, max {most:.0f} ms")
    outcomes = Counter(outcome for outcome, _ in results)
    held = [seconds for _, seconds in results]
    print(f"attackers: {dict(outcomes)}; held after their burst: min {min(held, default=0):.1f} s, "
          f"max {max(held, default=0):.1f} s")
    print(f"server RSS: idle peak {idle:.1f} MiB, peak {peak:.1f} MiB")
    return 0 if delivered == sent else 1


if __name__ == "__main__":
    sys.exit(main())
