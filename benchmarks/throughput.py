"""Throughput and footprint of tipbox beside its own stack's floor, in one run (issue 8). `make bench` runs it.

On 127.0.0.1 it starts (a) a bare Starlette `PlainTextResponse` app and (b) `tipbox serve`, both with tipbox's
production uvicorn settings, and (c) a real aiosmtpd sink in a process of its own. wrk drives the GET form page
(ratio to (a)) and tip POSTs that end in SMTP 250 and the success page (ratio to raw aiosmtplib sending the same
message to the same sink over as many connections, a new one per message: the relay's floor). It reports RSS
before and after the load and the bytes each page takes on the wire, and writes them to build/bench/throughput.md
(untracked: the curated table in docs/benchmarks.md is edited by hand from it).

The server under test is pinned to one core and wrk and the sink to the other (`--no-pin` to let the scheduler
place them). Each measurement runs `--rounds` times; a ratio always compares two figures of the same round.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _http
import _profile
import _report
import _smtp
from _procfs import Snapshot, Usage, core_times, memory_mb
from _report import Layout, Measurement

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "_wrk.lua"
RESULTS = ROOT / "build" / "bench" / "throughput.md"  # /build/ is gitignored
SENDER, MAILBOX = "tipbox@bench.invalid", "post@bench.invalid"
LIFTED_RATE = "1000000/hour"
CAPTURE_MAX = 500_000


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement (default 8, at most 10)")
    parser.add_argument("--rounds", type=int, default=2, help="times each measurement runs (default 2)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of untimed load per server first")
    parser.add_argument(
        "--slices", type=int, default=4,
        help="each round's GET measurements run interleaved in this many slices (default 4)",
    )
    parser.add_argument("--get-connections", type=int, default=64)
    parser.add_argument("--post-connections", type=int, default=16, help="also the floor's concurrent senders")
    parser.add_argument("--server-cpu", type=int, default=0, help="core for the server under test (default 0)")
    parser.add_argument("--load-cpu", type=int, default=1, help="core for wrk and the SMTP sink (default 1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--settle", type=float, default=15.0,
                        help="before each measurement, wait up to this many seconds for both cores to be quiet")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="afterwards, sample tipbox with py-spy into DIR")
    parser.add_argument("--no-docs", action="store_true", help="print the section only; write no results file")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 10 or not 1 <= args.rounds <= 5:
        parser.error("--duration must be 1-10 s and --rounds 1-5 (the machine is shared)")
    if not 1 <= args.slices <= 8 or args.duration / args.slices < 0.5:
        parser.error("--slices must be 1-8, each at least 0.5 s")
    return args


class Bench:
    """The processes of one benchmark run, and the measurements taken on them."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
        self.layout = Layout(args.server_cpu if pin else None, args.load_cpu if pin else None)
        self.wrk = shutil.which("wrk") or sys.exit("throughput: wrk is missing (apt-get install wrk; `make bench`)")
        self.context = multiprocessing.get_context("spawn")
        self.delivered = self.context.Value("Q", 0)
        self.samples = tmp / "samples"
        self.samples.mkdir()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.sink: Any = None
        self.ports: dict[str, int] = {}
        self.runs: list[Measurement] = []
        self.memory: list[tuple[str, dict[str, float]]] = []
        self.wire: list[tuple[str, str, int, int, str]] = []
        self.message: bytes = b""
        self.envelope: tuple[str, list[str]] = (SENDER, [MAILBOX])
        self.token_field = False
        self.busy_note: str | None = None
        self.tips = 0  # delivered through tipbox (the sink also counts the floor's messages)
        self._seq = 0

    # -- processes ---------------------------------------------------------------------------------------------

    def pin(self, core: int | None) -> list[str]:
        return ["taskset", "-c", str(core)] if core is not None else []

    @property
    def pids(self) -> dict[str, int]:
        found = {name: process.pid for name, process in self.processes.items()}
        if self.sink is not None and self.sink.pid is not None:
            found["sink"] = self.sink.pid
        return found

    def start(self) -> None:
        self.ports = {name: _http.free_port() for name in ("sink", "bare", "tipbox")}
        self.sink = self.context.Process(
            target=_smtp.run_sink,
            args=(self.ports["sink"], self.delivered, str(self.samples), self.layout.load_core),
            daemon=True,
        )
        self.sink.start()
        _http.wait_for_port(self.ports["sink"], self.sink.is_alive)
        self._spawn("bare", [sys.executable, str(HERE / "_bare.py"), str(self.ports["bare"])], os.environ.copy())
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
        env.update(
            TIPBOX_SMTP_HOST="127.0.0.1", TIPBOX_SMTP_PORT=str(self.ports["sink"]), TIPBOX_SMTP_SECURITY="none",
            TIPBOX_MAIL_FROM=SENDER, TIPBOX_MAILBOX=MAILBOX, TIPBOX_SECRET_KEY=secrets.token_urlsafe(32),
            TIPBOX_MIN_FILL_SECONDS="0", TIPBOX_POST_RATE=LIFTED_RATE, TIPBOX_SOURCE_RATE=LIFTED_RATE,
        )
        tipbox = Path(sys.executable).parent / "tipbox"
        self._spawn("tipbox", [str(tipbox), "serve", "--host", "127.0.0.1", "--port", str(self.ports["tipbox"])], env)
        for name in ("bare", "tipbox"):
            try:
                _http.wait_until_responds(self.ports[name], lambda name=name: self.processes[name].poll() is None)
            except (RuntimeError, TimeoutError) as exc:
                log = (self.tmp / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-3000:]
                raise RuntimeError(f"{name} did not start: {exc}\n{log}") from None

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        with (self.tmp / f"{name}.log").open("wb") as log:
            self.processes[name] = subprocess.Popen(
                [*self.pin(self.layout.server_core), *command], env=env, cwd=self.tmp, stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self.sink is not None:
            self.sink.terminate()
            self.sink.join(timeout=5)
            if self.sink.is_alive():
                self.sink.kill()
                self.sink.join(timeout=5)

    # -- wrk ---------------------------------------------------------------------------------------------------

    def wait_quiet(self, threshold: float = 0.25) -> str | None:
        """Wait (bounded by --settle) until other work leaves both cores mostly idle; a note if it never did."""
        deadline = time.monotonic() + self.args.settle
        while True:
            before = core_times()
            time.sleep(0.5)
            busy = [(b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
                    for (b0, _, t0), (b1, _, t1) in zip(before, core_times(), strict=True)]
            if max(busy) < threshold:
                return None
            if time.monotonic() > deadline:
                shares = ", ".join(f"{100 * b:.0f} %" for b in busy)
                return f"started on a busy machine (cores busy {shares} before the run)"


    def run_wrk(
        self, port: int, path: str, *, connections: int, seconds: float, mode: str, headers: dict[str, str],
        env: dict[str, str] | None = None,
    ) -> tuple[dict[str, Any], Usage]:
        self._seq += 1
        result = self.tmp / f"wrk-{self._seq}.json"
        command = [*self.pin(self.layout.load_core), self.wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s",
                   "--timeout", "10s", "-s", str(LUA)]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        command.append(f"http://127.0.0.1:{port}{path}")
        environment = {**os.environ, "BENCH_MODE": mode, "BENCH_RESULT": str(result), **(env or {})}
        self.busy_note = self.wait_quiet() if seconds == self.args.duration else None
        before = Snapshot.take(self.pids)
        with (self.tmp / f"wrk-{self._seq}.out").open("wb") as out:
            process = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT)
        rusage = _reap(process, seconds + 30)
        usage = Usage.between(before, Snapshot.take(self.pids))
        usage.cpu["load"] = rusage.ru_utime + rusage.ru_stime
        if process.returncode != 0 or not result.exists():
            output = (self.tmp / f"wrk-{self._seq}.out").read_text(errors="replace")
            raise RuntimeError(f"wrk failed ({process.returncode}): {output}")
        return json.loads(result.read_text()), usage

    def _from_wrk(
        self, kind: str, label: str, round_: int, figures: dict[str, Any], usage: Usage, server: str, ok: int
    ) -> Measurement:
        run = Measurement(
            kind, label, round_, ok, figures["duration_us"] / 1e6, figures["p50_us"] / 1000, figures["p99_us"] / 1000,
            server, usage, bytes_per=figures["bytes"] / figures["requests"] if figures["requests"] else None,
        )
        errors = {k: v for k, v in figures["errors"].items() if v}
        if errors:
            run.notes.append(f"wrk errors {errors}")
        if self.busy_note:
            run.notes.append(self.busy_note)
        others = {code: n for code, n in figures["statuses"].items() if code != "200"}
        if others:
            run.notes.append(f"non-200 answers {others}")
        self.runs.append(run)
        return run

    # -- measurements ------------------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Untimed: load each server briefly, and send a few tips (the sink keeps them as the floor's message)."""
        self.memory.append(("started (health check answered)", memory_mb(self.pids["tipbox"])))
        for number in range(3):
            page = _http.request(self.ports["tipbox"], "GET", "/", _http.PHONE_HEADERS)
            fields, _ = _http.hidden_fields(page.body.decode("utf-8"))
            self.token_field = self.token_field or bool(fields)
            body = _http.tip_body(fields, "warm", number)
            answer = _http.request(self.ports["tipbox"], "POST", "/", _http.tip_headers(), body)
            if answer.status != 200:
                raise RuntimeError(f"a warm-up tip was not sent: HTTP {answer.status}")
        _wait_for(lambda: self.delivered.value >= 3, 10, "the sink to receive the warm-up tips")
        self.tips += 3
        self.message = (self.samples / "sample-1.eml").read_bytes()
        sender, *recipients = (self.samples / "envelope-1.txt").read_text(encoding="utf-8").splitlines()
        self.envelope = (sender, recipients)
        seconds = self.args.warmup
        self.run_wrk(self.ports["bare"], "/", connections=self.args.get_connections, seconds=seconds, mode="plain",
                     headers=_http.PHONE_HEADERS)
        self.run_wrk(self.ports["tipbox"], "/", connections=self.args.get_connections, seconds=seconds,
                     mode="plain", headers={**_http.PHONE_HEADERS, **_http.GZIP})
        self.memory.append(("idle, warm (forms served, 3 tips sent)", memory_mb(self.pids["tipbox"])))

    def gets(self, round_: int, forms: Path) -> None:
        """The round's three GET measurements, interleaved: bare, identity, gzip, bare, identity... in `--slices`
        slices each, so that the machine speeding up or slowing down during the round affects all three alike.

        The identity slices keep every served form's hidden fields in `forms`, for the round's POSTs.
        """
        busy = self.wait_quiet()
        seconds, connections = self.args.duration / self.args.slices, self.args.get_connections
        phone, gzip = _http.PHONE_HEADERS, {**_http.PHONE_HEADERS, **_http.GZIP}
        parts: dict[str, list[tuple[dict[str, Any], Usage]]] = {"bare": [], "get": [], "get_gzip": []}
        captures = []
        for number in range(self.args.slices):
            parts["bare"].append(
                self.run_wrk(self.ports["bare"], "/", connections=connections, seconds=seconds, mode="plain",
                             headers=phone)
            )
            captures.append(self.tmp / f"forms-{round_}-{number}.txt")
            env = {"BENCH_CAPTURE": str(captures[-1]), "BENCH_CAPTURE_MAX": str(CAPTURE_MAX)}
            parts["get"].append(
                self.run_wrk(self.ports["tipbox"], "/", connections=connections, seconds=seconds, mode="capture",
                             headers=phone, env=env)
            )
            parts["get_gzip"].append(
                self.run_wrk(self.ports["tipbox"], "/", connections=connections, seconds=seconds, mode="plain",
                             headers=gzip)
            )
        with forms.open("w", encoding="utf-8") as out:
            for capture in captures:
                out.write(capture.read_text(encoding="utf-8") if capture.exists() else "")
        self.busy_note = busy
        labels = {
            "bare": ("(a) bare Starlette plaintext GET", "bare"),
            "get": ("(b) tipbox GET form, identity", "tipbox"),
            "get_gzip": ("(b) tipbox GET form, gzip (as phones ask)", "tipbox"),
        }
        for kind, (label, server) in labels.items():
            figures = _merged([figures for figures, _ in parts[kind]])
            usage = Usage.combined([usage for _, usage in parts[kind]])
            if kind == "get":  # only a form page counts (wrk's status errors count 4xx and 5xx only)
                ok = int(figures["statuses"].get("200", 0))
            else:
                ok = figures["requests"] - figures["errors"]["status"]
            self._from_wrk(kind, label, round_, figures, usage, server, ok)

    def get_form(self, round_: int, forms: Path) -> None:
        """The form page, uncompressed, in one run (--profile); its served forms' hidden fields are kept."""
        env = {"BENCH_CAPTURE": str(forms), "BENCH_CAPTURE_MAX": str(CAPTURE_MAX)}
        figures, usage = self.run_wrk(self.ports["tipbox"], "/", connections=self.args.get_connections,
                                      seconds=self.args.duration, mode="capture", headers=_http.PHONE_HEADERS,
                                      env=env)
        ok = int(figures["statuses"].get("200", 0))
        self._from_wrk("get", "(b) tipbox GET form, identity", round_, figures, usage, "tipbox", ok)

    def get_form_gzip(self, round_: int) -> None:
        """The form page, compressed, in one run (--profile)."""
        figures, usage = self.run_wrk(self.ports["tipbox"], "/", connections=self.args.get_connections,
                                      seconds=self.args.duration, mode="plain",
                                      headers={**_http.PHONE_HEADERS, **_http.GZIP})
        ok = figures["requests"] - figures["errors"]["status"]
        self._from_wrk("get_gzip", "(b) tipbox GET form, gzip (as phones ask)", round_, figures, usage, "tipbox", ok)

    def posts(self, round_: int, forms: Path) -> None:
        """The round's floor and tipbox POST measurements, interleaved in `--slices` slices each (floor, POST,
        floor, POST...), as `gets` does; each POST slice sends its own share of the forms `gets` kept."""
        mine, theirs = self.context.Pipe()
        sender, recipients = self.envelope
        process = self.context.Process(
            target=_smtp.run_floor,
            args=(self.ports["sink"], self.message, sender, recipients, self.args.post_connections,
                  self.layout.server_core, theirs),
            daemon=True,
        )
        process.start()
        seconds = self.args.duration / self.args.slices
        lines = forms.read_text(encoding="utf-8").splitlines(keepends=True) if forms.exists() else []
        share = len(lines) // self.args.slices
        floors: list[tuple[dict[str, Any], Usage]] = []
        tips: list[tuple[dict[str, Any], Usage, int]] = []
        try:
            if not mine.poll(60) or mine.recv() != "ready":
                raise RuntimeError("the aiosmtplib floor did not start")
            busy = self.wait_quiet()
            for number in range(self.args.slices):
                before = Snapshot.take(self.pids)
                mine.send(seconds)
                if not mine.poll(seconds + 60):
                    raise RuntimeError("the aiosmtplib floor did not finish")
                outcome = mine.recv()
                usage = Usage.between(before, Snapshot.take(self.pids))
                usage.cpu["floor"] = outcome["cpu_seconds"]
                floors.append((outcome, usage))
                chunk = self.tmp / f"forms-{round_}-post-{number}.txt"
                chunk.write_text("".join(lines[number * share : (number + 1) * share]), encoding="utf-8")
                tips.append(self._post_slice(chunk, seconds))
            mine.send("stop")
        finally:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        latencies = sorted(latency for outcome, _ in floors for latency in outcome["latencies"])
        errors: dict[str, int] = {}
        for outcome, _ in floors:
            for name, count in outcome["errors"].items():
                errors[name] = errors.get(name, 0) + count
        run = Measurement(
            "floor", f"raw aiosmtplib, {self.args.post_connections} senders, new connection each", round_,
            sum(outcome["sent"] for outcome, _ in floors), sum(outcome["seconds"] for outcome, _ in floors),
            1000 * _percentile(latencies, 50), 1000 * _percentile(latencies, 99), "floor",
            Usage.combined([usage for _, usage in floors]),
        )
        if errors:
            run.notes.append(f"send errors {errors}")
        if busy:
            run.notes.append(busy)
        self.runs.append(run)
        self.busy_note = busy
        figures = _merged([figures for figures, _, _ in tips])
        usage = Usage.combined([usage for _, usage, _ in tips])
        self._post_measurement(round_, figures, usage, sum(delivered for _, _, delivered in tips), len(lines))

    def _post_slice(self, forms: Path, seconds: float) -> tuple[dict[str, Any], Usage, int]:
        """wrk sending a tip with each form in `forms`, for `seconds`; and how many messages the sink received."""
        run_id = secrets.token_hex(3)
        body = self.tmp / f"body-{run_id}.bin"
        body.write_bytes("\0".join(_http.tip_template(run_id)).encode("utf-8"))
        env = {"BENCH_FORMS": str(forms), "BENCH_BODY": str(body), "BENCH_BOUNDARY": _http.BOUNDARY}
        before = self.delivered.value
        figures, usage = self.run_wrk(self.ports["tipbox"], "/", connections=self.args.post_connections,
                                      seconds=seconds, mode="post",
                                      headers={**_http.PHONE_HEADERS, **_http.GZIP}, env=env)
        return figures, usage, _settled(self.delivered) - before

    def _post_measurement(
        self, round_: int, figures: dict[str, Any], usage: Usage, delivered: int, available: int,
        label: str = "(b) tipbox POST tip → SMTP 250 → success page",
    ) -> None:
        self.tips += delivered
        answered = int(figures["statuses"].get("200", 0))
        # A tip counts once wrk got the success page and the sink got the message (a decoy page is also a 200).
        run = self._from_wrk("post", label, round_, figures, usage, "tipbox", min(answered, delivered))
        if delivered < answered:
            run.notes.append(f"{answered - delivered} success pages without a delivery (decoys?)")
        if figures["exhausted"]:
            run.notes.append(f"ran out of the {available} form tokens: the rate is a lower bound")

    def post_tip(self, round_: int, forms: Path) -> None:
        """Tips sent with the forms in `forms`, in one run (--profile)."""
        available = sum(1 for _ in forms.open(encoding="utf-8")) if forms.exists() else 0
        figures, usage, delivered = self._post_slice(forms, self.args.duration)
        self._post_measurement(round_, figures, usage, delivered, available)

    def wire_bytes(self) -> None:
        """Each page once on a fresh connection (`Connection: close` adds that header to the answer)."""
        phone, gzip = _http.PHONE_HEADERS, {**_http.PHONE_HEADERS, **_http.GZIP}
        bare = _http.request(self.ports["bare"], "GET", "/", phone)
        self.wire.append(("(a) bare plaintext", "identity", bare.head_bytes, len(bare.body), "bare"))
        port = self.ports["tipbox"]
        for name, headers, kind in (("identity", phone, "get"), ("gzip", gzip, "get_gzip")):
            page = _http.request(port, "GET", "/", headers)
            self.wire.append(("tipbox form page", name, page.head_bytes, len(page.body), kind))
        script = None
        for name, compress, kind in (("identity", False, ""), ("gzip", True, "post")):
            fields, script = _http.hidden_fields(_http.request(port, "GET", "/", phone).body.decode("utf-8"))
            body = _http.tip_body(fields, "wire", len(self.wire))
            sent = _http.request(port, "POST", "/", _http.tip_headers(compress), body)
            self.tips += sent.status == 200
            self.wire.append((f"tipbox success page (HTTP {sent.status})", name, sent.head_bytes, len(sent.body), kind))
        if script:
            js = _http.request(port, "GET", script, gzip)
            encoding = js.headers.get("content-encoding", "identity")
            self.wire.append((f"tipbox script, cached a year (HTTP {js.status})", encoding, js.head_bytes,
                              len(js.body), ""))

    def measure(self) -> None:
        self.warm_up()
        self.wire_bytes()
        for round_ in range(1, self.args.rounds + 1):
            forms = self.tmp / f"forms-{round_}.txt"
            self.gets(round_, forms)
            if round_ == 1:
                self.memory.append(("after the GET load", memory_mb(self.pids["tipbox"])))
            self.posts(round_, forms)
            _log(f"round {round_} done")
        self.memory.append((f"after all the load ({self.tips:,} tips relayed)",
                            memory_mb(self.pids["tipbox"])))

    def profile(self, directory: Path) -> None:
        """Sample tipbox with py-spy under the GET (identity, gzip) and POST loads; untimed, not in the tables."""
        py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
        if py_spy is None:
            _log("--profile: py-spy not found (pip install py-spy, or set PY_SPY); skipped")
            return
        directory.mkdir(parents=True, exist_ok=True)
        forms = self.tmp / "forms-profile.txt"
        pid, seconds = self.pids["tipbox"], self.args.duration
        steps = (
            ("get", lambda: self.get_form(0, forms)),
            ("get_gzip", lambda: self.get_form_gzip(0)),
            ("post", lambda: self.post_tip(0, forms)),
        )
        settle, self.args.settle = self.args.settle, 0.0  # wait for quiet before the sampler starts, not after
        for name, step in steps:
            self.wait_quiet()
            recorder = _profile.start(
                py_spy, pid, seconds + 1, directory / f"{name}.txt", self.pin(self.layout.load_core)
            )
            step()
            recorder.wait(timeout=seconds + 30)
            self.runs.pop()  # a profiled run is slowed by the sampler: never reported
            summary = _profile.summarize(directory / f"{name}.txt")
            (directory / f"{name}-summary.txt").write_text(summary, encoding="utf-8")
            print(summary)
        self.args.settle = settle


# -- helpers -------------------------------------------------------------------------------------------------------


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.05)


def _settled(counter: Any, quiet: float = 0.5, timeout: float = 30.0) -> int:
    """The counter's value once it has not moved for `quiet` seconds (tips still in flight when wrk stopped)."""
    deadline = time.monotonic() + timeout
    value, since = counter.value, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if counter.value != value:
            value, since = counter.value, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return int(value)


def _reap(process: subprocess.Popen[bytes], timeout: float) -> Any:
    """Wait for `process` and return its resource usage (its CPU time, after it exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return rusage
        time.sleep(0.02)
    process.kill()
    _, status, rusage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return rusage


def _merged(slices: list[dict[str, Any]]) -> dict[str, Any]:
    """wrk's figures of several slices as one run: counts added; p50 the median of the slices', p99 the highest."""
    merged: dict[str, Any] = {"errors": {}, "statuses": {}}
    for figures in slices:
        for key in ("duration_us", "requests", "bytes", "captured"):
            merged[key] = merged.get(key, 0) + figures[key]
        for group in ("errors", "statuses"):
            for name, count in figures[group].items():
                merged[group][name] = merged[group].get(name, 0) + count
    merged["p50_us"] = _percentile(sorted(figures["p50_us"] for figures in slices), 50)
    merged["p99_us"] = max(figures["p99_us"] for figures in slices)
    merged["exhausted"] = any(figures["exhausted"] for figures in slices)
    return merged


def _percentile(ordered: list[float], percent: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


def _log(text: str) -> None:
    print(f"throughput: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    python = Path(sys.executable)
    python_text = str(python.relative_to(ROOT)) if python.is_relative_to(ROOT) else "python"
    command = os.environ.get("BENCH_COMMAND") or " ".join([python_text, "benchmarks/throughput.py", *sys.argv[1:]])
    with tempfile.TemporaryDirectory(prefix="tipbox-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        if bench.layout.load_core is not None:
            os.sched_setaffinity(0, {bench.layout.load_core})
        try:
            bench.start()
            bench.measure()
            if args.profile is not None:
                bench.profile(args.profile)
        finally:
            bench.stop()
        text = _report.section(bench, command, LIFTED_RATE)
    print(text)
    if not args.no_docs:
        _report.write_section(RESULTS, text)
        _log(f"wrote {RESULTS.relative_to(ROOT)} (docs/benchmarks.md is edited by hand)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
