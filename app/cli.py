"""The `tipbox` command: `serve` the form, `check` the configuration."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from app import logs
from app.settings import ConfigError, Settings, load_settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.main import create_app

    logs.configure(args.log_level)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        limit_concurrency=args.limit_concurrency,
    )
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    posts = settings.load_posts()
    mode = "development (embedded dev mailbox)" if settings.dev_mode else (
        f"SMTP {settings.smtp_host}:{settings.port} ({settings.smtp_security})"
    )
    print(f"configuration OK: {mode}")
    for post in posts.values():
        print(f"  /p/{post.slug}  {post.name}  → {post.mailbox}  [{', '.join(post.languages)}]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tipbox", description="Anonymous tip box for border-guard posts.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the form (uvicorn; no access log, no proxy headers)")
    serve.add_argument("--host", default=os.environ.get("TIPBOX_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("TIPBOX_PORT", "8000")))
    serve.add_argument("--log-level", default=os.environ.get("TIPBOX_LOG_LEVEL", "info"))
    serve.add_argument("--limit-concurrency", type=int, default=200, help="connections before 503 (default 200)")
    serve.set_defaults(run=_serve)
    check = commands.add_parser("check", help="validate the configuration and list the posts")
    check.set_defaults(run=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return int(args.run(args, settings))
    except ConfigError as exc:
        print(f"tipbox: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
