"""A tiny HTTP/1.1 client over a raw socket (to count every byte on the wire), and the tip the benchmark sends."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from html.parser import HTMLParser

# What a cheap Android phone's Zalo in-app browser sends (the privacy layer drops most of it; that is work too).
PHONE_HEADERS = {
    "User-Agent": (
        "Mozilla/5.0 (Linux; Android 10; SM-A105F Build/QP1A.190711.020; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36 Zalo android/12100688 ZaloTheme/light ZaloLanguage/vn"
    ),
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "Accept-Language": "vi-VN,vi;q=0.9,en-US;q=0.8,en;q=0.7",
    "X-Requested-With": "com.zing.zalo",
}
GZIP = {"Accept-Encoding": "gzip, deflate"}
BOUNDARY = "----WebKitFormBoundaryTipboxBench7q"
HONEYPOT = "hp_extra"

WHAT = (
    "Tối qua khoảng 11 giờ đêm có 3 người lạ đi xe máy chở nhiều bao tải qua đường mòn phía sau nương ngô, "
    "hướng ra mốc biên giới. Họ nói giọng nơi khác, không bật đèn xe. Sáng nay vẫn còn vết bánh xe và mấy "
    "bao tải rách ở bờ suối."
)
WHERE = "Đường mòn sau bản Nậm Chim, gần bờ suối"
WHEN = "Đêm qua, khoảng 23 giờ"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes  # as sent (compressed if the server compressed it), de-chunked
    head_bytes: int
    wire_bytes: int  # everything the server sent for this response


def request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"", timeout: float = 10.0
) -> Response:
    """One request on a new connection (`Connection: close`); the whole response is read."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding", "").lower() == "chunked":
        rest = _dechunk(rest)
    return Response(int(status_line.split()[1]), parsed, rest, len(head) + 4, len(data))


def _dechunk(data: bytes) -> bytes:
    out, at = bytearray(), 0
    while True:
        end = data.index(b"\r\n", at)
        size = int(data[at:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        at = end + 2 + size + 2


def wait_until_responds(port: int, alive: object, timeout: float = 30.0) -> None:
    """Poll GET /healthz until it answers 200; `alive()` says whether the process is still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(alive) and not alive():
            raise RuntimeError(f"the server on port {port} exited before answering")
        try:
            if request(port, "GET", "/healthz", timeout=1.0).status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing answered on 127.0.0.1:{port} within {timeout:.0f} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, alive: object, timeout: float = 20.0) -> None:
    """Wait until something listens on 127.0.0.1:`port` (an SMTP sink); `alive()` says whether it still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(alive) and not alive():
            raise RuntimeError(f"the process for port {port} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class _HiddenInputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.script: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("type") == "hidden" and values.get("name"):
            self.fields[str(values["name"])] = values.get("value") or ""
        if tag == "script" and values.get("src"):
            self.script = values["src"]


def hidden_fields(html: str) -> tuple[dict[str, str], str | None]:
    """The form's hidden inputs (the signed token, when the guard issues one) and the script's address."""
    parser = _HiddenInputs()
    parser.feed(html)
    return parser.fields, parser.script


def _part(name: str, value: str) -> str:
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'


def _empty_file(name: str) -> str:
    # What a browser sends for a file input left empty.
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename=""\r\n'
        "Content-Type: application/octet-stream\r\n\r\n\r\n"
    )


def tip_template(run: str) -> tuple[str, str, str]:
    """The tip as a browser posts the form, in document order, around two holes: the hidden fields and a counter.

    Every tip's text differs (run id and counter), so none is taken for a double tap of another.
    """
    head = ""  # the hidden fields come first in the form
    middle = (
        _part(HONEYPOT, "")
        + _part("category", "smuggling")
        + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="what"\r\n\r\n{WHAT} (thử {run}-'
    )
    tail = (
        ")\r\n"
        + _part("where", WHERE)
        + _part("when", WHEN)
        + _empty_file("photo")
        + _empty_file("voice")
        + _part("contact", "")
        + _part("receipt", "")
        + f"--{BOUNDARY}--\r\n"
    )
    return head, middle, tail


def tip_body(hidden: dict[str, str], run: str, number: int) -> bytes:
    head, middle, tail = tip_template(run)
    fields = "".join(_part(name, value) for name, value in hidden.items())
    return (head + fields + middle + str(number) + tail).encode("utf-8")


def tip_headers(gzip: bool = True) -> dict[str, str]:
    return {**PHONE_HEADERS, **(GZIP if gzip else {}), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
