"""Fixtures that build real things on demand: SMTP servers, TLS certificates, settings, the app."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from starlette.testclient import TestClient

from app.main import build_site, create_app
from app.routes import Site
from app.settings import Settings, load_settings
from tests.helpers import SECRET
from tests.mailsink import Sink


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
        if "posts_file" in overrides:  # the posts come from the file: TIPBOX_MAILBOX with it is refused
            values.pop("mailbox")
        values.update(overrides)
        return load_settings(**values)

    return build


@pytest.fixture
def site(sink: Sink, make_settings: Callable[..., Settings]) -> Site:
    """What `client` serves, relaying to the plain `sink`: tests look at what its parts hold."""
    return build_site(make_settings(sink))


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    """The app, relaying to the plain `sink`."""
    with TestClient(create_app(site.settings, site=site)) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests pass settings explicitly; a developer's own TIPBOX_* variables must not leak in."""
    for name in list(os.environ):
        if name.startswith("TIPBOX_"):
            monkeypatch.delenv(name)
