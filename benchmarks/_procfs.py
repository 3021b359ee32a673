"""CPU time and memory of processes and cores, read from /proc (Linux), for the benchmark's accounting."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process (all its threads) has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def memory_mb(pid: int) -> dict[str, float]:
    """`rss` (resident now) and `peak` (VmHWM, the highest resident set so far), in MiB."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values["rss" if key == "VmRSS" else "peak"] = int(rest.split()[0]) / 1024
    return values


def core_times() -> list[tuple[float, float, float]]:
    """(busy, interrupts, total) seconds per core since boot.

    Busy counts everything but idle and iowait; interrupts (irq + softirq) is the kernel's packet work, which on
    loopback is mostly our own traffic and is charged to no process.
    """
    cores = []
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            name, *numbers = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(n) for n in numbers[:8]]
                total = sum(ticks)
                cores.append(((total - ticks[3] - ticks[4]) / _TICK, (ticks[5] + ticks[6]) / _TICK, total / _TICK))
    return cores


@dataclass(frozen=True, slots=True)
class Snapshot:
    wall: float
    cores: list[tuple[float, float, float]]
    processes: dict[str, float]

    @classmethod
    def take(cls, pids: Mapping[str, int]) -> Snapshot:
        return cls(time.perf_counter(), core_times(), {name: cpu_seconds(pid) for name, pid in pids.items()})


@dataclass(frozen=True, slots=True)
class Usage:
    """Between two snapshots: wall seconds, each core's busy and interrupt shares, each process's CPU seconds."""

    wall: float
    core_busy: list[float]
    core_interrupts: list[float]
    cpu: dict[str, float]

    @classmethod
    def between(cls, before: Snapshot, after: Snapshot) -> Usage:
        busy, interrupts = [], []
        for (b0, i0, t0), (b1, i1, t1) in zip(before.cores, after.cores, strict=True):
            busy.append((b1 - b0) / (t1 - t0) if t1 > t0 else 0.0)
            interrupts.append((i1 - i0) / (t1 - t0) if t1 > t0 else 0.0)
        cpu = {name: after.processes[name] - before.processes[name] for name in before.processes}
        return cls(after.wall - before.wall, busy, interrupts, cpu)

    @classmethod
    def combined(cls, parts: list[Usage]) -> Usage:
        """Several windows as one: their wall time and CPU seconds added, core shares weighted by wall time."""
        wall = sum(part.wall for part in parts)

        def share(values: list[list[float]]) -> list[float]:
            return [sum(part.wall * v for part, v in zip(parts, core, strict=True)) / wall if wall else 0.0
                    for core in zip(*values, strict=True)]

        cpu: dict[str, float] = {}
        for part in parts:
            for name, seconds in part.cpu.items():
                cpu[name] = cpu.get(name, 0.0) + seconds
        return cls(wall, share([p.core_busy for p in parts]), share([p.core_interrupts for p in parts]), cpu)
