"""The benchmark's figures as markdown, and its section of docs/benchmarks.md replaced in place."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from _procfs import Usage

HEADING = "## Throughput (issue 8)"
DOC_TITLE = "# Benchmarks\n\nFigures printed by the scripts in `benchmarks/`; each section is written by its script.\n"


@dataclass
class Measurement:
    """One timed run: `count` successes in `seconds`, latency percentiles, and who used which core meanwhile."""

    kind: str  # bare | get | get_gzip | floor | post
    label: str
    round: int
    count: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server: str  # the process under test, a key of usage.cpu
    usage: Usage
    bytes_per: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_op(self) -> float:
        return 1e6 * self.usage.cpu.get(self.server, 0.0) / self.count if self.count else 0.0


@dataclass(frozen=True, slots=True)
class Layout:
    """Which core ran what; `server_core` None means nothing was pinned."""

    server_core: int | None
    load_core: int | None


RATIO_BASE = {"get": "bare", "get_gzip": "bare", "post": "floor"}
TARGETS = {"get": 0.40, "get_gzip": 0.40, "post": 0.50}


def ratio(runs: list[Measurement], run: Measurement) -> float | None:
    base = next((m for m in runs if m.kind == RATIO_BASE.get(run.kind) and m.round == run.round), None)
    return run.rate / base.rate if base is not None and base.rate else None


def cpu_ratio(runs: list[Measurement], run: Measurement) -> float | None:
    """The ratio if both sides were limited by their own CPU alone: base CPU per op over this run's."""
    base = next((m for m in runs if m.kind == RATIO_BASE.get(run.kind) and m.round == run.round), None)
    return base.cpu_us_per_op / run.cpu_us_per_op if base is not None and run.cpu_us_per_op else None


NOISY = 0.20


def other_share(run: Measurement, core: int | None) -> float:
    """The share of the server's core that went to other processes during `run` (not to kernel packet work)."""
    if core is None or core >= len(run.usage.core_busy) or not run.usage.wall:
        return 0.0
    usage = run.usage
    return max(0.0, usage.core_busy[core] - usage.core_interrupts[core] - usage.cpu.get(run.server, 0.0) / usage.wall)


def noisy(runs: list[Measurement], run: Measurement, core: int | None) -> bool:
    """More than NOISY of the server core went elsewhere during this run or the run it is compared with."""
    base = next((m for m in runs if m.kind == RATIO_BASE.get(run.kind) and m.round == run.round), None)
    return any(other_share(m, core) > NOISY for m in (run, base) if m is not None)


def _split(usage: Usage, core: int | None, mine: float) -> str:
    """"ours / interrupts / other" shares of `core`, where `mine` is the CPU seconds our processes used on it."""
    if core is None or core >= len(usage.core_busy) or not usage.wall:
        return "-"
    ours, interrupts = 100 * mine / usage.wall, 100 * usage.core_interrupts[core]
    other = max(0.0, 100 * usage.core_busy[core] - ours - interrupts)
    return f"{ours:.0f} / {interrupts:.0f} / {other:.0f}"


def throughput_table(runs: list[Measurement], layout: Layout) -> str:
    rows = [
        "| measurement | round | per second | p50 ms | p99 ms | ratio (target) | CPU µs/op | ratio by CPU/op "
        "| server core % (server / irq / other) | load core % (wrk + sink / irq / other) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        share, by_cpu, target = ratio(runs, run), cpu_ratio(runs, run), TARGETS.get(run.kind)
        ratio_text = by_cpu_text = "1 (base)" if run.kind in ("bare", "floor") else "-"
        if share is not None and target is not None:
            # One decimal: 39.6 % shown as "40 %" beside "below 40 %" would read as a contradiction.
            ratio_text = f"**{100 * share:.1f} %** ({'≥' if share >= target else 'below'} {100 * target:.0f} %)"
            if noisy(runs, run, layout.server_core):
                ratio_text += " †"
        if by_cpu is not None:
            by_cpu_text = f"{100 * by_cpu:.1f} %"
        server = _split(run.usage, layout.server_core, run.usage.cpu.get(run.server, 0.0))
        load = _split(run.usage, layout.load_core, run.usage.cpu.get("load", 0.0) + run.usage.cpu.get("sink", 0.0))
        rows.append(
            f"| {run.label} | {run.round} | {run.rate:,.0f} | {run.p50_ms:.1f} | {run.p99_ms:.1f} | {ratio_text} "
            f"| {run.cpu_us_per_op:,.0f} | {by_cpu_text} | {server} | {load} |"
        )
    return "\n".join(rows)


def _versions() -> str:
    names = ("uvicorn", "fastapi", "starlette", "uvloop", "httptools", "jinja2", "aiosmtplib", "aiosmtpd")
    found = [f"Python {platform.python_version()}"]
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split()
    found.append(f"wrk {wrk[1] if len(wrk) > 1 else '?'}")
    return ", ".join(found)


def _machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    virtual = ""
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        if " hypervisor" in handle.read():
            virtual = ", virtual machine"
    return f"{model}, {os.cpu_count()} cores{virtual}, Linux {platform.release()}"


def section(bench: Any, command: str, lifted_rate: str) -> str:
    """The markdown for docs/benchmarks.md."""
    args, layout = bench.args, bench.layout
    pinning = (
        f"The server under test (bare app, tipbox, or the raw aiosmtplib sender) is pinned to core "
        f"{layout.server_core}; wrk (one thread) and the aiosmtpd sink (a process of its own, uvloop) share core "
        f"{layout.load_core}, so each server's CPU figures are its own."
        if layout.server_core is not None else "Nothing was pinned (`--no-pin`): all processes share the cores."
    )
    lines = [
        HEADING,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}`.",
        f"Machine: {_machine()}. Versions: {_versions()}.",
        "",
        "How: every server runs with tipbox's production uvicorn settings (one worker, uvloop + httptools, access "
        "log off, `limit_concurrency` 1000) on 127.0.0.1; `tipbox serve` itself, so tipbox also pays for its own "
        f"hardened httptools protocol, the bare app runs uvicorn's. {pinning} GET runs use {args.get_connections} "
        f"keep-alive connections; POST and the floor use {args.post_connections}, with a new plain-SMTP connection "
        "per message on loopback. Requests carry the header set of Zalo's browser on Android. tipbox runs with "
        f"`TIPBOX_POST_RATE` and `TIPBOX_SOURCE_RATE` = `{lifted_rate}`, `TIPBOX_MIN_FILL_SECONDS=0` and its "
        "default log level (one line per tip). Every POST is a multipart form as a browser sends it, with a "
        "single-use form token fetched by that round's GET run and a text of its own; a tip counts only when wrk "
        "got the success page and the sink got the message. "
        f"Form tokens {'were' if bench.token_field else 'were not'} issued by this build. Each measurement ran "
        f"{args.duration:g} s, {args.rounds} times; ratios compare figures of the same round. In each round the "
        f"three GET measurements ran interleaved, in {args.slices} slices of {args.duration / args.slices:g} s "
        "each (bare, identity, gzip, bare, ...), and so did the floor and the POSTs (floor, POST, floor, ...), so "
        "that the machine's speed drifting during a round (seen here: the same bare app from 68 to 132 µs of CPU "
        "per request, run to run) weighs on the base and on tipbox alike; wrk's p50 is the median of the slices' "
        "and its p99 the highest (the floor's are exact).",
        "",
        throughput_table(bench.runs, layout),
        "",
        "CPU µs/op: CPU time of the process under test per success (user + system). Ratio by CPU/op: the base's "
        "CPU per op over this one's, the ratio if each side were limited by its own core alone; it moves less than "
        "req/s when other work lands on the cores. Core %: share of each core over the window (/proc/stat) used by "
        "our processes, by the kernel's interrupt and packet work (loopback traffic, mostly ours, charged to no "
        "process) and by other processes on this shared machine; a large \"other\" marks a noisy measurement, and "
        "a load core near 100 % means wrk and the sink may be what limits the figure. p99 at 64 connections "
        "includes each connection's first request (once per slice), queued while the server is saturated. †: other "
        "processes took "
        f"more than {100 * NOISY:.0f} % of the server core during this run or its base: read the ratio by "
        "CPU/op instead.",
        "",
        "| tipbox memory | RSS MB | peak RSS MB | target |",
        "| --- | ---: | ---: | --- |",
    ]
    for index, (label, memory) in enumerate(bench.memory):
        target = ""
        if label.startswith("idle"):
            target = "≤ 60 MB"
        elif index == len(bench.memory) - 1:
            target = "≤ 80 MB"
        lines.append(f"| {label} | {memory.get('rss', 0):.1f} | {memory.get('peak', 0):.1f} | {target} |")
    lines += [
        "",
        "| bytes on the wire | encoding | headers | body | total | wrk average per response (keep-alive) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, encoding, head, body, kind in bench.wire:
        averages = [run.bytes_per for run in bench.runs if run.kind == kind and run.bytes_per]
        average = f"{sum(averages) / len(averages):,.0f}" if averages else "-"
        lines.append(f"| {label} | {encoding} | {head:,} | {body:,} | {head + body:,} | {average} |")
    lines.append("")
    lines.append(f"The floor sends the message tipbox composed for a warm-up tip ({len(bench.message):,} bytes).")
    notes = [f"- {run.label}, round {run.round}: {'; '.join(run.notes)}" for run in bench.runs if run.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def replace_section(document: str, section: str) -> str:
    """`document` with the text from HEADING up to the next `## ` heading replaced by `section` (or it appended)."""
    lines = document.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == HEADING), None)
    if start is None:
        prefix = document if document.endswith("\n") or not document else document + "\n"
        return prefix + ("\n" if prefix else "") + section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rest = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + rest if rest else "")


def write_section(path: Path, section: str) -> None:
    document = path.read_text(encoding="utf-8") if path.exists() else DOC_TITLE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(document, section.rstrip("\n") + "\n"), encoding="utf-8")
