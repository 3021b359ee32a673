"""Flood benchmark (issue 4): does a resident's tip still get through while 200 connections attack the service?

For `--seconds` (60) `--connections` (200) concurrent flooders hit a running `tipbox serve` on 127.0.0.1 with junk
bytes, malformed HTTP, bot form posts (no token, a filled honeypot), form fetches, oversized bodies (declared and
chunked), and headers and bodies trickled byte by byte. Meanwhile a paced legitimate client starts one tip every
`--interval` (2 s): it fetches the form, takes 3.5 s to write (the minimum fill time is 3 s) and sends it as a
browser would (multipart, empty file inputs). Each legitimate tip comes from its own loopback address (127.0.1.N)
and the flood from 127.0.0.1, so the per-source limit sees 30 villagers and one attacker, as in a market; the
service runs with its default limits (30 tips an hour per post, 10 per source). A real aiosmtpd sink in this
process counts what reaches the mailbox.

Reports: legitimate tips delivered / sent (target 100 %), the server's peak RSS (VmHWM, target < 200 MB), the
legitimate client's latency (send: p50 / p99 / max; form fetch: p99), and what the flood got back. Loopback only;
every loop is bounded by the deadline and every connection by a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import multiprocessing
import os
import random
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BOUNDARY = "----tipboxflood7MA4YWxkTrZu0gW"
KINDS = ("junk", "malformed", "multipart", "bot", "form", "oversized", "chunked", "slow-headers", "slow-body")
OP_TIMEOUT = 45.0  # one flood operation, at most (a trickled body is cut at 30 s)
FILL_SECONDS = 3.5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _peak_rss_mb(pid: int) -> float:
    """VmHWM: the highest resident set the process has had, in MiB (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


class _Sink:
    """Accepts every message; keeps the decoded text of each, to tell the legitimate tips from anything else."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = [p.get_content() for p in message.walk() if p.get_content_type() == "text/plain"]
        self.texts.append("\n".join(str(part) for part in parts))
        return "250 2.0.0 accepted"


# ---- HTTP over raw sockets: full control of the bytes, and of the local address ------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, str]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    body = await reader.readexactly(int(length.group(1))) if length else await reader.read()
    return status, body.decode("utf-8", "replace")


async def _http(
    method: str, path: str, port: int, *, local: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(HOST, port, local_addr=(local, 0))
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return await _read_response(reader)
    finally:
        writer.close()


def _part(name: str, value: str, filename: str | None = None) -> str:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    extra = "Content-Type: application/octet-stream\r\n" if filename is not None else ""
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{extra}\r\n{value}\r\n"


def _tip_body(token: str, what: str) -> bytes:
    parts = [
        _part("t", token), _part("hp_extra", ""), _part("category", "smuggling"), _part("what", what),
        _part("where", "Bản Na Cô Sa"), _part("when", "sáng nay"), _part("photo", "", filename=""),
        _part("voice", "", filename=""), _part("contact", ""),
    ]
    return ("".join(parts) + f"--{BOUNDARY}--\r\n").encode("utf-8")


MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Accept-Language": "vi"}


# ---- the legitimate client ---------------------------------------------------------------------------------


@dataclass
class Legit:
    sent: int = 0
    accepted: int = 0
    markers: list[str] = field(default_factory=list)
    send_seconds: list[float] = field(default_factory=list)
    fetch_seconds: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)


async def _one_tip(port: int, number: int, run: str, legit: Legit) -> None:
    local = f"127.0.1.{number + 1}"
    marker = f"TIP-{run}-{number}"
    try:
        started = time.perf_counter()
        status, page = await asyncio.wait_for(_http("GET", "/?lang=vi", port, local=local), 60)
        legit.fetch_seconds.append(time.perf_counter() - started)
        token = re.search(r'name="t" value="([^"]+)"', page)
        if status != 200 or token is None:
            legit.failures[f"form {status}"] += 1
            return
        await asyncio.sleep(FILL_SECONDS)
        body = _tip_body(token.group(1), f"Xe chở hàng lậu qua đường mòn ({marker})")
        legit.sent += 1
        legit.markers.append(marker)
        started = time.perf_counter()
        status, page = await asyncio.wait_for(
            _http("POST", "/?lang=vi", port, local=local, body=body, headers=MULTIPART), 60
        )
        legit.send_seconds.append(time.perf_counter() - started)
        if status == 200 and 'id="receipt"' in page:
            legit.accepted += 1
        else:
            legit.failures[f"send {status}"] += 1
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        legit.failures[type(exc).__name__] += 1


async def _legit_client(port: int, count: int, interval: float, run: str) -> Legit:
    legit = Legit()
    tasks = []
    for number in range(count):
        tasks.append(asyncio.create_task(_one_tip(port, number, run, legit)))
        await asyncio.sleep(interval)
    await asyncio.gather(*tasks)
    return legit


# ---- the flood (a process of its own) -----------------------------------------------------------------------


async def _flood_op(kind: str, port: int, rng: random.Random) -> str:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        if kind == "junk":
            writer.write(rng.randbytes(rng.randint(16, 4096)))
        elif kind == "malformed":
            writer.write(b"GET /\x00\x7f HTTP/1.1\r\nHost\r\n: \x01\r\n\r\n")
        elif kind == "multipart":  # a body python-multipart refuses (its logger would quote it)
            body = f"--{BOUNDARY}\r\nX{rng.randbytes(8).hex()}\r\n\r\n".encode()
            writer.write(
                f"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {MULTIPART['Content-Type']}"
                f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            )
        elif kind == "bot":
            body = b"category=drugs&what=mua+b%C3%A1n+spam&hp_extra=http%3A%2F%2Fspam.invalid"
            writer.write(
                b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded"
                + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            )
        elif kind == "form":
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        elif kind == "oversized":
            writer.write(
                f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {MULTIPART['Content-Type']}\r\n"
                "Content-Length: 50000000\r\n\r\n".encode() + b"x" * 65536
            )
        elif kind == "chunked":
            writer.write(
                f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {MULTIPART['Content-Type']}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            writer.write(b"%x\r\n%s\r\n" % (len(_PREAMBLE), _PREAMBLE))
            chunk = b"%x\r\n%s\r\n" % (len(_BLOCK), _BLOCK)
            for _ in range(21 * 1024 * 1024 // len(_BLOCK)):  # past the 20 MB limit
                if writer.is_closing() or reader.at_eof():
                    break
                writer.write(chunk)
                await writer.drain()
        elif kind in ("slow-headers", "slow-body"):
            if kind == "slow-headers":
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            else:
                writer.write(
                    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Length: 10000\r\n\r\ncategory=drugs&what="
                )
            for _ in range(200):  # a byte every half second until the server gives up on us
                await writer.drain()
                try:
                    return _status(await asyncio.wait_for(reader.read(64), 0.5))
                except TimeoutError:
                    writer.write(b"a")
        await writer.drain()
        return _status(await reader.read(64))
    except (ConnectionError, asyncio.IncompleteReadError):
        return "reset"
    finally:
        writer.close()


def _status(head: bytes) -> str:
    return head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/1.1 ") else ("closed" if not head else "junk")


_PREAMBLE = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n'.encode()
_BLOCK = b"\xff" * 65536


async def _flood(port: int, connections: int, seconds: float) -> dict[str, Counter[str]]:
    deadline = time.monotonic() + seconds
    results: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}

    async def worker(index: int) -> None:
        # An equal share of the connections for each kind, each kept busy: the fast kinds never stop pounding.
        rng = random.Random(index)
        kind = KINDS[index % len(KINDS)]
        while time.monotonic() < deadline:
            try:
                remaining = max(0.1, min(OP_TIMEOUT, deadline - time.monotonic() + 5))
                outcome = await asyncio.wait_for(_flood_op(kind, port, rng), remaining)
            except TimeoutError:
                outcome = "timeout"
            except OSError as exc:
                outcome = type(exc).__name__
                await asyncio.sleep(0.05)
            results[kind][outcome] += 1

    await asyncio.gather(*(worker(i) for i in range(connections)))
    return results


def _flood_process(port: int, connections: int, seconds: float, pipe: Connection) -> None:
    results = asyncio.run(_flood(port, connections, seconds))
    pipe.send({kind: dict(counter) for kind, counter in results.items()})
    pipe.close()


# ---- the run ----------------------------------------------------------------------------------------------------


def _start_server(port: int, smtp_port: int, folder: Path, settings: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
    env.update(
        TIPBOX_SMTP_HOST=HOST, TIPBOX_SMTP_PORT=str(smtp_port), TIPBOX_SMTP_SECURITY="none",
        TIPBOX_MAIL_FROM="tipbox@bench.invalid", TIPBOX_MAILBOX="post@bench.invalid",
        TIPBOX_SECRET_KEY=secrets.token_urlsafe(32), **settings,
    )
    tipbox = Path(sys.executable).parent / "tipbox"
    log = (folder / "tipbox.log").open("wb")
    return subprocess.Popen(  # at the default log level (info), to count the lines a flood makes it write
        [str(tipbox), "serve", "--host", HOST, "--port", str(port)],
        env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
    )


def _wait_until_responds(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tipbox serve exited with {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("tipbox serve did not answer")


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the flood (default 60, at most 300)")
    parser.add_argument("--connections", type=int, default=200, help="concurrent flooders (default 200)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between legitimate tips (default 2)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="TIPBOX_NAME=VALUE", help="a setting for the server (repeatable)"
    )
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    seconds = min(args.seconds, 300.0)
    count = max(1, int(seconds / args.interval))
    run = secrets.token_hex(3)

    sink = _Sink()
    smtp_port = _free_port()
    controller = Controller(sink, hostname=HOST, port=smtp_port)
    controller.start()
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="tipbox-flood-") as folder:
        server = _start_server(port, smtp_port, Path(folder), settings)
        try:
            _wait_until_responds(port, server)
            idle_rss = _peak_rss_mb(server.pid)
            receiving, sending = multiprocessing.Pipe(duplex=False)
            flooder = multiprocessing.get_context("spawn").Process(
                target=_flood_process, args=(port, args.connections, seconds, sending)
            )
            flooder.start()
            time.sleep(1.0)  # let the flood ramp up first
            legit = asyncio.run(_legit_client(port, count, args.interval, run))
            flood = receiving.recv() if receiving.poll(OP_TIMEOUT + 30) else {}
            flooder.join(timeout=30)
            time.sleep(0.5)
            peak_rss = _peak_rss_mb(server.pid)
            alive = server.poll() is None
        finally:
            server.terminate()
            server.wait(timeout=15)
            controller.stop()
        log = (Path(folder) / "tipbox.log").read_text(encoding="utf-8", errors="replace").splitlines()

    delivered = sum(1 for marker in legit.markers if any(marker in text for text in sink.texts))
    others = len(sink.texts) - delivered
    print(f"flood: {seconds:.0f} s, {args.connections} connections from {HOST}; legitimate tips every "
          f"{args.interval:g} s from 127.0.1.N (fill time {FILL_SECONDS} s); settings {settings or 'default'}")
    print(f"legitimate tips delivered / sent: {delivered} / {legit.sent} "
          f"({100 * delivered / max(1, legit.sent):.1f} %), success pages {legit.accepted}"
          + (f", failures {dict(legit.failures)}" if legit.failures else ""))
    print(f"other messages in the mailbox (flood that got through): {others}")
    send = legit.send_seconds
    print(f"legitimate send latency: p50 {1000 * statistics.median(send) if send else float('nan'):.0f} ms, "
          f"p99 {1000 * _percentile(send, 0.99):.0f} ms, max {1000 * max(send, default=float('nan')):.0f} ms; "
          f"form fetch p99 {1000 * _percentile(legit.fetch_seconds, 0.99):.0f} ms")
    print(f"server RSS: idle peak {idle_rss:.1f} MiB, peak during the flood {peak_rss:.1f} MiB; "
          f"{'still serving' if alive else 'DIED'}")
    total = sum(sum(counter.values()) for counter in flood.values())
    print(f"flood operations: {total}")
    counts = [line for line in log if "more like this" in line or "more lines of other kinds" in line]
    print(f"log lines written by the server, start to stop (default level): {len(log)}, of which {len(counts)} "
          "counts:" + "".join(f"\n  {line.partition(': ')[2]}" for line in counts))
    for kind in KINDS:
        outcomes = ", ".join(f"{name}: {n}" for name, n in sorted(flood.get(kind, {}).items()))
        print(f"  {kind:13s} {outcomes}")
    return 0 if delivered == legit.sent and alive else 1


if __name__ == "__main__":
    sys.exit(main())
