"""app/cli.py: what `tipbox serve` sets up for the process before it serves (the rest: tests/test_serve.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest

from tests.helpers import hidden_fields, wait_until_responds
from tests.mailsink import free_port

pytestmark = pytest.mark.e2e

UPLOADS, UPLOAD_BYTES, BURSTS = 20, 15_000_000, 3


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """`tipbox serve` as a real process: its URL and process id."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIPBOX_", "MALLOC_"))}
    env.update(TIPBOX_DEV_MAILBOX=str(tmp_path / "mailbox"), TIPBOX_MIN_FILL_SECONDS="0")
    command = [str(Path(sys.executable).parent / "tipbox"), "serve", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_responds(url, process)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_after_a_burst_of_uploads_tipbox_serve_gives_the_memory_back(serve: tuple[str, int]) -> None:
    # Large request bodies are held in memory while they are read (never on disk). glibc would keep their freed
    # buffers in its heap for good once the first was freed (its mmap threshold grows): `tipbox serve` fixes the
    # threshold as the process starts, so the process shrinks back once the burst is over.
    url, pid = serve
    with httpx2.Client(timeout=120) as client:
        fields = hidden_fields(client.get(url + "/").text)

        def upload(number: int, size: int = UPLOAD_BYTES) -> int:
            junk = bytes([number]) * size  # refused as "not a photo" without decoding: memory, not CPU
            data = {**fields, "category": "other", "what": f"burst {number}"}
            return client.post(url + "/", data=data, files={"photo": ("a.jpg", junk, "image/jpeg")}).status_code

        assert upload(0, 100_000) == 422  # every page and path the burst takes, warmed up
        idle = _rss_mb(pid)
        statuses = []
        for _ in range(BURSTS):
            with ThreadPoolExecutor(UPLOADS) as pool:
                statuses += pool.map(upload, range(UPLOADS))
    assert set(statuses) <= {422, 503} and 422 in statuses  # refused, or "busy": each answered with the form
    after = _rss_mb(pid)
    assert after < idle + 8, f"idle {idle:.0f} MB, {after:.0f} MB after {BURSTS} x {UPLOADS} uploads of 15 MB"
