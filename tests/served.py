"""`tipbox serve` as a real process, for the tests that attack it: started with the settings given, its log kept."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import SECRET, wait_until_responds
from tests.mailsink import Sink, free_port

TIPBOX = str(Path(sys.executable).parent / "tipbox")


@dataclass(frozen=True)
class Served:
    """A running `tipbox serve`: where it answers and where it writes its log."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8", errors="replace").splitlines()


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without any TIPBOX_* variable of the developer's, plus `settings`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TIPBOX_")}
    env.update(settings)
    return env


def smtp_settings(sink: Sink, **settings: str) -> dict[str, str]:
    """Settings for a production-like run relaying to `sink` (plain SMTP on loopback), plus `settings`."""
    return {
        "TIPBOX_SMTP_HOST": "127.0.0.1", "TIPBOX_SMTP_PORT": str(sink.port), "TIPBOX_SMTP_SECURITY": "none",
        "TIPBOX_MAIL_FROM": "tipbox@example.vn", "TIPBOX_MAILBOX": "post@example.vn", "TIPBOX_SECRET_KEY": SECRET,
        **settings,
    }


@contextmanager
def serve(
    folder: Path, settings: dict[str, str], *, host: str = "127.0.0.1", args: Sequence[str] = (),
    prefix: Sequence[str] = (), env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """`tipbox serve` on a free port of `host` with `settings` (and `prefix`, e.g. faketime, before the command)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / f"tipbox-{port}.log"
    command = [*prefix, TIPBOX, "serve", "--host", host, "--port", str(port), *args]
    with log.open("wb") as sink:
        # A session of its own: a prefix such as faketime forks the server, and stopping only the prefix would leave
        # the server running after the test.
        process = subprocess.Popen(
            command, env={**environment(**settings), **(env or {})}, cwd=folder, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_until_responds(f"http://{host}:{port}", process)
            yield Served(process, host, port, log)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
