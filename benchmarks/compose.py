"""The officer's email, in process: composed and serialised by the `email` package (tests/reference.py, what the
relay used before issue 8) against `Composer.compose` (written by app/mime.py).

    .venv/bin/python benchmarks/compose.py [--rounds 7] [--seconds 0.5]

Prints µs per message (best round and median round) for a text-only tip as the throughput benchmark posts it, a
follow-up, and a tip with a 300 KB photo and a 150 KB voice note. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from app import receipts
from app.categories import RECEIPT_TAGS
from app.mail import Attachment, Composer, Tip, as_bytes
from app.settings import Post

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' reference writer
from tests.reference import as_message, serialize

POST = Post("ncs", "Đồn Biên phòng Na Cô Sa", "nacosa@example.vn", ("vi", "hmn"))
SECRET = b"benchmark-secret-key-0123456789abcdef"
WHAT = "Có người lạ bán ma túy ở chợ phiên sáng thứ bảy, đi xe máy không biển số, mang theo một túi đen.\n" * 3


def _tip(follow_up: bool = False) -> Tip:
    code = receipts.new_code(RECEIPT_TAGS["drugs"], SECRET)
    return Tip(
        post=POST, category="drugs", what=WHAT, where="Chợ Na Cô Sa", when="Sáng nay, khoảng 7 giờ", contact="",
        language="vi", received_at=datetime.now(UTC), receipt=code, follow_up_to=code if follow_up else None,
    )  # fmt: skip


def _per_call(action: Callable[[], object], rounds: int, seconds: float) -> tuple[float, float]:
    """(best, median) µs per call over `rounds` rounds of about `seconds` each."""
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 4:  # warm up, and size a round to about `seconds`
        action()
        calls += 1
    per_round = 4 * calls
    figures = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            action()
        figures.append(1e6 * (time.perf_counter() - start) / per_round)
    return min(figures), statistics.median(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    composer = Composer("tipbox@example.vn", SECRET)
    files = [
        Attachment("photo", 1, "photo-1.jpg", "image/jpeg", os.urandom(300_000)),
        Attachment("voice", 1, "voice-1.m4a", "audio/mp4", os.urandom(150_000)),
    ]
    cases = {"text only": (_tip(), []), "follow-up": (_tip(follow_up=True), []), "photo + voice": (_tip(), files)}
    print("| message | bytes | email package (µs) | app.mime (µs) | of which writing the bytes (µs) | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, (tip, attached) in cases.items():
        draft = composer.draft(tip, attached)
        before = _per_call(partial(_reference, composer, tip, attached), args.rounds, args.seconds)
        after = _per_call(partial(composer.compose, tip, attached), args.rounds, args.seconds)
        writing = _per_call(partial(as_bytes, draft), args.rounds, args.seconds)
        size = len(composer.compose(tip, attached).data)
        print(
            f"| {name} | {size:,} | {before[0]:,.0f} (median {before[1]:,.0f}) | {after[0]:,.0f} "
            f"(median {after[1]:,.0f}) | {writing[0]:,.0f} | {before[0] / after[0]:.1f}x |"
        )


def _reference(composer: Composer, tip: Tip, attached: list[Attachment]) -> bytes:
    return serialize(as_message(composer.draft(tip, attached)))


if __name__ == "__main__":
    main()
