"""What operators watch (Prometheus): tips delivered and refused, floods held back, memory, the mail server's pace.

Counters by post, category and reason class only, never anything per source, per request or per time of a single
tip beyond what a counter's scrape shows: these figures leave the machine. They are served on an address of their
own (`TIPBOX_METRICS_ADDRESS`, loopback unless a host is given), never on the public port, by prometheus-client's
small HTTP server in a thread, which writes no log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

# Why a tip was not delivered, as a class an alert can select (`reason=~"mail_.*"`: the mail server said no).
REASONS = (
    "invalid",  # the form had problems (text missing or too long, a file refused): given back to be fixed
    "too_large",  # the body was over TIPBOX_MAX_UPLOAD_BYTES: files dropped, text given back
    "busy",  # the upload memory budget was full
    "expired",  # the form was open too long, or signed with another key
    "changed",  # a form sent before, sent again with other text
    "unavailable",  # the guard's storage (Redis) did not answer
    "mail_transient",  # the mail server failed for now (4xx, timeout, connection): "press Send again"
    "mail_too_large",  # the mail server refused the email's size (552)
    "mail_refused",  # the mail server refused it for good (other 5xx, AUTH, TLS)
    "mail_unconfirmed",  # the mail server took the whole email and never answered: it may have arrived
)
UNKNOWN_CATEGORY = "unknown"
# An SMTP hand-off: milliseconds on loopback Postfix, seconds to a provider, up to the timeout and one retry.
_SMTP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 45.0)


class _Budget(Protocol):
    used: int
    limit: int


class Metrics:
    """The counters, in a registry of their own (several apps in one process, as in tests, do not share them)."""

    def __init__(self, posts: Iterable[str], categories: Iterable[str]) -> None:
        # Loaded only where metrics are on (TIPBOX_METRICS_ADDRESS): the client takes a few MB of every process.
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        registry = self.registry
        self.delivered = Counter(
            "tipbox_tips_delivered", "Tips the mail server accepted (250 after DATA).", ["post", "category"],
            registry=registry,
        )
        self.refused = Counter(
            "tipbox_tips_refused", "Tips not delivered, by reason class; the sender got the form back with the text.",
            ["post", "category", "reason"], registry=registry,
        )
        self.rate_limited = Counter(
            "tipbox_tips_rate_limited", "Tips held back by the per-post or per-source rate limits.", ["post"],
            registry=registry,
        )
        self.decoys = Counter(
            "tipbox_decoys", "Submissions taken for a bot's and answered with a decoy page; nothing sent.", ["post"],
            registry=registry,
        )
        self.repeats = Counter(
            "tipbox_tips_repeated", "Forms sent again (reload, double tap), answered with their first receipt.",
            ["post"], registry=registry,
        )
        self.smtp_seconds = Histogram(
            "tipbox_smtp_send_seconds", "Time to hand one email to the SMTP server, retry included.", ["outcome"],
            buckets=_SMTP_BUCKETS, registry=registry,
        )
        self.upload_memory = Gauge(
            "tipbox_upload_memory_bytes", "Bytes of request bodies held in memory now, all requests together.",
            registry=registry,
        )
        self.upload_memory_limit = Gauge(
            "tipbox_upload_memory_limit_bytes", "TIPBOX_UPLOAD_MEMORY_BYTES.", registry=registry,
        )
        # Every series exists from the start at 0, so that `increase()` sees the first failure.
        categories = [*categories, UNKNOWN_CATEGORY]
        for post in posts:
            for counter in (self.rate_limited, self.decoys, self.repeats):
                counter.labels(post)
            for category in categories:
                self.delivered.labels(post, category)
                for reason in REASONS:
                    self.refused.labels(post, category, reason)
        for outcome in ("delivered", "failed"):
            self.smtp_seconds.labels(outcome)

    def watch_budget(self, budget: _Budget) -> None:
        """Report `budget`'s bytes in use at every scrape."""
        self.upload_memory.set_function(lambda: budget.used)
        self.upload_memory_limit.set(budget.limit)

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """Serve the registry on `host`:`port` in a thread (TIPBOX_METRICS_ADDRESS); returns what stops it."""
        from prometheus_client import start_http_server

        server, thread = start_http_server(port, host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
