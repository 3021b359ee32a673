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
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--derivations", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-server", action="store_true", help="part A only")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}\n")
    part_a(args)


if __name__ == "__main__":
    main()
