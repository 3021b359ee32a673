"""Answers (issue 14): the key derivation's cost, lookups at the bound, and what answers cost the service.

    .venv/bin/python benchmarks/answers.py [--derivations 40] [--seconds 10] [--skip-server]

Part A, in process: time and peak memory of one Argon2id derivation at the deployed parameters; lookups per second
with the derivation bound full; the offline cost of trying every receipt code, in CPU-years. Part B, against real
`tipbox serve` processes and an aiosmtpd sink: tips per second and p99 latency with answers on and off, and GET form
throughput alone and while lookups are hammered. Prints Markdown for docs/benchmarks.md; figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _http

from app import receipts
from app.answers import keys
from app.answers.bound import Busy, DerivationBound, default_slots
from app.answers.lookup import answers_for
from app.answers.store import SqliteStore

SECRET = b"benchmark-secret-key-0123456789abcdef"
STORED = (1, 1_000, 100_000)  # answers in a store, for the cost of finding any one of them
_PEAK = """
import sys
from app.answers import keys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = peak()
keys.derive(sys.argv[1], b"x" * 32)
print(before, peak())
"""


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def derivation_time(count: int) -> list[float]:
    times = []
    for _ in range(count):
        code = receipts.new_code()
        start = time.perf_counter()
        keys.derive(code, SECRET)
        times.append(time.perf_counter() - start)
    return times


def derivation_peak_mib() -> tuple[float, float]:
    """(resident peak before, after) one derivation in a fresh interpreter, MiB."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, receipts.new_code()], cwd=root, capture_output=True, text=True, check=True
    )
    before, after = (int(value) / 1024 for value in done.stdout.split())
    return before, after


async def lookups_per_second(seconds: float, slots: int) -> tuple[float, int, int]:
    """Lookups answered per second with every lookup slot busy; (rate, answered, told busy)."""
    with tempfile.TemporaryDirectory(prefix="tipbox-bench-answers-") as folder:
        store = SqliteStore(Path(folder) / "answers.sqlite3", days=90)
        bound = DerivationBound(SECRET, slots)
        code = receipts.new_code()
        pair = await bound.for_tip(code)
        await store.put(keys.lookup_id(pair.public), keys.seal(pair.public, json.dumps(
            {"at": int(time.time()), "text": "Cảm ơn anh."}).encode()), b"1")
        answered = busy = 0
        deadline = time.perf_counter() + seconds

        async def reader() -> None:
            nonlocal answered, busy
            while time.perf_counter() < deadline:
                try:
                    assert len(await answers_for(code, bound, store)) == 1
                    answered += 1
                except Busy:
                    busy += 1
                    await asyncio.sleep(0.001)

        start = time.perf_counter()
        await asyncio.gather(*(reader() for _ in range(slots * 2)))
        return answered / (time.perf_counter() - start), answered, busy


def part_a(args: argparse.Namespace) -> None:
    times = derivation_time(args.derivations)
    median, p90 = statistics.median(times), _percentile(times, 0.9)
    before, after = derivation_peak_mib()
    slots = default_slots()
    rate, answered, busy = asyncio.run(lookups_per_second(args.seconds, slots))
    print(f"### Key derivation (Argon2id, {keys.MEM_LIMIT // 2**20} MiB, {keys.OPS_LIMIT} passes)\n")
    print("| figure | value |\n| --- | ---: |")
    print(f"| one derivation, median of {len(times)} (ms) | {1000 * median:.1f} |")
    print(f"| one derivation, p90 (ms) | {1000 * p90:.1f} |")
    print(f"| resident peak of a fresh interpreter before / after one derivation (MiB) | {before:.1f} / {after:.1f} |")
    print(f"| derivation slots (bound), of which lookups may use | {slots}, {slots - 1} |")
    print(f"| lookups per second with every lookup slot busy ({args.seconds:g} s, {2 * slots} readers) | "
          f"{rate:.1f} |")
    print(f"| lookups told \"busy\" meanwhile (answered) | {busy:,} ({answered:,}) |")
    print()
    print("### Offline search of the code space (the secret key known, the store stolen)\n")
    print(f"{keys.CODE_SPACE:.0e} codes (14 random digits), one derivation each at the median above, on one core "
          "like this one:\n")
    print("| target | CPU-years to try every code | expected (half) |\n| --- | ---: | ---: |")
    for stored in STORED:
        years = keys.search_cost_cpu_years(median, keys.CODE_SPACE // stored)
        name = "one given code's answers" if stored == 1 else f"any one of {stored:,} stored answers"
        print(f"| {name} | {years:,.0f} | {years / 2:,.0f} |")
    print()


# -- Part B: real `tipbox serve` processes ------------------------------------------------------------------------


class _Sink:
    """An aiosmtpd handler that accepts and counts."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.count += 1
        return "250 2.0.0 accepted"


@contextmanager
def _served(folder: Path, answers: bool) -> Iterator[int]:
    """`tipbox serve` relaying to a counting sink, answers on or off, limits out of the way; yields its port."""
    from aiosmtpd.controller import Controller

    smtp_port, port = _http.free_port(), _http.free_port()
    controller = Controller(_Sink(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
    env.update(
        TIPBOX_SMTP_HOST="127.0.0.1", TIPBOX_SMTP_PORT=str(smtp_port), TIPBOX_SMTP_SECURITY="none",
        TIPBOX_MAIL_FROM="tipbox@bench.invalid", TIPBOX_MAILBOX="post@bench.invalid",
        TIPBOX_SECRET_KEY=SECRET.decode(), TIPBOX_MIN_FILL_SECONDS="0", TIPBOX_SOURCE_RATE="",
        TIPBOX_POST_RATE="1000000/hour", TIPBOX_ANSWERS_STORE=f"sqlite:///{folder / 'answers.sqlite3'}",
    )
    if answers:
        env["TIPBOX_REPLY_TO"] = "answers@bench.invalid"
    tipbox = Path(sys.executable).parent / "tipbox"
    with (folder / f"tipbox-{answers}.log").open("wb") as log:
        process = subprocess.Popen(
            [str(tipbox), "serve", "--port", str(port), "--log-level", "warning"], env=env, cwd=folder,
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        _http.wait_until_responds(port, lambda: process.poll() is None)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)
        controller.stop()


def _send_tip(port: int, run: str, number: int) -> float:
    """Fetch the form, send a tip; seconds from pressing Send to the success page."""
    form = _http.request(port, "GET", "/", headers=_http.PHONE_HEADERS)
    hidden, _ = _http.hidden_fields(form.body.decode())
    start = time.perf_counter()
    sent = _http.request(port, "POST", "/", headers=_http.tip_headers(gzip=False),
                         body=_http.tip_body(hidden, run, number), timeout=30)
    assert sent.status == 200, sent.status
    return time.perf_counter() - start


def tips(port: int, seconds: float, clients: int) -> tuple[float, float, float]:
    """(tips per second, p50 s, p99 s) with `clients` phones sending one after another."""
    run, latencies, deadline = secrets.token_hex(3), [], time.perf_counter() + seconds
    counter = iter(range(10**9))

    def phone() -> None:
        while time.perf_counter() < deadline:
            latencies.append(_send_tip(port, run, next(counter)))

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(phone) for _ in range(clients)]:
            future.result()
    elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, statistics.median(latencies), _percentile(latencies, 0.99)


def _gets(port: int, seconds: float, clients: int, results: Any) -> None:
    """GET the form for `seconds` from `clients` threads; put the count in `results` (runs in its own process)."""
    deadline, count = time.perf_counter() + seconds, [0] * clients

    def loop(index: int) -> None:
        while time.perf_counter() < deadline:
            if _http.request(port, "GET", "/p/post", headers={**_http.PHONE_HEADERS, **_http.GZIP}).status == 200:
                count[index] += 1

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(loop, range(clients)))
    results.put(sum(count) / seconds)


def _lookups(port: int, seconds: float, clients: int, rate: float | None, code: str, results: Any) -> None:
    """POST "Read answers" with `code` from `clients` threads, at `rate` per second in all or as fast as they can
    (runs in its own process)."""
    deadline, statuses = time.perf_counter() + seconds, Counter[int]()
    body = (f'--{_http.BOUNDARY}\r\nContent-Disposition: form-data; name="read"\r\n\r\n1\r\n'
            f'--{_http.BOUNDARY}\r\nContent-Disposition: form-data; name="code"\r\n\r\n'
            f"{code}\r\n--{_http.BOUNDARY}--\r\n").encode()

    def loop(index: int) -> None:
        due = time.perf_counter() + (index / rate if rate else 0)
        while time.perf_counter() < deadline:
            if rate:
                time.sleep(max(0.0, due - time.perf_counter()))
                due += clients / rate
            statuses[_http.request(port, "POST", "/p/post/more", headers=_http.tip_headers(), body=body).status] += 1

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(loop, range(clients)))
    results.put(dict(statuses))


# How the lookups come while the form is fetched: (name, requests per second or None for flat out, code).
HAMMERS: dict[str, tuple[float | None, str] | None] = {
    "none": None,
    "lookups, 20 per second": (20.0, "real"),
    "mistyped codes, 20 per second (no derivation)": (20.0, "typo"),
    "lookups, flat out": (None, "real"),
    "mistyped codes, flat out (no derivation)": (None, "typo"),
}


def form_throughput(port: int, seconds: float, hammer: str) -> tuple[float, dict[int, int]]:
    """GET form requests per second, alone or while another process sends lookups (`HAMMERS`)."""
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    getter = context.Process(target=_gets, args=(port, seconds, 4, results))
    how = HAMMERS[hammer]
    hammerer = None
    if how is not None:
        rate, kind = how
        code = receipts.new_code() if kind == "real" else receipts.new_code()[:-1] + "x"
        hammerer = context.Process(target=_lookups, args=(port, seconds, 8, rate, code, results))
    for process in (getter, hammerer):
        if process is not None:
            process.start()
    found = [results.get(timeout=seconds + 60) for _ in range(2 if hammerer else 1)]
    for process in (getter, hammerer):
        if process is not None:
            process.join(timeout=30)
    rate = next(value for value in found if isinstance(value, float))
    statuses = next((value for value in found if isinstance(value, dict)), {})
    return rate, statuses


def part_b(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tipbox-bench-answers-") as name:
        folder = Path(name)
        print(f"### Tips with answers on and off ({args.seconds:g} s each, 2 phones sending one after another)\n")
        print("| answers | tips per second | p50 (ms) | p99 (ms) |\n| --- | ---: | ---: | ---: |")
        for on in (False, True, False, True):
            with _served(folder, on) as port:
                _send_tip(port, "warm", 0)
                rate, p50, p99 = tips(port, args.seconds, 2)
            print(f"| {'on' if on else 'off'} | {rate:.1f} | {1000 * p50:.0f} | {1000 * p99:.0f} |")
        print()
        print(f"### GET form throughput while lookups are hammered ({args.seconds:g} s each, 4 GET threads; "
              "8 lookup threads in another process; two interleaved rounds)\n")
        print("| lookups meanwhile | GET /p/post per second | vs none | lookups answered (200) | busy (503) | "
              "refused (422) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        with _served(folder, True) as port:
            rounds: dict[str, list[tuple[float, dict[int, int]]]] = {name: [] for name in HAMMERS}
            for _ in range(2):
                for name in HAMMERS:
                    rounds[name].append(form_throughput(port, args.seconds, name))
            alone = statistics.mean(rate for rate, _ in rounds["none"])
            for name, runs in rounds.items():
                rate = statistics.mean(value for value, _ in runs)
                counts = Counter[int]()
                for _, statuses in runs:
                    counts.update(statuses)
                cells = [str(counts.get(status, 0)) if name != "none" else "-" for status in (200, 503, 422)]
                print(f"| {name} | {rate:.0f} | {100 * rate / alone:.0f} % | {' | '.join(cells)} |")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--derivations", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-server", action="store_true", help="part A only")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}\n")
    part_a(args)
    if not args.skip_server:
        part_b(args)


if __name__ == "__main__":
    main()
