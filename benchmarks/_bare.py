"""The stack's floor: a bare Starlette `PlainTextResponse`, served with tipbox's production uvicorn settings.

Run as `python benchmarks/_bare.py PORT`. It takes app/cli.py's own uvicorn options, except that it uses uvicorn's
own httptools protocol: tipbox's hardened one is part of what tipbox costs.
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from app.cli import DEFAULT_LIMIT_CONCURRENCY, UVICORN_OPTIONS


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


app = Starlette(routes=[Route("/", hello), Route("/healthz", hello)])


def main(port: int) -> None:
    uvicorn.run(
        app, host="127.0.0.1", port=port, http="httptools",
        limit_concurrency=DEFAULT_LIMIT_CONCURRENCY, **UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
