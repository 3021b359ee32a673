"""The outermost ASGI layer: the sender's address and identifying headers are gone before anything else runs.

Only a short allowlist of request headers reaches the app (what it needs to read a form and pick a language).
Every response gets strict security headers, and no response may set a cookie.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOWED_REQUEST_HEADERS = frozenset(
    {
        b"host",
        b"content-type",
        b"content-length",
        b"transfer-encoding",
        b"accept",
        b"accept-language",
        b"accept-encoding",
        b"if-none-match",
    }
)
_DROPPED_RESPONSE_HEADERS = frozenset({b"set-cookie", b"server", b"x-powered-by"})


def content_security_policy(style_sources: Iterable[str]) -> str:
    """Same-origin only; inline styles only by hash; no inline script; no framing."""
    styles = " ".join(style_sources)
    return (
        "default-src 'none'; "
        f"style-src {styles}; "
        "img-src 'self' data: blob:; "
        "script-src 'self'; "
        "connect-src 'self'; "
        "form-action 'self'; "
        "base-uri 'none'; "
        "frame-ancestors 'none'"
    )


class PrivacyMiddleware:
    """Strip the client address and non-allowlisted headers; add security headers; refuse cookies."""

    def __init__(self, app: ASGIApp, *, csp: str) -> None:
        self.app = app
        self.security_headers: list[tuple[bytes, bytes]] = [
            (b"content-security-policy", csp.encode()),
            (b"referrer-policy", b"no-referrer"),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"cross-origin-resource-policy", b"same-origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        scope["client"] = None
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k in ALLOWED_REQUEST_HEADERS]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _DROPPED_RESPONSE_HEADERS]
                message = {**message, "headers": headers + self.security_headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
