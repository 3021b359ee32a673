"""End to end behind the kit's reverse proxies: Debian's nginx and Caddy, each with deploy/'s configuration (only
ports, paths and the test certificate changed), in front of a real `tipbox serve` relaying to a real SMTP server.

A resident's phone is a client bound to an address of its own on loopback (127.13.57.x), so that the address can
be looked for afterwards in every log file on the machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import trustme

from tests import media
from tests.helpers import SECRET, hidden_fields, require, wait_until_responds
from tests.mailsink import Sink, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "deploy"
TIPBOX = str(Path(sys.executable).parent / "tipbox")
POST = "Đồn Biên phòng Na Cô Sa"
# Each proxy's residents: phones on addresses no other test uses, looked for in every log at the end. The second
# pair is for the rate limit test only, which uses their hour's allowance up.
PHONES = {"nginx": ("127.13.57.91", "127.13.57.92"), "caddy": ("127.13.57.93", "127.13.57.94")}
LIMITED = {"nginx": ("127.13.57.81", "127.13.57.82"), "caddy": ("127.13.57.83", "127.13.57.84")}
CROWDED, OTHER = "127.13.57.71", "127.13.57.72"  # the connection limit test's
SLOW = {"nginx": "127.13.57.61", "caddy": "127.13.57.62"}  # on weak data
EVERY_PHONE = [*(a for pair in (*PHONES.values(), *LIMITED.values()) for a in pair), CROWDED, OTHER, *SLOW.values()]
TYPED = "Xe tải biển số lạ chở hàng qua đường mòn lúc 2 giờ sáng"
SOURCE_RATE = 3  # tips per hour from one source, low enough to reach


@dataclass
class Proxy:
    name: str
    url: str
    root: Path
    https_port: int
    process: subprocess.Popen[bytes]


def _override(text: str, replacements: dict[str, str]) -> str:
    """`text` with each exact fragment replaced; a fragment the kit's file no longer has fails the test loudly."""
    for old, new in replacements.items():
        assert old in text, f"the kit's file no longer says {old!r}: update tests/test_proxies.py"
        text = text.replace(old, new)
    return text


def _workdir(prefix: str) -> Path:
    """A folder the proxies' own users can walk into (pytest's are private to root)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    return root


def _certificate(root: Path, ca: trustme.CA) -> tuple[Path, Path]:
    issued = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = root / "fullchain.pem", root / "privkey.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    key.write_bytes(issued.private_key_pem.bytes())
    key.chmod(0o600)
    return chain, key


def nginx_conf(
    root: Path, *, http_port: int, https_port: int, upstream_port: int, ca: trustme.CA | None = None
) -> Path:
    """The kit's nginx.conf with a test instance's ports, files and certificate (tests/test_deploy.py loads it too)."""
    chain, key = _certificate(root, ca or trustme.CA())
    for folder in ("temp", "pages"):
        (root / folder).mkdir(exist_ok=True)
        (root / folder).chmod(0o755)
    shutil.chown(root / "temp", "www-data")
    text = _override((KIT / "nginx" / "nginx.conf").read_text(encoding="utf-8"), {
        "pid /run/nginx.pid;": f"pid {root}/nginx.pid;",
        "error_log /var/log/nginx/error.log emerg;": f"error_log {root}/nginx-error.log emerg;",
        "http {\n": f"http {{\n    client_body_temp_path {root}/temp/body;\n    proxy_temp_path {root}/temp/proxy;\n"
                    f"    fastcgi_temp_path {root}/temp/fastcgi;\n    uwsgi_temp_path {root}/temp/uwsgi;\n"
                    f"    scgi_temp_path {root}/temp/scgi;\n",
        "listen 80 default_server;": f"listen 127.0.0.1:{http_port} default_server;",
        "listen [::]:80 default_server;": "",
        "listen 443 ssl http2 default_server;": f"listen 127.0.0.1:{https_port} ssl http2 default_server;",
        "listen [::]:443 ssl http2 default_server;": "",
        "/etc/letsencrypt/live/tip.example.vn/fullchain.pem": str(chain),
        "/etc/letsencrypt/live/tip.example.vn/privkey.pem": str(key),
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream_port};",
        "alias /etc/tipbox/pages/;": f"alias {root}/pages/;",
    })
    conf = root / "nginx.conf"
    conf.write_text(text, encoding="utf-8")
    return conf


def _caddyfile(
    root: Path, *, http_port: int, https_port: int, ca: trustme.CA, changes: dict[str, str] | None = None
) -> Path:
    chain, key = _certificate(root, ca)
    text = _override((KIT / "caddy" / "Caddyfile").read_text(encoding="utf-8"), {
        "\tadmin off\n": f"\tadmin off\n\thttp_port {http_port}\n\thttps_port {https_port}\n\tdefault_bind 127.0.0.1\n",
        "{$TIPBOX_DOMAIN:localhost} {\n": f"{{$TIPBOX_DOMAIN:localhost}} {{\n\ttls {chain} {key}\n",
        **(changes or {}),
    })
    path = root / "Caddyfile"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Served:
    port: int
    log: Path
    sink: Sink
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def tipbox() -> Iterator[Served]:
    """`tipbox serve` with the kit's settings that matter here: trusting the proxy on loopback, the default limits."""
    root = _workdir("tipbox-proxied-")
    posts = root / "posts.toml"
    posts.write_text(f'[posts.ncs]\nname = "{POST}"\nmailbox = "ncs@example.vn"\n', encoding="utf-8")
    sink = Sink().start()
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("TIPBOX_")}
    env.update(
        TIPBOX_SMTP_HOST="127.0.0.1", TIPBOX_SMTP_PORT=str(sink.port), TIPBOX_SMTP_SECURITY="none",
        TIPBOX_MAIL_FROM="tipbox@example.vn", TIPBOX_POSTS_FILE=str(posts), TIPBOX_SECRET_KEY=SECRET,
        TIPBOX_PUBLIC_URL="https://tip.example.vn", TIPBOX_MIN_FILL_SECONDS="0", TIPBOX_TRUSTED_PROXIES="127.0.0.1",
        TIPBOX_SOURCE_RATE=f"{SOURCE_RATE}/hour", TIPBOX_POST_RATE="1000/hour",
    )
    log = root / "tipbox.log"
    with log.open("wb") as output:
        process = subprocess.Popen([TIPBOX, "serve", "--port", str(port), "--log-level", "debug"], env=env, cwd=root,
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until_responds(f"http://127.0.0.1:{port}", process)
        subprocess.run([TIPBOX, "proxy-pages", str(root / "pages")], env=env, cwd=root, check=True,
                       capture_output=True, timeout=60)
        yield Served(port, log, sink, process)
    finally:
        process.terminate()
        process.wait(timeout=10)
        sink.stop()
        for folder in (root, *ROOTS):
            shutil.rmtree(folder, ignore_errors=True)


def _start_nginx(ca: trustme.CA, upstream_port: int, pages: Path) -> Proxy:
    nginx = require("nginx", "nginx")
    root = _workdir("tipbox-nginx-")
    ROOTS.append(root)
    http_port, https_port = free_port(), free_port()
    conf = nginx_conf(root, http_port=http_port, https_port=https_port, upstream_port=upstream_port, ca=ca)
    shutil.copytree(pages, root / "pages", dirs_exist_ok=True)
    # -e: where nginx writes before it has read its configuration (else /var/log/nginx/error.log).
    process = subprocess.Popen([nginx, "-c", str(conf), "-e", str(root / "nginx-startup.log"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_port(https_port, process)
    return Proxy("nginx", f"https://127.0.0.1:{https_port}", root, https_port, process)


def _start_caddy(ca: trustme.CA, upstream_port: int, pages: Path, changes: dict[str, str] | None = None) -> Proxy:
    caddy = require("caddy", "caddy")
    root = _workdir("tipbox-caddy-")
    ROOTS.append(root)
    http_port, https_port = free_port(), free_port()
    caddyfile = _caddyfile(root, http_port=http_port, https_port=https_port, ca=ca, changes=changes)
    env = {**os.environ, "HOME": str(root), "XDG_DATA_HOME": str(root / "data"), "XDG_CONFIG_HOME": str(root / "conf"),
           "TIPBOX_DOMAIN": "127.0.0.1", "TIPBOX_UPSTREAM": f"127.0.0.1:{upstream_port}", "TIPBOX_PAGES": str(pages)}
    with (root / "caddy.log").open("wb") as log:  # Caddy logs to stderr, as under systemd (the journal)
        process = subprocess.Popen([caddy, "run", "--config", str(caddyfile), "--adapter", "caddyfile"], env=env,
                                   stdout=log, stderr=log)
    _wait_for_port(https_port, process)
    return Proxy("caddy", f"https://127.0.0.1:{https_port}", root, https_port, process)


START = {"nginx": _start_nginx, "caddy": _start_caddy}


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the proxy did not start (exit status {process.poll()})")
        time.sleep(0.05)


def _stop(proxy: Proxy) -> None:
    proxy.process.terminate()
    try:
        proxy.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proxy.process.kill()
        proxy.process.wait()


@pytest.fixture(scope="module", params=["nginx", "caddy"])
def proxy(request: pytest.FixtureRequest, tipbox: Served, ca: trustme.CA) -> Iterator[Proxy]:
    started = START[request.param](ca, tipbox.port, tipbox.log.parent / "pages")
    try:
        yield started
    finally:
        _stop(started)
        _check_no_temporary_files(started)


# Every proxy's folder (its logs), kept for the last test to search; removed with tipbox's at the module's end.
ROOTS: list[Path] = []


def _check_no_temporary_files(proxy: Proxy) -> None:
    """No body, or any part of one, was ever spooled to disk by the proxy."""
    spooled = [path for path in (proxy.root / "temp").rglob("*") if path.is_file()]
    assert spooled == []


def _phone(ca: trustme.CA, address: str, **headers: str) -> httpx2.Client:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    transport = httpx2.HTTPTransport(local_address=address, verify=context)
    return httpx2.Client(transport=transport, timeout=120, headers={"Accept-Language": "vi", **headers})


def _multipart(fields: dict[str, str], voice: bytes = b"") -> tuple[bytes, str]:
    boundary = f"----tipbox{secrets.token_hex(8)}"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    if voice:
        parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="voice"; filename="ghi-am.mp3"\r\n'
                  "Content-Type: audio/mpeg\r\n\r\n".encode(), voice, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _send(client: httpx2.Client, url: str, voice: bytes = b"", what: str = TYPED) -> httpx2.Response:
    form = client.get(url + "/p/ncs")
    assert form.status_code == 200, form.text
    body, content_type = _multipart({**hidden_fields(form.text), "category": "smuggling", "what": what}, voice)
    return client.post(url + "/p/ncs", content=body, headers={"Content-Type": content_type})


def test_a_15_mb_tip_goes_through_with_its_text(proxy: Proxy, tipbox: Served, ca: trustme.CA) -> None:
    voice = media.mp3_of_size(15_000_000)
    before = len(tipbox.sink.handler.messages)
    with _phone(ca, PHONES[proxy.name][0]) as phone:
        sent = _send(phone, proxy.url, voice)
    assert sent.status_code == 200 and 'id="receipt"' in sent.text, sent.text[-1500:]
    (message,) = tipbox.sink.handler.parsed()[before:]
    plain = message.get_body(("plain",))
    assert plain is not None and TYPED in plain.get_content()
    (attached,) = [part for part in message.walk() if part.get_filename()]
    assert attached.get_filename() == "voice-1.mp3" and attached.get_content() == voice


WEAK_DATA = 64 * 1024  # bytes a second: a phone on one bar of 3G, eight times tipbox's slowest accepted pace


def _trickle(body: bytes, rate: int = WEAK_DATA) -> Iterator[bytes]:
    """`body` as a phone on weak data sends it: a quarter of `rate` every quarter of a second."""
    step = rate // 4
    for start in range(0, len(body), step):
        time.sleep(0.25)
        yield body[start:start + step]


def _send_slowly(client: httpx2.Client, url: str, voice: bytes) -> httpx2.Response:
    form = client.get(url + "/p/ncs")
    assert form.status_code == 200, form.text
    body, content_type = _multipart({**hidden_fields(form.text), "category": "smuggling", "what": TYPED}, voice)
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}  # as a browser sends a form
    return client.post(url + "/p/ncs", content=_trickle(body), headers=headers)


def test_a_slow_upload_on_weak_data_arrives_as_one_tip(proxy: Proxy, tipbox: Served, ca: trustme.CA) -> None:
    """2 MB at 64 KB/s takes over 30 s, longer than Caddy's read_timeout lets it in the test below; the kit's
    proxies wait as long as tipbox's own pace rule allows (tests/test_deploy.py holds them to the bound)."""
    voice = media.mp3_of_size(2_000_000)
    before = len(tipbox.sink.handler.messages)
    started = time.monotonic()
    with _phone(ca, SLOW[proxy.name]) as phone:
        sent = _send_slowly(phone, proxy.url, voice)
    assert time.monotonic() - started > 30
    assert sent.status_code == 200 and 'id="receipt"' in sent.text, sent.text[-1500:]
    (message,) = tipbox.sink.handler.parsed()[before:]
    (attached,) = [part for part in message.walk() if part.get_filename()]
    assert attached.get_content() == voice


def test_caddys_read_timeout_counts_the_upload(tipbox: Served, ca: trustme.CA) -> None:
    """Why the kit's read_timeout is hours, not minutes: Caddy counts it from the request's start, so a shorter one
    cuts a resident's upload that tipbox would take (here 10 s, against a 1 MB upload on weak data, 16 s)."""
    proxy = _start_caddy(ca, tipbox.port, tipbox.log.parent / "pages", {"read_timeout 39900s": "read_timeout 10s"})
    before = len(tipbox.sink.handler.messages)
    try:
        with _phone(ca, SLOW["caddy"]) as phone:
            cut = _send_slowly(phone, proxy.url, media.mp3_of_size(1_000_000))
    except httpx2.HTTPError:
        cut = None  # the connection itself was cut
    finally:
        _stop(proxy)
    assert cut is None or cut.status_code >= 500
    assert len(tipbox.sink.handler.messages) == before


def test_an_oversized_tip_gets_tipboxs_own_page_in_the_senders_language_with_the_text(
    proxy: Proxy, tipbox: Served, ca: trustme.CA
) -> None:
    """25 MB is over tipbox's 20 MB: the proxy lets it through (its limit is tipbox's plus a margin) and tipbox
    answers, in Hmong, with the form and what was typed."""
    before = len(tipbox.sink.handler.messages)
    with _phone(ca, PHONES[proxy.name][1], **{"Accept-Language": "hmn"}) as phone:
        answer = _send(phone, proxy.url, media.mp3_of_size(25_000_000), what="Muaj neeg coj tshuaj yeeb hla ciam teb")
    assert answer.status_code == 413
    assert answer.headers["content-language"] == "hmn"
    assert "content-security-policy" in answer.headers  # tipbox's page, not the proxy's
    assert "Muaj neeg coj tshuaj yeeb hla ciam teb</textarea>" in answer.text
    assert "Too" not in answer.text and "nginx" not in answer.text.lower()
    assert len(tipbox.sink.handler.messages) == before


def test_a_body_past_the_proxys_limit_gets_a_page_in_the_residents_languages(proxy: Proxy, ca: trustme.CA) -> None:
    """Declared larger than even the proxy lets through: the proxy answers, with tipbox's page (`proxy-pages`)."""
    head, body = _raw(ca, proxy.https_port, PHONES[proxy.name][1], (
        b"POST /p/ncs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        b"Content-Length: 90000000\r\n\r\n--x\r\n"
    ))
    assert head.startswith(b"HTTP/1.1 413"), head
    text = body.decode("utf-8", "replace")
    assert "Gửi quá nhiều" in text and "Xa ntau dhau" in text
    assert "Request Entity Too Large" not in text and "nginx" not in text


def test_per_source_limits_count_each_phone_behind_the_proxy(proxy: Proxy, ca: trustme.CA) -> None:
    """Both phones come through the proxy's one address; tipbox keys each by the address the proxy forwarded."""
    first, second = LIMITED[proxy.name]
    statuses = []
    for attempt in range(SOURCE_RATE + 1):
        # What the phone claims to be is not believed: the proxy replaces it with the address it saw.
        with _phone(ca, first, **{"X-Forwarded-For": f"203.0.113.{attempt}"}) as phone:
            statuses.append(_send(phone, proxy.url).status_code)
    assert statuses == [200] * SOURCE_RATE + [429]
    with _phone(ca, second) as phone:
        assert _send(phone, proxy.url).status_code == 200


def test_the_connection_limit_per_address(tipbox: Served, ca: trustme.CA) -> None:
    """nginx's limit_conn: twenty requests in progress from one address, the next gets a page, not nginx's 503."""
    proxy = _start_nginx(ca, tipbox.port, tipbox.log.parent / "pages")
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(20):
            held.append(_open(ca, proxy.https_port, CROWDED, (
                b"POST /p/ncs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 1000\r\n\r\nwhat=slow"
            )))
        time.sleep(0.5)  # the twenty are being proxied
        head, body = _raw(ca, proxy.https_port, CROWDED, b"GET /p/ncs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429"), head
        assert "Hòm thư tạm thời chưa trả lời được" in body.decode()
        head, _ = _raw(ca, proxy.https_port, OTHER, b"GET /p/ncs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head  # another address is not held back
    finally:
        for sock in held:
            sock.close()
        _stop(proxy)


@pytest.mark.parametrize("name", ["nginx", "caddy"])
def test_tipbox_not_answering_gets_a_page_not_the_proxys(name: str, ca: trustme.CA, tipbox: Served) -> None:
    # A port bound but never listening: connections to it are refused, and the proxy cannot be given it for one of
    # its own listeners (a port only found free could be, and Caddy then proxied to its own redirect).
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        proxy = START[name](ca, holder.getsockname()[1], tipbox.log.parent / "pages")
        try:
            with _phone(ca, PHONES[name][0]) as phone:
                answer = phone.get(proxy.url + "/p/ncs")
                # Stray TLS and plain-text bytes, as a scanner sends: errors the proxies log.
                _raw(ca, proxy.https_port, PHONES[name][0], b"", tls=False, garbage=b"\x16\x03\x01\x00\x05hello")
                _raw(ca, proxy.https_port, PHONES[name][0], b"", tls=False, garbage=b"GET / HTTP/1.1\r\n\r\n")
        finally:
            _stop(proxy)
    assert answer.status_code == 502
    assert "Hòm thư tạm thời chưa trả lời được" in answer.text and "Lub thawv xa xov" in answer.text
    assert "Bad Gateway" not in answer.text


def test_caddy_speaks_http1_only_so_the_connection_limit_limits_requests(ca: trustme.CA, tipbox: Served) -> None:
    """A phone offering HTTP/2 gets HTTP/1.1: one connection carries one request at a time, and nftables' limit on
    connections per address then bounds the requests one address holds open (each may take read_timeout)."""
    proxy = _start_caddy(ca, tipbox.port, tipbox.log.parent / "pages")
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        context.set_alpn_protocols(["h2", "http/1.1"])
        phone = PHONES["caddy"][0]
        raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10, source_address=(phone, 0))
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as connection:
            chosen = connection.selected_alpn_protocol()
    finally:
        _stop(proxy)
    assert chosen == "http/1.1"


def test_no_client_address_in_any_log_file_on_the_machine(tipbox: Served) -> None:
    """Runs last in this module: after tips, refusals, limits, errors and stray bytes through both proxies."""
    addresses = [address.encode() for address in EVERY_PHONE]
    logs = [path for root in ROOTS for path in root.rglob("*.log")]
    assert any(path.name == "caddy.log" and path.stat().st_size > 0 for path in logs)  # Caddy did write its log
    searched = [tipbox.log, *logs]
    searched += [path for path in Path("/var/log").rglob("*") if path.is_file()]
    found = []
    for path in searched:
        with contextlib.suppress(OSError):
            data = path.read_bytes()
            found += [f"{path}: {address.decode()}" for address in addresses if address in data]
    assert found == []
    assert re.search(rb"tip for post ncs delivered", tipbox.log.read_bytes())  # tipbox's log did run, at debug


def _open(ca: trustme.CA, port: int, source: str, data: bytes) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
    sock.sendall(data)
    return sock


def _raw(
    ca: trustme.CA, port: int, source: str, data: bytes, *, tls: bool = True, garbage: bytes = b""
) -> tuple[bytes, bytes]:
    """Send `data` (over TLS) or `garbage` (not), and read what comes back until the server closes or stops."""
    if tls:
        sock: socket.socket = _open(ca, port, source, data)
    else:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        sock.sendall(garbage)
    answer = b""
    with sock:
        sock.settimeout(5)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
                head, _, body = answer.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: (\d+)", head)
                if length and len(body) >= int(length.group(1)):
                    break
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body

