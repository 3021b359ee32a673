"""The outermost ASGI layer: the sender's address and identifying headers are gone before anything else runs.

Only a short allowlist of request headers reaches the app (what it needs to read a form and pick a language).
Every response gets strict security headers, and no response may set a cookie.

The one thing derived from the address that leaves this layer is `scope[guard.SOURCE_KEY]`, set for a POST (a
submitted tip; every other request gets None): an HMAC of the address (an IPv6 address's /64) under a random key
that lives only in this process's memory and is replaced every hour. The rate limiter counts per source with it;
nothing can turn it back into an address once the hour's key is gone (docs/abuse.md, "Source keys").

Behind a reverse proxy every request comes from the proxy's address. When the peer is one of the trusted proxies
(`TIPBOX_TRUSTED_PROXIES`), the address the source key is made of is taken from `X-Forwarded-For` (or, without
it, `Forwarded`): the right-most hop that is not itself a trusted proxy, the one the last trusted proxy saw. That
address is used for the key and nothing else: the headers are not on the allowlist, so no route, log or page sees
them. A peer that is not trusted is its own source, whatever headers it sends.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.guard import SOURCE_KEY
from app.pages import FORM_PAGE_HEADER

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
_DROPPED_RESPONSE_HEADERS = frozenset({b"set-cookie", b"server", b"x-powered-by", FORM_PAGE_HEADER})
PERMISSIONS = b"camera=(), microphone=(), geolocation=(), interest-cohort=()"
# A form page may record a voice note itself (static/tipbox.js): the microphone for the page's own origin, never for
# a frame or another site. Only form pages say they are one (app.pages marks them).
FORM_PERMISSIONS = b"camera=(), microphone=(self), geolocation=(), interest-cohort=()"
# Served at an https:// public address: phones remember to never ask over plain http again (a year).
HSTS = b"max-age=31536000"


def content_security_policy(style_sources: Iterable[str]) -> str:
    """Same-origin only; inline styles only by hash; no inline script; no framing."""
    styles = " ".join(style_sources)
    return (
        "default-src 'none'; "
        f"style-src {styles}; "
        "img-src 'self' data: blob:; "
        # A recording or a chosen voice note is played back from the phone's memory.
        "media-src blob:; "
        "script-src 'self'; "
        "connect-src 'self'; "
        "form-action 'self'; "
        "base-uri 'none'; "
        "frame-ancestors 'none'"
    )


_HOUR = 3600


class SourceKeys:
    """Address → source key, under a random key kept only in memory and replaced at every hour boundary."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._hour = -1
        self._key = b""

    def __call__(self, host: str) -> str:
        hour = int(self._clock() // _HOUR)
        if hour != self._hour:
            # A fresh random key, never derived from anything stored: last hour's keys cannot be recomputed.
            self._hour, self._key = hour, secrets.token_bytes(32)
        return hmac.new(self._key, _network(host), hashlib.sha256).hexdigest()[:32]


def _network(host: str) -> bytes:
    """What one source is: an IPv4 address, or an IPv6 /64 (one phone's prefix); anything else as given."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return b"name:" + host.encode("utf-8", "replace")
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped.packed
        return ipaddress.IPv6Network((address, 64), strict=False).network_address.packed[:8]
    return address.packed


class TrustedProxies:
    """The proxies whose forwarding headers are believed: addresses or networks (`TIPBOX_TRUSTED_PROXIES`)."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(network.strip(), strict=False) for network in networks)

    def trusts(self, host: str) -> bool:
        address = _address(host)
        return address is not None and any(address in network for network in self.networks)

    def client(self, peer: str, headers: Iterable[tuple[bytes, bytes]]) -> str:
        """The address to key on: `peer`, or for a trusted peer the right-most untrusted hop it forwarded."""
        if not self.networks or not self.trusts(peer):
            return peer
        hops = _forwarded_hops(headers)
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer  # every hop is a trusted proxy: the first one is as far as anyone saw


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_hops(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The client addresses a proxy chain recorded, oldest first: X-Forwarded-For if present, else Forwarded.

    Both headers may appear more than once (each proxy may add a line); their lines are read in order. A hop that
    is not an address (`unknown`, an obfuscated `_name`) is kept as it is: it still names one source.
    """
    forwarded_for: list[str] = []
    forwarded: list[str] = []
    for name, value in headers:
        if name == b"x-forwarded-for":
            forwarded_for += [hop.strip() for hop in value.decode("latin-1").split(",")]
        elif name == b"forwarded":
            forwarded += _forwarded_for(value.decode("latin-1"))
    hops = forwarded_for if forwarded_for else forwarded
    return [_strip_port(hop) for hop in hops if hop]


def _forwarded_for(value: str) -> list[str]:
    """The `for=` of each element of an RFC 7239 Forwarded header, in order (quoted strings hold no commas here)."""
    hops = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, _, token = pair.strip().partition("=")
            if key.strip().lower() == "for":
                hops.append(token.strip().strip('"'))
    return hops


def _strip_port(hop: str) -> str:
    """`[2001:db8::1]:4711` → `2001:db8::1`, `192.0.2.1:80` → `192.0.2.1`; a bare IPv6 address stays whole."""
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else hop
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


class PrivacyMiddleware:
    """Strip the client address and non-allowlisted headers; add security headers; refuse cookies.

    Every response gets the same headers, but for the Permissions-Policy: a form page (marked by `app.pages` with
    FORM_PAGE_HEADER, which never leaves this layer) may use the microphone, from its own origin only.
    """

    def __init__(
        self, app: ASGIApp, *, csp: str, sources: SourceKeys | None = None, trusted: TrustedProxies | None = None,
        hsts: bool = False,
    ) -> None:
        self.app = app
        self.sources = sources or SourceKeys()
        self.trusted = trusted or TrustedProxies(())
        self.security_headers = security_headers(csp)
        self.form_headers = security_headers(csp, form=True)
        if hsts:
            # Served at an https:// public address: phones remember to never ask over plain http again (a year).
            # Not includeSubDomains: the operator's other names are not tipbox's to decide.
            for headers in (self.security_headers, self.form_headers):
                headers.append((b"strict-transport-security", HSTS))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        client = scope.get("client")
        # Only a submitted tip is counted per source; a page view needs no key (the HMAC is per-request work).
        posted = scope.get("method") == "POST"
        if client and posted:
            scope[SOURCE_KEY] = self.sources(self.trusted.client(str(client[0]), scope["headers"]))
        else:
            scope[SOURCE_KEY] = None
        scope["client"] = None
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k in ALLOWED_REQUEST_HEADERS]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                given = message.get("headers", [])
                form = any(k.lower() == FORM_PAGE_HEADER for k, _ in given)
                headers = [(k, v) for k, v in given if k.lower() not in _DROPPED_RESPONSE_HEADERS]
                message = {**message, "headers": headers + (self.form_headers if form else self.security_headers)}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def security_headers(csp: str, *, form: bool = False) -> list[tuple[bytes, bytes]]:
    """The headers every response carries (`form`: a form page's, which may use the microphone)."""
    return [
        (b"content-security-policy", csp.encode()),
        (b"referrer-policy", b"no-referrer"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"permissions-policy", FORM_PERMISSIONS if form else PERMISSIONS),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
    ]
