"""Helpers the tests share: a system command they need, a served form's fields, a real server answering."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx2
import pytest
from httpx2 import Response
from starlette.testclient import TestClient

SECRET = "test-secret-key-0123456789abcdefghijklmnop"


def require(command: str, package: str) -> str:
    """The path of a system command the test needs; skip without it, but fail under CI=true."""
    path = shutil.which(command) or (f"/usr/sbin/{command}" if Path(f"/usr/sbin/{command}").exists() else None)
    if path is None:
        message = f"{command} not installed (apt-get install {package}; `make test` does it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class _HiddenInputs(HTMLParser):
    """Collects what a browser would post back untouched: hidden inputs and the (empty) honeypot."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        name = values.get("name")
        if tag == "input" and name and (values.get("type") == "hidden" or name == "hp_extra"):
            self.fields[name] = values.get("value") or ""


def form_fields(client: TestClient, path: str = "/") -> dict[str, str]:
    """GET the form at `path` and return the fields a browser would send back without the user typing."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    return hidden_fields(page.text)


def hidden_fields(html: str) -> dict[str, str]:
    """The fields a browser posts back untouched from a form page's HTML."""
    parser = _HiddenInputs()
    parser.feed(html)
    return parser.fields


def wait_until_responds(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Poll a `tipbox serve` process's /healthz until it answers (or it exits, or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tipbox serve exited with {process.returncode}")
        try:
            if httpx2.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer")


def post_tip(client: TestClient, path: str = "/", **fields: str) -> Response:
    """Fetch the form like a phone would, fill `fields`, and send it."""
    data = {**form_fields(client, path.split("?")[0]), **fields}
    return client.post(path, data=data)
