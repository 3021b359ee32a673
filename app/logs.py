"""Logging set-up: one format, no access log, a filter that blanks anything shaped like an IP address, and lines
repeated within a minute written once.

The privacy middleware already removes the client address before any route runs; this filter is the second
lock, for lines written by libraries (uvicorn, asyncio) that saw the socket before the middleware did. A flood of
malformed requests must not fill the disk either: libraries that log what they were sent are silenced, and any
other line that repeats is counted instead of written (`CollapseRepeats`; docs/abuse.md has the figures).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

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
# python-multipart writes a warning for every malformed body it parses, quoting offsets and bytes of it: silenced
# (tipbox answers such a body with a 400 page; a line per request would let a flood fill the disk).
# imapclient logs every IMAP line at DEBUG, officers' answers included (the answers collector).
QUIET_LIBRARIES = {
    "PIL": logging.INFO, "mail.log": logging.WARNING, "imapclient": logging.WARNING,
    "python_multipart": logging.CRITICAL + 1,
}
# uvicorn's line for every request its parser refuses (junk bytes, a header past the cap): the 400 answer is all
# the client gets, and the line would be written once per junk connection.
SILENCED_LINES = {"uvicorn.error": frozenset({"Invalid HTTP request received."})}


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError):  # arguments that do not fit the message: logging reports it when it writes it
        return str(record.msg)


class _Silence(logging.Filter):
    """Drop the records of one logger whose message is one of `messages`."""

    def __init__(self, messages: frozenset[str]) -> None:
        super().__init__()
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.messages


def quiet_libraries() -> None:
    """Hold the loggers of QUIET_LIBRARIES at their floor and drop the SILENCED_LINES; `configure` calls it, and so
    do the app factory and `app.attachments.images` when it is imported, so the rule holds also where logging was
    set up by someone else (tests, an embedder)."""
    for name, floor in QUIET_LIBRARIES.items():
        logger = logging.getLogger(name)
        if logger.level < floor:  # NOTSET (inherit) included
            logger.setLevel(floor)
    for name, messages in SILENCED_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _Silence) for existing in logger.filters):
            logger.addFilter(_Silence(messages))


WINDOW_SECONDS = 60.0
# Lines of kinds not seen yet in the current minute, at most: past it they are counted into one line, so a flood of
# ever-different messages cannot fill the disk either. Kinds remembered at once, at most.
MAX_NEW_LINES = 40
MAX_KINDS = 256
_SUMMARY = "… and %d more like this in the last minute: %s"
_NUMBERS = re.compile(r"\d+")  # a count, an offset, a port: lines that differ only in numbers are one kind
_OTHERS = "… and %d more lines of other kinds in the last minute"


@dataclass(slots=True)
class _Kind:
    """One kind of line in its minute: when the minute ends, how many were not written, the first one written."""

    end: float
    count: int
    first: logging.LogRecord


class CollapseRepeats(logging.Handler):
    """In front of `target`: a line of a kind (logger, level, message with its numbers left out) already written in
    the last minute is counted, not written; when its minute is over, one line says how many there were, and
    counting starts again.

    So one kind of line writes at most two a minute however often it happens, and at most MAX_NEW_LINES kinds a
    minute are written in full. A timer thread writes the count when nothing else is logged after a burst.
    """

    def __init__(
        self, target: logging.Handler, *, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.target = target
        self._window = window
        self._clock = clock
        self._kinds: dict[tuple[str, int, str], _Kind] = {}
        self._minute_end = 0.0  # of the minute MAX_NEW_LINES counts in
        self._new_lines = 0
        self._others: logging.LogRecord | None = None
        self._others_count = 0
        self._timer: threading.Timer | None = None

    def emit(self, record: logging.LogRecord) -> None:
        now = self._clock()
        self._write_due(now)
        kind = (record.name, record.levelno, _NUMBERS.sub("#", _message(record))[:200])
        state = self._kinds.get(kind)
        if state is not None:
            state.count += 1
            self._arm(now)
            return
        if now >= self._minute_end:
            self._minute_end, self._new_lines = now + self._window, 0
        if self._new_lines >= MAX_NEW_LINES:
            self._others = self._others or record
            self._others_count += 1
            self._arm(now)
            return
        if len(self._kinds) >= MAX_KINDS:
            self._write_kind(next(iter(self._kinds)), now, again=False)
        self._new_lines += 1
        self._kinds[kind] = _Kind(now + self._window, 0, record)
        self.target.handle(record)

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_due(float("inf"))
        finally:
            self.release()
        self.target.flush()

    def close(self) -> None:
        self.flush()
        self.acquire()
        try:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        finally:
            self.release()
        self.target.close()
        super().close()

    def _write_due(self, now: float) -> None:
        """Write the count of every kind whose minute is over; a kind that did not repeat is forgotten."""
        for kind, state in list(self._kinds.items()):
            if state.end <= now:
                self._write_kind(kind, now, again=now != float("inf"))
        if self._others is not None and now >= self._minute_end:
            summary = logging.makeLogRecord({**self._others.__dict__, "msg": _OTHERS, "args": (self._others_count,)})
            summary.exc_info = summary.exc_text = None
            self._others, self._others_count = None, 0
            self.target.handle(summary)

    def _write_kind(self, kind: tuple[str, int, str], now: float, *, again: bool) -> None:
        state = self._kinds.pop(kind)
        if not state.count:
            return
        first = state.first
        text = first.getMessage()
        text = text if len(text) <= 100 else text[:99] + "…"
        summary = logging.makeLogRecord({**first.__dict__, "msg": _SUMMARY, "args": (state.count, text)})
        summary.exc_info = summary.exc_text = None
        self.target.handle(summary)
        if again:  # still repeating: the next minute counts on, without writing the line once more
            self._kinds[kind] = _Kind(now + self._window, 0, first)

    def _arm(self, now: float) -> None:
        """Have a timer write the counts when their minute is over, in case nothing else is logged by then."""
        if self._timer is not None:
            return
        ends = [state.end for state in self._kinds.values() if state.count]
        if self._others is not None:
            ends.append(self._minute_end)
        if not ends:
            return
        self._timer = threading.Timer(max(0.0, min(ends) - now) + 0.01, self._on_timer)
        self._timer.daemon = True
        self._timer.start()

    def _on_timer(self) -> None:
        self.acquire()  # the lock `handle` holds around `emit`
        try:
            self._timer = None
            now = self._clock()
            self._write_due(now)
            self._arm(now)
        finally:
            self.release()


def flush() -> None:
    """Write what the root logger's handlers still hold: the counts of lines not written yet."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def configure(level: str = "INFO") -> None:
    """Log to stderr through the redacting filter, repeats collapsed; uvicorn's access log is silenced whatever its
    settings."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactAddresses())
    root = logging.getLogger()
    root.handlers[:] = [CollapseRepeats(handler)]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
    access.disabled = True
    quiet_libraries()
