"""Reading a submitted form: the body streamed under a size limit, parsed in memory, strictly UTF-8.

Starlette's own `request.form()` spools uploads to temporary files; a photo that has not been cleaned yet must
never touch the disk, so tipbox parses the body itself and keeps every part in memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import parse_qsl

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.attachments import Upload
from app.budget import Hold
from app.relay import Form

MAX_FIELDS = 64
MAX_FIELD_BYTES = 256 * 1024
# The real form is multipart; an urlencoded body carries no files, so it never needs more than this. Parsing and
# cleaning 18 MB of "%0A" would hold the event loop for seconds before the token is even checked.
MAX_URLENCODED_BYTES = 64 * 1024
# A multipart body past its limit is read on (its files thrown away, its text kept, so the form comes back filled
# in) up to this many times the limit; a body declared larger is refused unread.
DISCARD_FACTOR = 4
# A body must bring MIN_BODY_RATE over every BODY_WINDOW_SECONDS (the first window counts from the start), and
# never stall for BODY_IDLE_SECONDS: a text tip has 30 s, a phone on EDGE in a mountain village (3-5 KB/s up) keeps
# ahead, and a client that sends 18 MB at once and then a byte every 10 s is cut off 30 s after its burst, not
# credited for it (docs/abuse.md). A sliding window, not an average since the start: an average lets a burst buy an
# hour. The floor is low on purpose: a file is held only behind a form token and two uploads at most per source, so
# a slow attacker holds little, while a floor above a weak link's speed loses a resident's voice note.
BODY_WINDOW_SECONDS = 30.0
BODY_IDLE_SECONDS = 15.0
MIN_BODY_RATE = 2 * 1024


class FormError(Exception):
    """The body cannot be read as a form; `status` is the HTTP answer (400, 413 or 415)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_form(
    request: Request, limit: int, hold: Hold | None = None, files_allowed: FilesAllowed | None = None
) -> Form:
    """Parse the request body as urlencoded or multipart, with its files kept up to `limit` bytes of body.

    A multipart body past `limit` (declared or as it streams) keeps its text and loses its files
    (`Form.too_large`): the sender gets the form back filled in. It is read on up to DISCARD_FACTOR times `limit`;
    a body declared larger than that, or an urlencoded body over MAX_URLENCODED_BYTES, is refused (413).
    With a `hold`, every byte kept counts against the shared memory budget (`app.budget`): files that do not fit
    are dropped (`Form.over_budget`) and the text is still read; text that does not fit is a 503.
    With `files_allowed`, a file's bytes are kept only if it says yes to the text fields read before the file (the
    form's token comes first): a request without a token of ours takes no memory for files, whatever it sends.
    """
    size: int | None = None
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise FormError(400, "bad content-length")
        size = int(declared)
    elif hold is not None:
        hold.shared = False  # only a flooder streams a form without its length: it gets no share of the budget
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    if media_type == b"application/x-www-form-urlencoded":
        cap = min(limit, MAX_URLENCODED_BYTES)
        if size is not None and size > cap:
            raise FormError(413, "declared urlencoded body over the limit")
        return _parse_urlencoded(await _read_body(request, cap, hold))
    if media_type == b"multipart/form-data":
        if size is not None and size > limit * DISCARD_FACTOR:
            raise FormError(413, "declared body over the hard limit")
        boundary = options.get(b"boundary")
        if not boundary:
            raise FormError(400, "multipart without boundary")
        return await _parse_multipart(
            request, boundary, limit, hold, files_allowed, too_large=size is not None and size > limit
        )
    if size is not None and size > limit:
        raise FormError(413, "declared body over the limit")
    raise FormError(415, "not a form")


class Pace:
    """Whether a body keeps arriving: MIN_BODY_RATE over every window of BODY_WINDOW_SECONDS, the first from `start`,
    and never BODY_IDLE_SECONDS without data. `deadline` is when it fails if nothing more arrives."""

    def __init__(self, start: float) -> None:
        self._window = BODY_WINDOW_SECONDS
        self._least = MIN_BODY_RATE * BODY_WINDOW_SECONDS  # bytes every window must bring
        self._arrivals: deque[tuple[float, int]] = deque([(start, 0)])  # (when, bytes received by then)
        self._last = start
        self.received = 0

    def add(self, now: float, size: int) -> None:
        self.received += size
        self._last = now
        self._arrivals.append((now, self.received))
        # Arrivals that can never again be the start of a window short of bytes (later ones only raise the bar).
        while len(self._arrivals) > 1 and self._arrivals[0][1] <= self.received - self._least:
            self._arrivals.popleft()

    def deadline(self) -> float:
        """The window ending at T holds `received` minus what had arrived by T - window; it falls short once T - window
        reaches the first arrival after which fewer than the window's bytes came."""
        first = next(when for when, total in self._arrivals if total > self.received - self._least)
        return min(first + self._window, self._last + BODY_IDLE_SECONDS)


async def _stream(request: Request) -> AsyncIterator[bytes]:
    """The body's chunks, while it keeps its `Pace`."""
    stream = request.stream()
    loop = asyncio.get_running_loop()
    pace = Pace(loop.time())
    try:
        while True:
            try:
                async with asyncio.timeout_at(pace.deadline()):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise FormError(408, "body arrived too slowly") from exc
            except ClientDisconnect as exc:
                raise FormError(400, "client went away") from exc
            pace.add(loop.time(), len(chunk))
            yield chunk
    finally:
        await stream.aclose()


async def _read_body(request: Request, limit: int, hold: Hold | None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in _stream(request):
        size += len(chunk)
        if size > limit:
            raise FormError(413, "body over the limit")
        if hold is not None and not hold.take(len(chunk)):
            raise _over_budget(hold)
        chunks.append(chunk)
    return b"".join(chunks)


def _over_budget(hold: Hold) -> FormError:
    # A body of unknown length past its allowance is no browser's form (browsers declare the length): 413 at once.
    if not hold.shared:
        return FormError(413, "a body without Content-Length past its allowance")
    return FormError(503, "request bodies over the memory budget")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormError(400, "field is not UTF-8") from exc


def _parse_urlencoded(body: bytes) -> Form:
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=False, encoding="utf-8", errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError as exc:
        raise FormError(400, "body is not UTF-8") from exc
    except ValueError as exc:
        raise FormError(400, "too many fields") from exc
    form = Form()
    for name, value in pairs:
        if len(value) > MAX_FIELD_BYTES:
            raise FormError(413, "text field over the limit")
        form.fields[name] = value
    return form


# Asked, when a file part begins, with the text fields read so far: may this request's files be kept?
FilesAllowed = Callable[[Mapping[str, str]], bool]


class _MultipartCollector:
    """Callbacks for python-multipart's streaming parser; everything stays in memory, counted by `hold`."""

    def __init__(self, hold: Hold | None = None, files_allowed: FilesAllowed | None = None) -> None:
        self.form = Form()
        self.ended = False
        self._hold = hold
        self._files_allowed = files_allowed
        self._files_ok = files_allowed is None  # once yes, yes for the rest of the body
        self._parts = 0
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._file = False
        self._data = bytearray()
        self._file_bytes = 0  # of the current file part, kept or not

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_FIELDS:
            raise FormError(400, "too many parts")
        self._headers = {}
        self._data = bytearray()
        self._file_bytes = 0

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._file = b"filename" in options
        if self._file and not self._files_ok and self._files_allowed is not None:
            self._files_ok = self._files_allowed(self.form.fields)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        if self._file:
            self._file_bytes += size
            if not self._files_ok:
                # No token of ours before the file (none in a bot's form; a browser sends it first): its bytes are
                # read past, never held. A form whose token came later is answered as when memory was short. A body
                # of unknown length still gets no more than its allowance (413 past it), whatever it holds.
                if self._hold is not None and not self._hold.shared and not self._hold.take(size):
                    raise _over_budget(self._hold)
                self.form.over_budget = True
                return
            if self.form.over_budget or self.form.too_large:
                return
            if self._hold is not None and not self._hold.take(size):
                if not self._hold.shared:
                    raise _over_budget(self._hold)
                self._drop_files()
                self.form.over_budget = True
                return
        else:
            # Checked as it arrives: a "text" field must not grow to the body limit before it is refused.
            if len(self._data) + size > MAX_FIELD_BYTES:
                raise FormError(413, "text field over the limit")
            if self._hold is not None and not self._hold.take(size):
                raise _over_budget(self._hold)
        self._data.extend(data[start:end])

    def _drop_files(self) -> None:
        """Let go of every file of this request (the budget is full, or the body too large); read on for the text."""
        dropped = (len(self._data) if self._file else 0) + sum(len(upload.data) for upload in self.form.uploads)
        self.form.dropped += [upload.field for upload in self.form.uploads]
        self.form.uploads.clear()
        if self._file:
            self._data = bytearray()
        if self._hold is not None:
            self._hold.give_back(dropped)
            # Reading on for the text holds nothing of the source's share: another photo of theirs (or of a neighbour
            # behind the same carrier address) may come in meanwhile, however slowly this body is read to its end.
            self._hold.end()

    def too_large(self) -> None:
        """The body is past its limit: no file is kept from here on, the text still is."""
        if not self.form.too_large:
            self._drop_files()
            self.form.too_large = True

    def _part_end(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if disposition != b"form-data" or name is None:
            raise FormError(400, "part without a name")
        field_name = _decode(name)
        if b"filename" in options:
            # An empty file input still sends a part with filename=""; that is "no file chosen".
            if self._data and not (self.form.over_budget or self.form.too_large):
                self.form.uploads.append(Upload(field_name, bytes(self._data)))
            elif self._file_bytes:
                self.form.dropped.append(field_name)
        else:
            self.form.fields[field_name] = _decode(bytes(self._data))
        self._data = bytearray()

    def _end(self) -> None:
        self.ended = True


async def _parse_multipart(
    request: Request, boundary: bytes, limit: int, hold: Hold | None, files_allowed: FilesAllowed | None, *,
    too_large: bool = False,
) -> Form:
    collector = _MultipartCollector(hold, files_allowed)
    if too_large:
        collector.too_large()
    hard_limit = limit * DISCARD_FACTOR
    try:
        parser = MultipartParser(boundary, collector.callbacks(), max_size=hard_limit)  # type: ignore[arg-type]
    except (FormParserError, ValueError) as exc:
        raise FormError(400, "bad multipart boundary") from exc
    size = 0
    try:
        async for chunk in _stream(request):
            size += len(chunk)
            if size > hard_limit:
                raise FormError(413, "body over the hard limit")
            if size > limit:
                collector.too_large()  # the files go; the text before and after them is still read
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise FormError(400, "malformed multipart body") from exc
    if not collector.ended:
        raise FormError(400, "truncated multipart body")
    return collector.form
