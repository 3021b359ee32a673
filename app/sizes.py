"""Size limits that agree, all derived from the settings (`TIPBOX_MAX_UPLOAD_BYTES` first of all).

A limit set in one place and forgotten in another is how a resident ends up told "press Send again" for a tip
that can never go: a proxy that refuses bodies tipbox would take (its own English error page, the text lost), or a
mail server that refuses emails tipbox can write (552 on every try). So every figure the deployment kit needs is
computed here, `tipbox check` prints them, and tests/test_deploy.py holds the kit's files to them:

- tipbox reads a request body to the end up to `read_limit` (four times its own limit, `app.forms`), keeping the
  text of a body that is too large; the proxy in front is set to exactly that (`proxy_body_limit`), so a body over
  tipbox's limit is always answered by tipbox, in the sender's language, with the text kept;
- the largest email tipbox can write (`largest_email`): the files as base64 plus the text, twice (plain and HTML),
  every character at its widest, plus headers. The SMTP server's SIZE must be at least that (`too_large_for`);
- Postfix's `message_size_limit` in the kit (`mta_size_limit`) and the service's memory ceiling (`memory_max`);
- how long the proxy waits for tipbox (`proxy_wait_seconds`): never less than tipbox itself lets a slow upload
  take (the proxy's largest body at tipbox's slowest accepted pace, `app.forms`) and then the mail server answer.
"""

from __future__ import annotations

import math

from app.delivery import RETRY_DELAY_SECONDS
from app.forms import BODY_WINDOW_SECONDS, DISCARD_FACTOR, MIN_BODY_RATE
from app.settings import Settings
from app.tips import SHORT_FIELDS

_BASE64_LINE = 76  # app.mime writes base64 in lines of 76 characters
# A character of typed text at its widest in the email: 4 UTF-8 bytes, each "=XX" in quoted-printable...
_WIDEST_TEXT_BYTES = 12
# ...plus a soft line break ("=" CRLF) every 73 characters or so of quoted-printable.
_QP_LINE_GROWTH = 76 / 73
# Each file's part: its headers (type, encoding, disposition, Content-ID with the sender's domain), boundary lines,
# its line in the text and HTML listings, and the base64 padding and last line break of a file split from the rest.
_PER_FILE = 1024
# The rest of the email: the two templates' own words (quoted-printable), the headers, the multipart framing.
_FIXED = 48 * 1024
# What a mail server adds before it counts (Received:, Return-Path:, its queue's envelope records).
_MTA_HEADROOM = 64 * 1024
_MB = 1_000_000
_MIB = 1024 * 1024
# The service's memory beyond the upload budget (which also holds each decode's reservation): the process (~90 MB),
# the emails in flight and the answers' key derivations. Measured at peak: 382 MB, 402 MB with the worst files, with
# the default 200 MB budget (docs/benchmarks.md, "The service under load"); the headroom is for what was not measured.
_MEMORY_BEYOND_BUDGET = 400 * _MIB
# Cleaning a tip's files once its body is in (re-encoding the photos, rebuilding the voice notes): a few seconds
# measured (docs/benchmarks.md); a minute is the margin for a loaded machine.
_CLEANING_SECONDS = 60


def request_limit(settings: Settings) -> int:
    """The largest body tipbox accepts with its files (the uploads plus room for the text and framing)."""
    return settings.max_body_bytes


def read_limit(settings: Settings) -> int:
    """The largest body tipbox reads to the end: past `request_limit` it drops the files and keeps the text."""
    return settings.max_body_bytes * DISCARD_FACTOR


def proxy_body_limit(settings: Settings) -> int:
    """The reverse proxy's body limit: tipbox's limit plus a margin up to `read_limit`, so that tipbox, not the
    proxy, answers every body over its limit (in the sender's language, the text kept)."""
    return read_limit(settings)


def base64_bytes(size: int) -> int:
    """The bytes `size` bytes of a file take in the email: base64 in lines of 76, CRLF between and after them."""
    characters = 4 * math.ceil(size / 3)
    lines = math.ceil(characters / _BASE64_LINE)
    return characters + 2 * max(0, lines - 1) + 2


def largest_email(settings: Settings) -> int:
    """An upper bound of the bytes of any email tipbox can write with these settings (tests/test_sizes.py writes the
    worst case and checks it stays under, and close)."""
    posts = settings.load_posts().values()
    # Cleaned files never total more than TIPBOX_MAX_UPLOAD_BYTES (app.attachments refuses more).
    files = base64_bytes(settings.max_upload_bytes) + settings.max_files * _PER_FILE if settings.max_files else 0
    typed = settings.max_text_chars + sum(SHORT_FIELDS.values())
    # The post's name is in the subject, both texts and their titles; the addresses in headers and listings.
    configured = 4 * max(len(post.name) for post in posts) + 2 * max(len(post.mailbox) for post in posts)
    configured += 4 * len(settings.sender)
    text = 2 * math.ceil((typed + configured) * _WIDEST_TEXT_BYTES * _QP_LINE_GROWTH)
    return files + text + _FIXED


def too_large_for(settings: Settings, advertised: int | None) -> str | None:
    """One line naming both numbers if the largest email is over the SMTP server's SIZE; None if it fits (or the
    server states no limit: no SIZE extension, or SIZE 0)."""
    if not advertised:
        return None
    largest = largest_email(settings)
    if largest <= advertised:
        return None
    return (
        f"the SMTP server takes emails of at most {advertised:,} bytes (SIZE), but a tip can make an email of "
        f"{largest:,} bytes (TIPBOX_MAX_UPLOAD_BYTES={settings.max_upload_bytes:,} as base64, plus text): lower "
        f"TIPBOX_MAX_UPLOAD_BYTES or raise the server's limit (Postfix: message_size_limit = "
        f"{mta_size_limit(settings)})"
    )


def mta_size_limit(settings: Settings) -> int:
    """Postfix's `message_size_limit` for the kit: the largest email plus what Postfix adds, in whole MB."""
    return math.ceil((largest_email(settings) + _MTA_HEADROOM) / _MB) * _MB


def memory_max(settings: Settings) -> str:
    """The service's memory ceiling (systemd `MemoryMax=`, Compose `mem_limit`), in whole 100 MiB: the upload budget
    (decodes included) plus the process and the emails in flight."""
    mebibytes = math.ceil((settings.upload_memory_bytes + _MEMORY_BEYOND_BUDGET) / (100 * _MIB)) * 100
    return f"{mebibytes}M"


def upload_seconds(settings: Settings) -> int:
    """The longest a body can take and still be read by tipbox: the proxy's largest body at the slowest pace tipbox
    accepts (MIN_BODY_RATE in every window of BODY_WINDOW_SECONDS), plus the first window."""
    return math.ceil(proxy_body_limit(settings) / MIN_BODY_RATE + BODY_WINDOW_SECONDS)


def answer_seconds(settings: Settings) -> int:
    """The longest tipbox takes to answer once the body is in: cleaning the files, then two SMTP attempts, each up
    to its commands' timeouts (connect, EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA) and the wait for the answer
    to the message."""
    attempt = 8 * settings.smtp_timeout + settings.smtp_data_timeout
    return math.ceil(_CLEANING_SECONDS + 2 * attempt + RETRY_DELAY_SECONDS)


def proxy_wait_seconds(settings: Settings) -> int:
    """How long the proxy waits for tipbox's answer, in whole minutes (Caddy's `read_timeout` counts from the
    request's start, the slow upload included): never less than tipbox itself would take."""
    return math.ceil((upload_seconds(settings) + answer_seconds(settings)) / 60) * 60


def figures(settings: Settings) -> dict[str, str]:
    """The kit's figures for these settings, as `tipbox check` prints them (name: value with its unit)."""
    return {
        "tipbox body limit": f"{request_limit(settings):,} bytes",
        "proxy body limit (nginx client_max_body_size, Caddy request_body max_size)":
            f"{proxy_body_limit(settings)} bytes",
        "largest email": f"{largest_email(settings):,} bytes",
        "Postfix message_size_limit": str(mta_size_limit(settings)),
        "memory (systemd MemoryMax, Compose mem_limit)": memory_max(settings),
        "proxy wait for tipbox (Caddy read_timeout)": f"{proxy_wait_seconds(settings)}s",
        "proxy wait after the body (nginx proxy_read_timeout)": f"{math.ceil(answer_seconds(settings) / 60) * 60}s",
    }
