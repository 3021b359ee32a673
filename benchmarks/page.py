"""Page weight and time to a usable form on one bar of mobile data.

    .venv/bin/python benchmarks/page.py [--runs 3]

1. Bytes of each page as served by `tipbox serve` (a real uvicorn process relaying to a local SMTP sink):
   compressed (gzip, as phones ask for it) and uncompressed.
2. Time until the form can be used, in Debian's Chromium (Zalo's user agent, 360x640), with the network
   throttled by CDP network emulation to 400 kbit/s both ways and 400 ms round trip; a fresh phone (no cache)
   every run. The same for a typical alternative: a 1 MB page (an app shell whose 200 KB stylesheet and 800 KB
   script build the form), served locally.

Prints Markdown for docs/benchmarks.md ("Page weight"). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import http.server
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
from aiosmtpd.controller import Controller
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ZALO_UA = (
    "Mozilla/5.0 (Linux; Android 10; SM-A105F Build/QP1A; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/80.0.3987.99 Mobile Safari/537.36 Zalo android/12100728 ZaloTheme/light ZaloLanguage/vi"
)
KBPS = 400
RTT_MS = 400


class _Accept:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 accepted"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_tipbox(workdir: Path) -> tuple[subprocess.Popen[bytes], str, Controller]:
    smtp = Controller(_Accept(), hostname="127.0.0.1", port=_free_port())
    smtp.start()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
    env.update(
        TIPBOX_SMTP_HOST="127.0.0.1", TIPBOX_SMTP_PORT=str(smtp.port), TIPBOX_SMTP_SECURITY="none",
        TIPBOX_MAIL_FROM="tipbox@example.vn", TIPBOX_MAILBOX="post@example.vn",
        TIPBOX_SECRET_KEY=secrets.token_urlsafe(32), TIPBOX_MIN_FILL_SECONDS="0",
    )
    tipbox = Path(sys.executable).parent / "tipbox"
    process = subprocess.Popen([str(tipbox), "serve", "--port", str(port)], env=env, cwd=workdir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx2.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url, smtp
        except httpx2.TransportError:
            time.sleep(0.1)
    raise SystemExit("tipbox serve did not answer")


def _sizes(client: httpx2.Client, method: str, url: str, **kwargs: Any) -> tuple[int, int, int]:
    """(status, compressed bytes on the wire, uncompressed bytes) of one response."""
    with client.stream(method, url, headers={"Accept-Encoding": "gzip"}, **kwargs) as response:
        wire = sum(len(chunk) for chunk in response.iter_raw())
        status = response.status_code
    plain = client.request(method, url, headers={"Accept-Encoding": "identity"}, **kwargs) if method == "GET" else None
    if plain is not None:
        return status, wire, len(plain.content)
    with client.stream(method, url, headers={"Accept-Encoding": "gzip"}, **kwargs) as again:
        return status, wire, len(again.read())


def _hidden(html: str) -> dict[str, str]:
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
    fields["hp_extra"] = ""
    return fields


def page_weights(url: str) -> list[tuple[str, int, int, int]]:
    rows = []
    with httpx2.Client() as client:
        for name, path in (("form (vi)", "/"), ("form (hmn)", "/?lang=hmn")):
            rows.append((name, *_sizes(client, "GET", url + path)))
        html = client.get(url + "/").text
        rows.append(("form with problems (422)", *_sizes(client, "POST", url + "/", data=_hidden(html))))
        tip = {**_hidden(client.get(url + "/").text), "category": "drugs", "what": "Có người bán ma túy ở chợ."}
        rows.append(("sent page", *_sizes(client, "POST", url + "/", data=tip)))
        rows.append(("leave-quickly page", *_sizes(client, "GET", url + "/calendar")))
        rows.append(("not found (404)", *_sizes(client, "GET", url + "/p/nowhere")))
        script = re.search(r'<script src="([^"]+)"', html)
        if script:
            rows.append(("script (optional, cached a year)", *_sizes(client, "GET", url + script.group(1))))
    return rows


class _Heavy(http.server.BaseHTTPRequestHandler):
    """The comparison: a 1 MB page (incompressible, as images and minified bundles mostly are once gzipped)."""

    css = "/*" + secrets.token_hex(100 * 1024) + "*/ body{font-family:sans-serif} button{font-size:20px}"
    js = ("/*" + secrets.token_hex(400 * 1024) + "*/ document.getElementById('app').innerHTML = "
          "'<form><textarea></textarea><button id=\"send\">Send</button></form>';")
    html = ('<!doctype html><html><head><meta name="viewport" content="width=device-width">'
            '<link rel="stylesheet" href="/app.css"></head><body><div id="app"></div>'
            '<script src="/app.js"></script></body></html>')

    def do_GET(self) -> None:
        body, kind = {"/app.css": (self.css, "text/css"), "/app.js": (self.js, "text/javascript")}.get(
            self.path, (self.html, "text/html")
        )
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def time_to_usable(browser: Any, url: str, ready: str, *, js: bool) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 360, "height": 640}, is_mobile=True, has_touch=True,
                                  user_agent=ZALO_UA, java_script_enabled=js)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": RTT_MS,
        "downloadThroughput": KBPS * 1000 / 8, "uploadThroughput": KBPS * 1000 / 8,
    })
    wire = [0]
    cdp.on("Network.loadingFinished", lambda event: wire.__setitem__(0, wire[0] + event["encodedDataLength"]))
    start = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector(ready, state="visible", timeout=120_000)
    usable = time.perf_counter() - start
    page.wait_for_load_state("load")
    loaded = time.perf_counter() - start
    context.close()
    return {"usable": usable, "load": loaded, "bytes": float(wire[0])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        process, url, smtp = start_tipbox(Path(workdir))
        heavy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Heavy)
        threading.Thread(target=heavy.serve_forever, daemon=True).start()
        heavy_url = f"http://127.0.0.1:{heavy.server_address[1]}/"
        try:
            weights = page_weights(url)
            timings: dict[str, list[dict[str, float]]] = {}
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                cases = [
                    ("tipbox form, JavaScript on", url + "/", "button[type=submit]", True),
                    ("tipbox form, JavaScript off", url + "/", "button[type=submit]", False),
                    ("1 MB page (app shell + 200 KB CSS + 800 KB JS)", heavy_url, "#send", True),
                ]
                for name, target, ready, js in cases:
                    timings[name] = [time_to_usable(browser, target, ready, js=js) for _ in range(args.runs)]
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=10)
            heavy.shutdown()
            smtp.stop()

    print("## Page weight\n")
    print("Bytes of each response body as `tipbox serve` sends it (`benchmarks/page.py`):\n")
    print("| page | status | gzip (bytes) | uncompressed (bytes) |")
    print("| --- | --- | ---: | ---: |")
    for name, status, wire, plain in weights:
        print(f"| {name} | {status} | {wire:,} | {plain:,} |")
    print(f"\nTime to a usable form, Chromium {CHROMIUM}, CDP network emulation {KBPS} kbit/s down and up, "
          f"{RTT_MS} ms round trip, no cache, median of {args.runs} runs:\n")
    print("| page | usable form (s) | load event (s) | bytes transferred |")
    print("| --- | ---: | ---: | ---: |")
    for name, runs in timings.items():
        usable = statistics.median(r["usable"] for r in runs)
        loaded = statistics.median(r["load"] for r in runs)
        transferred = statistics.median(r["bytes"] for r in runs)
        print(f"| {name} | {usable:.2f} | {loaded:.2f} | {transferred:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
