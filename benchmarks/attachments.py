"""Attachments (issues 3 and 15): cleaning one file, and the service under 20 phones uploading at once.

Run as `.venv/bin/python benchmarks/attachments.py [--runs N] [--requests 20] [--only cleaning|service]
[--case TEXT] [--out FILE]`.

Cleaning: inputs are generated here: phone-like files (a 12 MP JPEG with EXIF/GPS and orientation 6, a 48 MP
JPEG, a 12 MP HEIC, 5 minutes of AAC/MP3/Opus), the worst file each format accepts (at its pixel cap, or tables,
pages and blocks as small as they come), and the attacks of issue 15 (small files declaring huge pictures). Each
case runs in a fresh child process pinned to one core, which receives the file on stdin, so that its peak resident
size is the cleaning's own; the memory the cleaner reserved before decoding is shown beside it. Targets: a 12 MP
photo < 0.5 s; any accepted file <= 200 MB over the process's idle size, and within what it reserved.

Service: a real `tipbox serve` relaying to a real aiosmtpd sink (another process); `--requests` phones each fetch
a form and, all at the same moment, post it: with three 12 MP photos and a 5-minute voice note (15 MB), with the
default upload memory budget and with it lifted; then with the worst files (a 12 MP RGBA PNG at the PNG cap and an
M4A of a million one-byte chunks). Target: peak RSS within the budget (200 MB) + 200 MB.

Prints markdown and writes the figures as JSON to `--out` (outside the repository); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = Path(tempfile.gettempdir()) / "tipbox-benchmarks" / "attachments.json"
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


def recording(fmt: str, codec: str, rate: int, seconds: float, layout: str, fragments: bool = False) -> bytes:
    """With `fragments`, a fragment a second, placed from its moof: MP4 as MediaRecorder writes it."""
    from tests import media

    options = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "1000000"}
    tags = {"title": "benchmark"}
    return media.encode(fmt, codec, rate, seconds, metadata=tags, layout=layout, options=options if fragments else {})


def flat(mode: str, size: tuple[int, int], fmt: str, **options: object) -> bytes:
    """A picture of one colour: the smallest file for its size, so the decode is all there is to measure."""
    import io

    from PIL import Image

    import app.attachments.images  # noqa: F401  (HEIF)

    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 30, 128)[: len(mode)]).save(out, fmt, **options)
    return out.getvalue()


def tiny_pages() -> bytes:
    """Ogg Opus whose audio pages hold one byte each, as many as the page cap allows (14 MB)."""
    import struct

    from tests import media

    data, pos = media.ogg_opus(), 0
    for _ in range(2):  # the identification and comment header pages
        pos += 27 + data[pos + 26] + sum(data[pos + 27 : pos + 27 + data[pos + 26]])
    serial = struct.unpack_from("<I", data, 14)[0]
    page = struct.pack("<4sBBqIIIB", b"OggS", 0, 0, 960, serial, 2, 0, 1) + b"\x01\xf8"
    return data[:pos] + page * 520_000


def tiny_blocks() -> bytes:
    """WebM whose one cluster (of unknown size, as recorders write it) holds 520 000 one-byte blocks."""
    from tests import media

    data = media.webm()
    segment = data.find(b"\x18\x53\x80\x67")
    data = data[: segment + 4] + b"\x01" + b"\xff" * 7 + data[segment + 12 :]  # a segment of unknown size
    cluster = data.find(b"\x1f\x43\xb6\x75")
    head = data[:cluster] + b"\x1f\x43\xb6\x75\x01" + b"\xff" * 7 + b"\xe7\x81\x00"
    return head + b"\xa3\x85\x81\x00\x00\x80\xf8" * 520_000


def worst_cases() -> dict[str, Callable[[], bytes]]:
    from tests import hostile

    return {
        "JPEG 5118x5118 (26 MP: the most a JPEG decodes at full scale)": lambda: flat("RGB", (5118, 5118), "JPEG"),
        "HEIC 5770x4330 (25 MP, the HEIC cap)": lambda: flat("RGB", (5770, 4330), "HEIF", quality=30),
        "PNG RGBA 4000x3000 (12 MP, the PNG cap)": lambda: hostile.png_flat(4000, 3000, colour_type=6),
        "PNG palette 4000x3000 (12 MP)": lambda: hostile.png_flat(4000, 3000),
        "WebP RGBA 3000x2000 (6 MP, the WebP cap)": lambda: flat("RGBA", (3000, 2000), "WEBP", lossless=True),
        "M4A, 2.2 million one-byte chunks (19.8 MB)": lambda: hostile.m4a_chunks(2_200_000),
        "fragmented M4A, one run of 1.64 million 4-byte samples, durations alternating (19.7 MB)": lambda: (
            hostile.m4a_fragmented_samples(1_640_000)
        ),
        "Ogg Opus, 520 000 one-byte pages (14.9 MB)": tiny_pages,
        "WebM Opus, 520 000 one-byte blocks (3.6 MB)": tiny_blocks,
        "MP3, 440 000 24-byte frames (10.6 MB)": lambda: (bytes([0xFF, 0xF3, 0x14, 0xC4]) + bytes(20)) * 440_000,
        "AMR, 530 000 one-byte frames": lambda: b"#!AMR\n" + b"\x7c" * 530_000,
        "refused: WebP declaring 7060x7060 RGBA": lambda: hostile.webp_declaring(7060, 7060),
        "refused: palette PNG of 50 MP": lambda: hostile.png_flat(7071, 7071),
        "refused: RGBA HEIC declaring 50 MP": lambda: hostile.heic_declaring(8165, 6124),
    }


CASES: dict[str, Callable[[], bytes]] = {
    "12 MP JPEG (4000x3000, orientation 6)": lambda: photo(4000, 3000, "JPEG"),
    "48 MP JPEG (8000x6000)": lambda: photo(8000, 6000, "JPEG"),
    "12 MP HEIC (4032x3024)": lambda: photo(4032, 3024, "HEIF"),
    "5 min M4A (AAC 128 kb/s stereo)": lambda: recording("ipod", "aac", 44100, 300, "stereo"),
    "5 min fragmented M4A (AAC 128 kb/s stereo, as MediaRecorder writes MP4)": lambda: recording(
        "mp4", "aac", 44100, 300, "stereo", fragments=True
    ),
    "5 min MP3 (128 kb/s stereo)": lambda: recording("mp3", "libmp3lame", 44100, 300, "stereo"),
    "5 min Ogg Opus": lambda: recording("ogg", "libopus", 48000, 300, "mono"),
    "5 min WebM Opus": lambda: recording("webm", "libopus", 48000, 300, "mono"),
}


def child(runs: int, cpu: int) -> None:
    """Clean the file on stdin `runs` times on one core; print JSON figures."""
    os.sched_setaffinity(0, {cpu})
    data = sys.stdin.buffer.read()
    from app.attachments import AttachmentError, Upload, clean, sniff
    from tests import media

    reserved: list[int] = []

    @contextmanager
    def reserve(size: int) -> Iterator[None]:
        reserved.append(size)
        yield

    # Warm up: plugins imported, codecs initialised, before the high-water mark is reset.
    warm_up = [Upload("f", media.jpeg()), Upload("f", media.heic()), Upload("f", media.m4a())]
    clean(warm_up, max_files=5, max_bytes=10**8)
    uploads = [Upload("file", data)]
    rss_before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:  # resets VmHWM, the peak resident size, to VmRSS
        handle.write("5")
    tracemalloc.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        (first,) = clean(uploads, max_files=1, max_bytes=10**8, reserve=reserve)
    except AttachmentError as error:
        first, runs = None, 1
        refused = error.reason
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
                "out_bytes": len(first.data) if first else 0,
                "out_name": first.filename if first else f"refused: {refused}",
                "reserved_mb": max(reserved, default=0) / 2**20,
                "median_s": statistics.median(seconds),
                "min_s": min(seconds),
                "cpu_s": statistics.median(cpu_seconds),
                "rss_growth_mb": (rss_peak - rss_before) / 1024,
                "rss_peak_mb": rss_peak / 1024,
                "python_peak_mb": python_peak / 2**20,
                "rss_idle_mb": rss_before / 1024,
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
    parser.add_argument("--only", choices=["cleaning", "service"], help="one part only")
    parser.add_argument("--case", help="only the cleaning cases whose label holds this text")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the figures go as JSON ({OUT})")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.runs, args.cpu)
        return
    results: dict[str, object] = {}
    cleaning: list[str] = []
    service: list[str] = []
    if args.only != "service":
        cases = {label: make for label, make in {**CASES, **worst_cases()}.items() if (args.case or "") in label}
        made = {label: make() for label, make in cases.items()}
        cleaning = clean_cases(made, args.runs, args.cpu, results)
    if args.only != "cleaning":
        photo = CASES["12 MP JPEG (4000x3000, orientation 6)"]()
        voice = recording("ipod", "aac", 44100, 310, "stereo")
        phone = [("photo", f"IMG_2024050{n}_1200.jpg", photo, "image/jpeg") for n in range(3)]
        service = upload_load([*phone, ("voice", "Recording 12.m4a", voice, "audio/mp4")], args.requests, results)
    command = " ".join(["benchmarks/attachments.py", *sys.argv[1:]])
    print(section(cleaning, service, command, args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


def clean_cases(made: dict[str, bytes], runs: int, cpu: int, results: dict[str, object]) -> list[str]:
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
        results[label] = result
        print(f"  {label}: {result['median_s']:.3f} s, {result['rss_growth_mb']:.0f} MB", file=sys.stderr, flush=True)
    lines = [
        "| input | in | out | time (median, min) | CPU | peak RSS over idle | reserved first | Python objects peak |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for label, r in rows:
        out = f"{r['out_name']} {r['out_bytes'] / 1e6:.2f} MB" if r["out_bytes"] else r["out_name"]
        lines.append(
            f"| {label} | {r['in_bytes'] / 1e6:.1f} MB | {out} | {r['median_s']:.3f} s ({r['min_s']:.3f} s) "
            f"| {r['cpu_s']:.3f} s | {r['rss_growth_mb']:.0f} MB | {r['reserved_mb']:.0f} MB "
            f"| {r['python_peak_mb']:.1f} MB |"
        )
    return lines


def upload_load(files: list[tuple[str, str, bytes, str]], requests: int, results: dict[str, object]) -> list[str]:
    """The service with its default upload memory budget, then with it lifted, then under the worst files; the
    markdown table's lines."""
    import _uploads  # beside this script

    from tests import hostile, media

    worst = [
        ("photo", "Screenshot_1.png", hostile.png_flat(4000, 3000, colour_type=6), "image/png"),
        ("voice", "Recording 13.m4a", hostile.m4a_chunks(1_000_000), "audio/mp4"),
    ]
    warm_up = [("photo", "a.jpg", media.jpeg(), "image/jpeg"), ("voice", "b.m4a", media.m4a(), "audio/mp4")]
    limits = {"TIPBOX_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES)}
    loads = [
        (_uploads.Load("phones, default budget (200 MB)", limits), files),
        (_uploads.Load("phones, budget lifted (10 GB)", {**limits, "TIPBOX_UPLOAD_MEMORY_BYTES": str(LIFTED_BUDGET)}),
         files),
        (_uploads.Load("worst files, default budget (200 MB)", limits), worst),
    ]  # fmt: skip
    lines = [
        "| run | uploads at once | answers (time to answer) | emails received | email size | wall | RSS warm "
        "| **peak RSS** | RSS after |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for load, sent in loads:
        upload_mb = sum(len(data) for _, _, data, _ in sent) / 1e6
        print(f"service: {load.label}, {requests} x {upload_mb:.1f} MB at once", file=sys.stderr, flush=True)
        done = _uploads.run(load, sent, requests, warm_up)
        results[f"service: {load.label}"] = {
            "statuses": dict(done.statuses), "delivered": done.delivered, "rss_idle_mb": done.rss_idle_mb,
            "rss_warm_mb": done.rss_warm_mb, "peak_mb": done.peak_mb, "rss_after_mb": done.rss_after_mb,
        }  # fmt: skip
        lines.append(_uploads.row(done, upload_mb))
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
        "## Attachments (issues 3 and 15)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `.venv/bin/python {command}` on {cpu}, "
        f"{os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}.",
        "",
    ]
    if cleaning:
        lines += [
            f"Cleaning one file, in a fresh process pinned to one core (cpu {args.cpu}), {args.runs} runs each "
            "(targets: a 12 MP photo < 0.5 s; any accepted file <= 200 MB over the process's idle size, and within "
            "what the cleaner reserved in the upload budget before decoding it):",
            "",
            *cleaning,
            "",
        ]
    if service:
        lines += [
            f"The service under load (target: peak RSS within the budget + 200 MB): a real `tipbox serve` (one "
            f"worker, production settings) relaying to a real aiosmtpd sink in another process; {args.requests} "
            "phones each fetch a form, then all post it at the same moment: with three 12 MP photos and a 5 min "
            "10 s voice note (M4A), 15 MB each; then with the worst files (a 12 MP RGBA PNG at the PNG cap, 60 KB, "
            "and an M4A of a million one-byte chunks, 9 MB). "
            f"`TIPBOX_MAX_UPLOAD_BYTES={MAX_UPLOAD_BYTES}`, rate limits lifted, `TIPBOX_MIN_FILL_SECONDS=0`. "
            "Peak RSS is the server's VmHWM, reset once it had sent a warm-up tip with files; client, server and "
            'sink share the cores. 200: sent (the sink answered 250); 503: "busy, choose the files again", the '
            "text kept; 422: a file refused.",
            "",
            *service,
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
