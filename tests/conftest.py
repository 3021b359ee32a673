"""Fixtures that build real things on demand: SMTP servers, TLS certificates, settings, the app."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trustme
from httpx2 import Response
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import Settings, load_settings
from tests.mailsink import PASSWORD, USERNAME, Sink

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


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> Any:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A plain SMTP server (no TLS, no AUTH)."""
    server = Sink().start()
    yield server
    server.stop()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a real SMTP server `sink`; keyword arguments override any setting."""

    def build(sink: Sink | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "mail_from": "tipbox@example.vn",
            "mailbox": "post@example.vn",
            "secret_key": SECRET,
            "dev_mailbox": tmp_path / "mailbox",
            "smtp_timeout": 2.0,
            "min_fill_seconds": 0,
        }
        if sink is not None:
            values.update(smtp_host="127.0.0.1", smtp_port=sink.port, smtp_security=sink.security)
        values.update(overrides)
        return load_settings(**values)

    return build


@pytest.fixture
def client(sink: Sink, make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """The app, relaying to the plain `sink`."""
    with TestClient(create_app(make_settings(sink))) as test_client:
        yield test_client


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


def app_state(app: Any) -> Any:
    """The FastAPI app's `state` inside the middleware stack that `create_app` returns."""
    layer: object = app
    while not hasattr(layer, "state"):
        layer = getattr(layer, "app")  # noqa: B009
    return getattr(layer, "state")  # noqa: B009


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


__all__ = ["PASSWORD", "USERNAME", "app_state", "form_fields", "hidden_fields", "post_tip", "wait_until_responds"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests pass settings explicitly; a developer's own TIPBOX_* variables must not leak in."""
    for name in list(os.environ):
        if name.startswith("TIPBOX_"):
            monkeypatch.delenv(name)
