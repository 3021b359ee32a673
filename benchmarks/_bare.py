"""The stack's floor: a bare Starlette `PlainTextResponse`, served with tipbox's production uvicorn settings.

Run as `python benchmarks/_bare.py PORT`. The keyword arguments mirror app/cli.py `_serve` (keep them in step),
except that this uses uvicorn's own httptools protocol: tipbox's hardened one is part of what tipbox costs.
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


app = Starlette(routes=[Route("/", hello), Route("/healthz", hello)])


def main(port: int) -> None:
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        limit_concurrency=200,
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
