"""The log filter: the second lock behind the privacy middleware."""

from __future__ import annotations

import logging

import pytest

from app.logs import REDACTED, RedactAddresses, redact


@pytest.mark.parametrize(
    "address",
    ["203.0.113.9", "198.51.100.250", "2001:db8::1", "[2001:db8:85a3::8a2e:370:7334]", "fe80::1ff:fe23:4567:890a",
     "2001:0db8:0000:0000:0000:ff00:0042:8329", "::ffff:203.113.45.67", "2402:800:6371:ab12"],
)
def test_addresses_are_removed(address: str) -> None:
    assert address.strip("[]") not in redact(f"connection from {address}:51234 closed")
    assert REDACTED in redact(f"peer={address}")


@pytest.mark.parametrize("text", ["at 22:40:11", "ratio 3:2", "version 1.2.3", "listening on 127.0.0.1:8000",
                                  "bound to 0.0.0.0:80", "code 4821 0937 5512 9634"])
def test_ordinary_text_and_own_bind_addresses_are_kept(text: str) -> None:
    assert redact(text) == text


def test_filter_rewrites_records_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "peer %s said %s", ("203.0.113.9", "hi"), None)
    try:
        raise ConnectionError("reset by 198.51.100.7")
    except ConnectionError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactAddresses().filter(record)
    assert record.getMessage() == f"peer {REDACTED} said hi"
    assert record.exc_text is not None
    assert "198.51.100.7" not in record.exc_text and REDACTED in record.exc_text


def test_pillow_never_logs_below_info(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow logs EXIF values (camera, owner, GPS) at DEBUG: held at INFO by configure, by the cleaners' import
    and by the app factory, so an embedder that never calls `configure` is covered too."""
    from app import logs
    from app.main import create_app
    from app.settings import load_settings

    pil = logging.getLogger("PIL")
    monkeypatch.setattr(pil, "level", logging.NOTSET)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)
    logs.configure("debug")
    assert pil.getEffectiveLevel() == logging.INFO and logging.getLogger().level == logging.DEBUG
    pil.setLevel(logging.NOTSET)
    create_app(load_settings(min_fill_seconds=0))
    assert pil.level == logging.INFO
    pil.setLevel(logging.WARNING)  # an operator may quieten it further
    logs.quiet_libraries()
    assert pil.level == logging.WARNING
