"""Logging set-up: one format, no access log, and a filter that blanks anything shaped like an IP address.

The privacy middleware already removes the client address before any route runs; this filter is the second
lock, for lines written by libraries (uvicorn, asyncio) that saw the socket before the middleware did.
"""

from __future__ import annotations

import logging
import re

_IPV4 = r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"
_IPV6 = r"(?<![\w:])(?:[0-9a-fA-F]{0,5}:){2,9}[0-9a-fA-F]{0,5}(?![\w:])"
# IPv4-mapped and -embedded IPv6 (::ffff:203.0.113.5), matched before either plain form.
_MAPPED = r"(?<![\w:])(?:[0-9a-fA-F]{0,4}:){2,6}(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"
_ADDRESS = re.compile(f"\\[?{_MAPPED}\\]?|{_IPV4}|\\[?{_IPV6}\\]?")
_CLOCK = re.compile(r"^\d{1,2}(?::\d{1,2})+$")
REDACTED = "[address removed]"
_NOT_A_PERSON = frozenset({"0.0.0.0", "::", "::1"})  # noqa: S104 - compared against, never bound


def redact(text: str) -> str:
    """`text` with every IPv4 or IPv6 address replaced, but loopback/any; times such as 22:40:11 are kept."""

    def replace(match: re.Match[str]) -> str:
        value = match.group(0)
        if value.strip("[]") in _NOT_A_PERSON or value.startswith("127."):
            return value  # loopback and "any": the service's own bind addresses, never a resident's
        if _CLOCK.match(value):
            return value  # a time or a ratio (22:40:11, 3:2), not an IPv6 address
        return REDACTED

    return _ADDRESS.sub(replace, text)


class RedactAddresses(logging.Filter):
    """Rewrite each record's message with addresses removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks can quote peer addresses from socket errors.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


# Libraries that write what they parse into DEBUG records: Pillow's TIFF reader logs every EXIF tag's value
# (camera model, owner name, GPS...). They never log below INFO, whatever level the service runs at.
# aiosmtpd's "mail.log" (the dev mailbox) writes a line per SMTP command: noise, and at DEBUG the envelope.
# imapclient logs every IMAP line at DEBUG, officers' answers included (the answers collector).
QUIET_LIBRARIES = {"PIL": logging.INFO, "mail.log": logging.WARNING, "imapclient": logging.WARNING}


def quiet_libraries() -> None:
    """Hold the loggers of QUIET_LIBRARIES at their floor; `configure` calls it, and so does `app.attachments.images`
    when it is imported, so the rule holds also where logging was set up by someone else (tests, an embedder)."""
    for name, floor in QUIET_LIBRARIES.items():
        logger = logging.getLogger(name)
        if logger.level < floor:  # NOTSET (inherit) included
            logger.setLevel(floor)


def configure(level: str = "INFO") -> None:
    """Log to stderr through the redacting filter; uvicorn's access log is silenced whatever its settings."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactAddresses())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
    access.disabled = True
    quiet_libraries()
