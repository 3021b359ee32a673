"""The SMTP side of the throughput benchmark: a real aiosmtpd sink, and the relay's floor (raw aiosmtplib).

Each runs in a process of its own, pinned to a core by the caller, so that its CPU time is never counted as the
service's. Both use uvloop, as the service does.
"""

from __future__ import annotations

import asyncio
import os
import time
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

SAMPLES_KEPT = 3


class CountingHandler:
    """Accepts every message with 250 after DATA; counts them and keeps the first few on disk as samples."""

    def __init__(self, count: Synchronized[int], samples: Path) -> None:
        self.count = count
        self.samples = samples
        self._kept = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._kept < SAMPLES_KEPT:
            self._kept += 1
            data = bytes(envelope.original_content)
            (self.samples / f"sample-{self._kept}.eml").write_bytes(data)
            (self.samples / f"envelope-{self._kept}.txt").write_text(
                "\n".join([envelope.mail_from, *envelope.rcpt_tos]), encoding="utf-8"
            )
        self.count.value += 1
        return "250 2.0.0 accepted"


def run_sink(port: int, count: Synchronized[int], samples: str, cpu: int | None) -> None:
    """Serve SMTP on 127.0.0.1:`port` until terminated (a multiprocessing target)."""
    import uvloop
    from aiosmtpd.smtp import SMTP

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    handler = CountingHandler(count, Path(samples))
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(lambda: SMTP(handler, hostname="sink.bench.invalid"), "127.0.0.1", port, backlog=1024)
    )
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


async def _floor(
    port: int, data: bytes, sender: str, recipients: list[str], concurrency: int, seconds: float
) -> dict[str, Any]:
    import aiosmtplib

    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                await aiosmtplib.send(
                    data, sender=sender, recipients=recipients, hostname="127.0.0.1", port=port,
                    use_tls=False, start_tls=False, timeout=20.0,
                )
            except (aiosmtplib.SMTPException, OSError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"sent": len(latencies), "seconds": time.perf_counter() - began, "latencies": latencies, "errors": errors}


def run_floor(
    port: int, data: bytes, sender: str, recipients: list[str], concurrency: int, cpu: int | None, channel: Any
) -> None:
    """Send `data` over `concurrency` connections, a new one per message (a multiprocessing target).

    Says "ready" once imported and pinned; then each number received is a slice of that many seconds to send for,
    answered with its outcome, until "stop". The caller's CPU window covers the sending only, not the start.
    """
    import resource

    import aiosmtplib  # noqa: F401 (imported before "ready")
    import uvloop

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    channel.send("ready")
    while (seconds := channel.recv()) != "stop":
        before = resource.getrusage(resource.RUSAGE_SELF)
        outcome = uvloop.run(_floor(port, data, sender, recipients, concurrency, float(seconds)))
        after = resource.getrusage(resource.RUSAGE_SELF)
        outcome["cpu_seconds"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        channel.send(outcome)
    channel.close()
