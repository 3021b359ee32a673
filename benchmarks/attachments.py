"""Attachments (issue 3): cleaning one file, and the service under 20 phones uploading 15 MB each at once.

Run as `.venv/bin/python benchmarks/attachments.py [--runs N] [--requests 20] [--no-docs]`.

Cleaning: inputs are generated here (a photo-like 12 MP JPEG with EXIF/GPS and orientation 6, a 48 MP JPEG, a
12 MP HEIC, 5 minutes of AAC/MP3/Opus), then each case runs in a fresh child process pinned to one core, which
receives the file on stdin, so that its peak resident size is the cleaning's own. Target: a 12 MP photo < 0.5 s.

Service: a real `tipbox serve` relaying to a real aiosmtpd sink (another process); `--requests` phones each fetch
a form and, all at the same moment, post it with three 12 MP photos and a 5-minute voice note (15 MB). Run with
the default upload memory budget, then with the budget lifted, to show what it holds back. Target: peak RSS of
the service < 400 MB. Prints figures and writes them to docs/benchmarks.md; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## Attachments (issue 3)"
MAX_UPLOAD_BYTES = 16_000_000  # the 15 MB of files, with room to spare
LIFTED_BUDGET = 10_000_000_000


def photo(width: int, height: int, fmt: str) -> bytes:
    """A photo-like picture (gradients, texture, noise) with camera metadata, stored sideways (orientation 6)."""
    import io

    from PIL import Image, ImageFilter

    from tests import media

    small = (width // 8, height // 8)
    red = Image.linear_gradient("L").resize(small)
    green = Image.effect_noise(small, 60).filter(ImageFilter.GaussianBlur(2))
    blue = Image.radial_gradient("L").resize(small)
    base = Image.merge("RGB", (red, green, blue)).resize((width, height), Image.Resampling.BICUBIC)
    grain = Image.effect_noise((width, height), 30).convert("RGB")  # sized like a phone's: 12 MP ~ 3.3 MB
    picture = Image.blend(base, grain, 0.2)
    out = io.BytesIO()
    options = {"quality": 90} if fmt == "JPEG" else {"quality": 60, "enc_params": {"preset": "ultrafast"}}
    picture.save(out, fmt, exif=media.exif(orientation=6).tobytes(), **options)
    return out.getvalue()


def recording(fmt: str, codec: str, rate: int, seconds: float, layout: str) -> bytes:
    from tests import media

    return media.encode(fmt, codec, rate, seconds, metadata={"title": "benchmark"}, layout=layout)


CASES: dict[str, Callable[[], bytes]] = {
    "12 MP JPEG (4000x3000, orientation 6)": lambda: photo(4000, 3000, "JPEG"),
    "48 MP JPEG (8000x6000)": lambda: photo(8000, 6000, "JPEG"),
    "12 MP HEIC (4032x3024)": lambda: photo(4032, 3024, "HEIF"),
    "5 min M4A (AAC 128 kb/s stereo)": lambda: recording("ipod", "aac", 44100, 300, "stereo"),
    "5 min MP3 (128 kb/s stereo)": lambda: recording("mp3", "libmp3lame", 44100, 300, "stereo"),
    "5 min Ogg Opus": lambda: recording("ogg", "libopus", 48000, 300, "mono"),
    "5 min WebM Opus": lambda: recording("webm", "libopus", 48000, 300, "mono"),
}


def child(runs: int, cpu: int) -> None:
    """Clean the file on stdin `runs` times on one core; print JSON figures."""
    os.sched_setaffinity(0, {cpu})
    data = sys.stdin.buffer.read()
    from app.attachments import Upload, clean, sniff
    from tests import media

    # Warm up: plugins imported, codecs initialised, before the high-water mark is reset.
    warm_up = [Upload("f", media.jpeg()), Upload("f", media.heic()), Upload("f", media.m4a())]
    clean(warm_up, max_files=5, max_bytes=10**8)
    uploads = [Upload("file", data)]
    rss_before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:  # resets VmHWM, the peak resident size, to VmRSS
        handle.write("5")
    tracemalloc.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    (first,) = clean(uploads, max_files=1, max_bytes=10**8)
    seconds, cpu_seconds = [time.perf_counter() - started], [time.process_time() - cpu_started]
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = _status_kb("VmHWM")
    for _ in range(runs - 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        clean(uploads, max_files=1, max_bytes=10**8)
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
    print(
        json.dumps(
            {
                "type": sniff(data),
                "in_bytes": len(data),
                "out_bytes": len(first.data),
                "out_name": first.filename,
                "median_s": statistics.median(seconds),
                "min_s": min(seconds),
                "cpu_s": statistics.median(cpu_seconds),
                "rss_growth_mb": (rss_peak - rss_before) / 1024,
                "rss_peak_mb": rss_peak / 1024,
                "python_peak_mb": python_peak / 2**20,
            }
        )
    )


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        line = next(line for line in handle if line.startswith(field + ":"))
    return int(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=min(os.sched_getaffinity(0)))
    parser.add_argument("--requests", type=int, default=20, help="phones uploading at once (20)")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.runs, args.cpu)
        return
    made = {label: make() for label, make in CASES.items()}
    cleaning = clean_cases(made, args.runs, args.cpu)
    photo = made["12 MP JPEG (4000x3000, orientation 6)"]
    voice = recording("ipod", "aac", 44100, 310, "stereo")
    service = upload_load([("photo", f"IMG_2024050{n}_1200.jpg", photo, "image/jpeg") for n in range(3)]
                          + [("voice", "Recording 12.m4a", voice, "audio/mp4")], args.requests)  # fmt: skip
    command = " ".join(["benchmarks/attachments.py", *sys.argv[1:]])
    text = section(cleaning, service, command, args)
    print(text)
    if not args.no_docs:
        write_section(DOC, text)
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)


def clean_cases(made: dict[str, bytes], runs: int, cpu: int) -> list[str]:
    """Each case cleaned in a child process on one core; the markdown table's lines."""
    python = sys.version.split()[0]
    print(f"cleaning attachments: {runs} runs per case, one core (cpu {cpu}), Python {python}", file=sys.stderr)
    rows = []
    for label, data in made.items():
        done = subprocess.run(
            [sys.executable, __file__, "--child", "--runs", str(runs), "--cpu", str(cpu)],
            input=data, capture_output=True, check=True, cwd=ROOT,
        )  # fmt: skip
        result = json.loads(done.stdout)
        rows.append((label, result))
        print(f"  {label}: cleaned in {result['median_s']:.3f} s", file=sys.stderr, flush=True)
    lines = [
        "| input | in | out | time (median, min) | CPU | peak RSS over baseline | Python objects peak |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, r in rows:
        lines.append(
            f"| {label} | {r['in_bytes'] / 1e6:.1f} MB | {r['out_name']} {r['out_bytes'] / 1e6:.2f} MB "
            f"| {r['median_s']:.3f} s ({r['min_s']:.3f} s) | {r['cpu_s']:.3f} s | {r['rss_growth_mb']:.0f} MB "
            f"| {r['python_peak_mb']:.1f} MB |"
        )
    return lines


def upload_load(files: list[tuple[str, str, bytes, str]], requests: int) -> list[str]:
    """The service with its default upload memory budget, then with it lifted; the markdown table's lines."""
    import _uploads  # beside this script

    from tests import media

    upload_mb = sum(len(data) for _, _, data, _ in files) / 1e6
    warm_up = [("photo", "a.jpg", media.jpeg(), "image/jpeg"), ("voice", "b.m4a", media.m4a(), "audio/mp4")]
    limits = {"TIPBOX_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES)}
    loads = [
        _uploads.Load("default budget (200 MB)", limits),
        _uploads.Load("budget lifted (10 GB)", {**limits, "TIPBOX_UPLOAD_MEMORY_BYTES": str(LIFTED_BUDGET)}),
    ]
    lines = [
        "| run | uploads at once | answers (time to answer) | emails received | email size | wall | RSS warm "
        "| **peak RSS** | RSS after |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for load in loads:
        print(f"service: {load.label}, {requests} x {upload_mb:.1f} MB at once", file=sys.stderr, flush=True)
        lines.append(_uploads.row(_uploads.run(load, files, requests, warm_up), upload_mb))
    return lines


def section(cleaning: list[str], service: list[str], command: str, args: argparse.Namespace) -> str:
    """The markdown for docs/benchmarks.md."""
    import platform
    from datetime import UTC, datetime

    cpu = next(
        (line.partition(":")[2].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), "unknown CPU",
    )  # fmt: skip
    lines = [
        HEADING,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `.venv/bin/python {command}` on {cpu}, "
        f"{os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}.",
        "",
        f"Cleaning one file, in a fresh process pinned to one core (cpu {args.cpu}), {args.runs} runs each "
        "(target: a 12 MP photo < 0.5 s):",
        "",
        *cleaning,
        "",
        f"The service under load (target: peak RSS < 400 MB): a real `tipbox serve` (one worker, production "
        f"settings) relaying to a real aiosmtpd sink in another process; {args.requests} phones each fetch a form, "
        "then all post it at the same moment with three 12 MP photos and a 5 min 10 s voice note (M4A) — 15 MB "
        f"each, `TIPBOX_MAX_UPLOAD_BYTES={MAX_UPLOAD_BYTES}`, rate limits lifted, `TIPBOX_MIN_FILL_SECONDS=0`. "
        "Peak RSS is the server's VmHWM, reset once it had sent a warm-up tip with files; client, server and sink "
        'share the cores. 200: sent (the sink answered 250); 503: "busy, choose the files again", the text kept. '
        "The server cleans one submission's files at a time and sets glibc's mmap threshold to 128 KiB "
        '(`app/budget.py`), so freed upload buffers go back to the system ("RSS after").',
        "",
        *service,
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Replace this benchmark's section of `path` (from HEADING to the next `## `), or append it."""
    document = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    lines = document.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == HEADING), None)
    if start is None:
        document = document.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        rest = "".join(lines[end:])
        document = "".join(lines[:start]) + text + ("\n" + rest if rest else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")


if __name__ == "__main__":
    main()
