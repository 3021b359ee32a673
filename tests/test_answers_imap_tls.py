"""The collector's TLS: the IMAP server's certificate is checked against the system's CAs plus TIPBOX_IMAP_CA_FILE,
not against TIPBOX_SMTP_CA_FILE. The IMAP server is the real Dovecot of tests/mta.py behind a TLS front."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme

from app.answers.service import Answers
from app.settings import Settings
from tests.mailsink import Sink
from tests.mta import ANSWERS, PASSWORD, MailSystem, mail_system

pytestmark = pytest.mark.e2e
__all__ = ["mail_system"]  # the session fixture, collected from here


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    for end in (source, target):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


@contextmanager
def _tls_front(imap_port: int, ca: trustme.CA) -> Iterator[int]:
    """Implicit TLS on a free port, with a certificate from `ca`, relaying to Dovecot's plain IMAP port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))

    def handle(connection: socket.socket) -> None:
        try:
            secured = context.wrap_socket(connection, server_side=True)
        except OSError:  # the client refused the certificate
            connection.close()
            return
        with secured, socket.create_connection(("127.0.0.1", imap_port)) as upstream:
            threading.Thread(target=_pump, args=(upstream, secured), daemon=True).start()
            _pump(secured, upstream)

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


async def _collect(settings: Settings) -> tuple[int, int]:
    """Run the service's collector briefly; return (sweeps, failures)."""
    answers = Answers(settings, {})

    async def send(recipient: str, data: bytes) -> None:
        raise AssertionError("nothing to confirm")

    answers.start(send)
    collector = answers.collector
    assert collector is not None
    for _ in range(300):  # 15 s at most
        if collector.sweeps or collector.failures:
            break
        await asyncio.sleep(0.05)
    await answers.stop()
    return collector.sweeps, collector.failures


def test_imap_trusts_the_system_cas_plus_tipbox_imap_ca_file_not_the_smtp_one(
    mail_system: MailSystem, make_settings: Callable[..., Settings], sink: Sink, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    system_ca, private_ca, smtp_ca = trustme.CA(), trustme.CA(), trustme.CA()
    files = {}
    for name, ca in (("system", system_ca), ("private", private_ca), ("smtp", smtp_ca)):
        files[name] = tmp_path / f"{name}.pem"
        ca.cert_pem.write_to_path(str(files[name]))
    monkeypatch.setenv("SSL_CERT_FILE", str(files["system"]))  # what OpenSSL loads as the system's CAs

    def settings(**overrides: object) -> Settings:
        values = {
            "reply_to": ANSWERS, "answers_store": f"sqlite:///{tmp_path / 'a.sqlite3'}", "imap_host": "127.0.0.1",
            "imap_security": "tls", "imap_username": ANSWERS, "imap_password": PASSWORD,
            "smtp_ca_file": files["smtp"], **overrides,
        }
        return make_settings(sink, **values)

    outcomes = {}
    for server_ca in ("private", "system", "smtp"):
        ca = {"system": system_ca, "private": private_ca, "smtp": smtp_ca}[server_ca]
        with _tls_front(mail_system.imap_port, ca) as port:
            sweeps, failures = asyncio.run(_collect(settings(imap_port=port, imap_ca_file=files["private"])))
        outcomes[server_ca] = "collected" if sweeps and not failures else "refused"
    assert outcomes == {"private": "collected", "system": "collected", "smtp": "refused"}
    with _tls_front(mail_system.imap_port, private_ca) as port:  # without the setting: the system's CAs only
        sweeps, failures = asyncio.run(_collect(settings(imap_port=port)))
    assert (sweeps, failures) == (0, 1)
