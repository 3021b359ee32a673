"""The `tipbox` command: `serve` the form, `check` the configuration, print a `poster` or mail `filters`, take
an `answer`, write the `proxy-pages`."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app import filters, logs
from app.settings import ConfigError, Settings, load_settings

logger = logging.getLogger("app.cli")

DEFAULT_LIMIT_CONCURRENCY = 1000
CONFIG_ERROR = 2  # the exit status of a configuration error (deploy/tipbox.service: RestartPreventExitStatus=2)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# glibc's mallopt() parameters (malloc.h), and the values `tipbox serve` sets.
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8
_MMAP_THRESHOLD, _ARENA_MAX = 128 * 1024, 2
# Production uvicorn settings (benchmarks/_bare.py serves the stack's floor with the same ones).
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    # No websockets: uvicorn's handshake logs the client's address and port before any middleware runs.
    "ws": "none",
    "log_config": None,
    "access_log": False,
    "proxy_headers": False,
    "server_header": False,
    "timeout_keep_alive": 5,
    "timeout_graceful_shutdown": 10,
}


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app import checks, hardening
    from app.main import create_app

    level = str(args.log_level).lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"--log-level (TIPBOX_LOG_LEVEL): {args.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    port = _port(args.port)
    problem = checks.local(settings, args.host, port)
    if problem is not None:
        raise ConfigError(problem)
    give_freed_memory_back()  # uploads are held in memory: after a burst, the process shrinks back
    logs.configure(level)
    # A mail server that cannot take the largest email would refuse tips with files every time: stop here instead.
    problem, warning = asyncio.run(checks.startup(settings))
    if problem is not None:
        raise ConfigError(problem)
    if warning is not None:
        logger.warning("%s; tips wait for it (\"not sent yet\") until it answers", warning)
    if not settings.dev_mode and settings.public_url is None:
        logger.warning("TIPBOX_PUBLIC_URL is not set: posters would print %s", settings.base_url)
    app = create_app(settings)
    # httptools plus a header deadline and size cap; keep-alive, concurrency and body deadlines: docs/abuse.md.
    uvicorn.run(
        app, host=args.host, port=port, http=hardening.protocol(hsts=settings.hsts),
        limit_concurrency=args.limit_concurrency, **UVICORN_OPTIONS,
    )
    return 0


def _port(given: int | None) -> int:
    """--port, or TIPBOX_PORT, or 8000; a TIPBOX_PORT that is not a number is a configuration error (exit 2)."""
    if given is not None:
        return given
    value = os.environ.get("TIPBOX_PORT", "8000")
    if not value.strip().isdigit():
        raise ConfigError(f"TIPBOX_PORT: {value!r} is not a port number (1-65535)")
    return int(value)


def give_freed_memory_back() -> bool:
    """Have glibc hand large freed buffers straight back to the system; False where that does not apply.

    By default glibc raises its mmap threshold each time a large block is freed (up to 32 MB), so after a burst
    of uploads their buffers are carved from the heap and the process keeps them: in benchmarks/attachments.py
    20 uploads of 15 MB left it at 270 MB instead of 90. A fixed 128 KiB threshold maps every large buffer on its
    own and unmaps it when freed; two arenas stop each worker thread from keeping a heap of its own. Called once
    by `tipbox serve` as the process starts, before any thread; MALLOC_MMAP_THRESHOLD_ / MALLOC_ARENA_MAX in the
    environment win.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and done
    if "MALLOC_ARENA_MAX" not in os.environ:
        done = bool(mallopt(_M_ARENA_MAX, _ARENA_MAX)) and done
    return done


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from app import checks

    posts = settings.load_posts()
    mode = "development (embedded dev mailbox)" if settings.dev_mode else (
        f"SMTP {settings.smtp_host}:{settings.port} ({settings.smtp_security})"
    )
    report = asyncio.run(checks.run(settings, send_test=args.send_test))
    print(f"configuration {'OK' if report.ok else 'NOT OK'}: {mode}")
    for post in posts.values():
        print(f"  /p/{post.slug}  {post.name}  → {post.mailbox}  [{', '.join(post.languages)}]")
    if settings.answers_on:
        collector = f"IMAP {settings.imap_host}:{settings.imap_port}" if settings.imap_host else (
            "the dev mailbox" if settings.dev_mode else "tipbox answer only"
        )
        print(f"answers on: replies to {settings.reply_address} ({collector}), store {settings.answers_store_url}")
    for line in report.lines:
        print(line)
    for problem in report.problems:  # one line each, on stderr, as a configuration error is
        print(f"tipbox: {problem}", file=sys.stderr)
    return 0 if report.ok else 1


def _proxy_pages(args: argparse.Namespace, settings: Settings) -> int:
    from app import proxypages

    for path in proxypages.write(args.directory, settings.locales_dir):
        print(path)
    return 0


def _poster(args: argparse.Namespace, settings: Settings) -> int:
    from app import poster

    try:
        written = poster.make(
            settings, slug=args.post, every=args.all, lang=args.lang, size=args.size, layout=args.layout,
            out=args.out, png=args.png, font=args.font,
        )
    except poster.PosterError as exc:
        print(f"tipbox: poster: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def _filters(args: argparse.Namespace, settings: Settings) -> int:
    posts = settings.load_posts()
    problem = _filters_problem(args, settings, list(posts))
    if problem is not None:
        print(f"tipbox: filters: {problem}", file=sys.stderr)
        return 1
    try:
        rules = filters.sorting(settings.sender, list(posts.values()), args.post or [], settings.locales_dir)
        text = filters.render(args.format, rules, folder_base=args.folder_base, folder_prefix=args.folder_prefix)
    except ValueError as exc:  # names Gmail cannot tell apart, an address Thunderbird would need quoted
        print(f"tipbox: filters: {exc}", file=sys.stderr)
        return 1
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(args.out)
    return 0


def _filters_problem(args: argparse.Namespace, settings: Settings, slugs: list[str]) -> str | None:
    """Why these options cannot make working filters, or None."""
    unknown = [slug for slug in args.post or [] if slug not in slugs]
    if unknown:
        return f"no post {unknown[0]!r} (posts: {', '.join(slugs)})"
    if args.format == "thunderbird" and args.folder_base is None:
        return "thunderbird needs --folder-base, the URI of the folder the tip folders are in (docs/can-bo.md, 6)"
    if args.format != "thunderbird" and args.folder_base is not None:
        return "--folder-base is for --format thunderbird only"
    if args.format != "sieve" and args.folder_prefix:
        return "--folder-prefix is for --format sieve only"
    if args.format != "folders" and settings.mail_from is None:
        # A development run sends From tipbox@localhost: filters for that would match no real tip.
        return "the filters match the address tips come from: set TIPBOX_MAIL_FROM as the service has it"
    return None


def _answer(args: argparse.Namespace, settings: Settings) -> int:
    """One officer's reply on standard input (a Postfix pipe transport or alias); sysexits codes for the MTA."""
    import asyncio

    from app.answers.command import EX_TEMPFAIL, answer, read_message
    from app.answers.service import Answers
    from app.delivery import Mailer
    from app.main import smtp_server

    logs.configure(os.environ.get("TIPBOX_LOG_LEVEL", "info"))
    if not settings.answers_on:
        print("tipbox: answer: answers are off (set TIPBOX_REPLY_TO)", file=sys.stderr)
        return EX_TEMPFAIL  # the MTA keeps the reply until answers are configured
    if settings.secret_key is None:
        # Only a development run gets this far without one, and its random key matches no tip: every reply would be
        # dropped for good. Postfix's pipe passes no environment; the settings file is then the usual cause.
        print("tipbox: answer: TIPBOX_SECRET_KEY is not set, so no reply can be matched to its tip "
              "(the MTA runs this command with an empty environment: add --env-file /etc/tipbox/tipbox.env)",
              file=sys.stderr)
        return EX_TEMPFAIL
    raw = read_message(sys.stdin.buffer)
    answers = Answers(settings, settings.load_posts(), slots=2)
    server = smtp_server(settings)
    mailer = Mailer(server) if server is not None else None  # a development run has no SMTP server to confirm by

    async def run() -> int:
        try:
            return await answer(raw, answers.ingestion, answers.sender(lambda: mailer) if mailer else None)
        finally:
            await answers.store.close()

    return asyncio.run(run())


def load_env_file(path: Path) -> None:
    """Put the settings file's KEY=VALUE lines into the environment, where a variable is not set already.

    Read much as systemd's EnvironmentFile reads it (comments, quotes, no `$` expansion: a password keeps its
    dollar signs), so the service and the command see the same values."""
    from dotenv import dotenv_values

    if not path.is_file():
        raise ConfigError(f"--env-file: {path} is not a readable file")
    try:
        values = dotenv_values(path, interpolate=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--env-file: cannot read {path} ({type(exc).__name__})") from None
    for name, value in values.items():
        if value is not None:
            os.environ.setdefault(name, value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tipbox", description="Anonymous tip box for border-guard posts.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the form (uvicorn; no access log, no proxy headers)")
    serve.add_argument("--host", default=os.environ.get("TIPBOX_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=None, help="default: TIPBOX_PORT, or 8000")
    serve.add_argument("--log-level", default=os.environ.get("TIPBOX_LOG_LEVEL", "info"))
    serve.add_argument(
        "--limit-concurrency", type=int, default=DEFAULT_LIMIT_CONCURRENCY,
        help=f"open connections before new requests get 503 ({DEFAULT_LIMIT_CONCURRENCY})"
    )
    serve.set_defaults(run=_serve)
    check = commands.add_parser(
        "check", help="validate the configuration, log in to the SMTP server (no mail sent), ping Redis, list the posts"
    )
    check.add_argument("--send-test", action="store_true", help="also send one test email to each post's mailbox")
    check.set_defaults(run=_check)
    pages = commands.add_parser("proxy-pages", help="write the reverse proxy's own error pages (docs/deploy.md)")
    pages.add_argument("directory", type=Path, help="where the proxy reads them, e.g. /etc/tipbox/pages")
    pages.set_defaults(run=_proxy_pages)
    poster = commands.add_parser("poster", help="write a print-ready PDF poster or sheet of pocket cards")
    which = poster.add_mutually_exclusive_group()
    which.add_argument("--post", metavar="SLUG", help="the post (default: the first configured)")
    which.add_argument("--all", action="store_true", help="one file per configured post (--out is a folder)")
    poster.add_argument("--lang", choices=["vi", "hmn", "both"], help="default: both where the post offers both")
    poster.add_argument("--size", choices=["A4", "A3", "A5"], type=str.upper, default="A4")
    poster.add_argument("--layout", choices=["poster", "cards"], default="poster", help="cards: 8 per sheet")
    poster.add_argument("--out", type=Path, metavar="FILE", help="default: tipbox-LAYOUT-SLUG-LANG-SIZE.pdf here")
    poster.add_argument("--png", action="store_true", help="also write a PNG preview beside the PDF (pdftoppm)")
    poster.add_argument("--font", type=Path, metavar="TTF", help="a TrueType font to use instead of the default")
    poster.set_defaults(run=_poster)
    sort = commands.add_parser("filters", help="print mail filters that sort tips into one folder per category")
    sort.add_argument("--format", choices=filters.FORMATS, required=True, help="folders: the folders to make first")
    sort.add_argument(
        "--post", metavar="SLUG", action="append",
        help="folders of this post's own, for its tips only; repeat for several posts (default: every post's tips)",
    )
    sort.add_argument("--folder-base", metavar="URI", help="thunderbird: the URI of the folder the tip folders are in")
    sort.add_argument(
        "--folder-prefix", metavar="PREFIX", default="",
        help="sieve: what the server puts before folder names, e.g. INBOX. (default: nothing)",
    )
    sort.add_argument("--out", type=Path, metavar="FILE", help="write to FILE instead of standard output")
    sort.set_defaults(run=_filters)
    take = commands.add_parser("answer", help="take one officer's reply from standard input (for the MTA)")
    take.add_argument(
        "--env-file", type=Path, metavar="PATH",
        help="read TIPBOX_* settings from PATH (KEY=VALUE lines, as /etc/tipbox/tipbox.env) first; the environment "
        "wins (Postfix's pipe runs commands with an empty one)",
    )
    take.set_defaults(run=_answer)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "env_file", None) is not None:
            load_env_file(args.env_file)
        settings = load_settings()
        return int(args.run(args, settings))
    except ConfigError as exc:
        # Exit status 2, which the systemd unit does not restart on (RestartPreventExitStatus=2): a setting is wrong,
        # and starting again every few seconds cannot fix it.
        print(f"tipbox: configuration error: {exc}", file=sys.stderr)
        return 75 if args.command == "answer" else CONFIG_ERROR  # EX_TEMPFAIL: the MTA keeps the reply, no bounce


if __name__ == "__main__":
    sys.exit(main())
