"""Sampling the server under load with py-spy (`--profile DIR`), and summing its samples by function."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

# "function (path/to/module.py:123)" → "module.py:function"
# Only the event loop's thread counts: py-spy here also reports the default executor's idle worker thread
# (aiosmtplib resolves the local host name there) as busy.
EVENT_LOOP = "asyncio/runners.py:Runner.run"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def start(py_spy: str, pid: int, seconds: float, out: Path, pin: list[str]) -> subprocess.Popen[bytes]:
    """Record `pid` at 250 Hz (pausing it per sample: consistent stacks), collapsed stacks to `out`."""
    command = [
        *pin, py_spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "250",
        "--format", "raw", "--output", str(out),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _key(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    parts = path.split("/")
    # Keep the package: "starlette/routing.py", "app/pages.py", "email/message.py".
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{short}:{match['func']}"


def summarize(raw: Path, top: int = 30) -> str:
    """Inclusive and self shares of the samples, by function, as text."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = other = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_key(frame) for frame in stack.split(";")]
        if EVENT_LOOP not in frames:
            other += count
            continue
        total += count
        for key in set(frames):
            inclusive[key] += count
        own[frames[-1]] += count
    if total == 0:
        return f"{raw.name}: no samples\n"
    lines = [f"{raw.name}: {total} samples of the event loop's thread ({other} of other threads left out)", "",
             "inclusive:"]
    lines += [f"  {100 * n / total:5.1f} %  {key}" for key, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {100 * n / total:5.1f} %  {key}" for key, n in own.most_common(top)]
    return "\n".join(lines) + "\n"
