"""Metrics for operators: counters by post, category and reason, never per source, on an address of their own."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx2
import pytest
from starlette.testclient import TestClient

from app.budget import MemoryBudget
from app.main import create_app
from app.metrics import REASONS, Metrics
from app.settings import Settings
from tests.helpers import form_fields, post_tip
from tests.mailsink import Sink, free_port


def test_every_series_is_there_from_the_start_and_served_on_its_own_port() -> None:
    metrics = Metrics(["ncs", "apc"], ["drugs", "other"])
    budget = MemoryBudget(1_000_000)
    metrics.watch_budget(budget)
    budget.used = 12_345
    metrics.delivered.labels("ncs", "drugs").inc()
    port = free_port()
    stop = metrics.serve("127.0.0.1", port)
    try:
        text = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stop()
    assert 'tipbox_tips_delivered_total{category="drugs",post="ncs"} 1.0' in text
    assert 'tipbox_tips_delivered_total{category="other",post="apc"} 0.0' in text
    for reason in REASONS:  # an alert on increase() sees the first failure of each kind
        assert f'tipbox_tips_refused_total{{category="unknown",post="ncs",reason="{reason}"}} 0.0' in text
    assert "tipbox_upload_memory_bytes 12345.0" in text and "tipbox_upload_memory_limit_bytes 1e+06" in text
    assert 'tipbox_smtp_send_seconds_count{outcome="delivered"} 0.0' in text
    # Labels are configuration only: nothing per source, per request or per receipt.
    labels = {label.split("=")[0] for line in text.splitlines() if "{" in line and not line.startswith("#")
              for label in line[line.index("{") + 1 : line.index("}")].split(",")}
    assert labels <= {"post", "category", "reason", "outcome", "le"}
    with pytest.raises(httpx2.TransportError):
        httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=2)  # stopped


def test_two_apps_in_one_process_count_apart() -> None:
    one, two = Metrics(["ncs"], ["drugs"]), Metrics(["ncs"], ["drugs"])
    one.decoys.labels("ncs").inc()
    assert one.registry.get_sample_value("tipbox_decoys_total", {"post": "ncs"}) == 1
    assert two.registry.get_sample_value("tipbox_decoys_total", {"post": "ncs"}) == 0


def test_every_metric_the_deploy_guide_names_exists() -> None:
    """docs/deploy.md's list and alert rules cannot name a series that is not served."""
    from pathlib import Path

    from prometheus_client import generate_latest

    guide = (Path(__file__).parent.parent / "docs" / "deploy.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\btipbox_[a-z_]+\b", guide))
    served = set(re.findall(r"^(tipbox_[a-z_]+)", generate_latest(Metrics(["ncs"], ["drugs"]).registry).decode(),
                            re.MULTILINE))
    # A histogram is served as its _bucket, _count and _sum series.
    missing = [name for name in named if not any(line in (name, f"{name}_count") for line in served)]
    assert named and missing == []


def test_counters_move_with_tips_and_only_the_metrics_address_serves_them(
    sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    port = free_port()
    settings = make_settings(sink, metrics_address=f"127.0.0.1:{port}", post_rate="2/hour")
    with TestClient(create_app(settings)) as client:
        scrape = f"http://127.0.0.1:{port}/metrics"
        before = httpx2.get(scrape, timeout=5).text
        assert _value(before, "tipbox_tips_delivered_total", post="post", category="drugs") == 0
        post_tip(client, category="drugs", what="Có người bán ma túy")
        post_tip(client, category="drugs", what="")  # given back: "write what happened"
        sink.handler.reply = "552 5.3.4 Message size exceeds fixed limit"
        post_tip(client, category="weapons", what="Súng kíp")  # refused for good (no files: "cannot receive")
        sink.handler.reply = None
        client.post("/", data={**form_fields(client), "hp_extra": "bot", "what": "x"})  # a bot: decoy page
        post_tip(client, category="other", what="Lần thứ ba")  # over the post's 2 an hour (a refused one counts)
        for path in ("/metrics", "/metrics/"):
            assert client.get(path).status_code == 404  # never on the public port
        after = httpx2.get(scrape, timeout=5).text
    assert _value(after, "tipbox_tips_delivered_total", post="post", category="drugs") == 1
    assert _value(after, "tipbox_tips_refused_total", post="post", category="drugs", reason="invalid") == 1
    assert _value(after, "tipbox_tips_refused_total", post="post", category="weapons", reason="mail_refused") == 1
    assert _value(after, "tipbox_decoys_total", post="post") == 1
    assert _value(after, "tipbox_tips_rate_limited_total", post="post") == 1
    assert _value(after, "tipbox_smtp_send_seconds_count", outcome="delivered") == 1
    assert _value(after, "tipbox_smtp_send_seconds_count", outcome="failed") == 1
    assert _value(after, "tipbox_upload_memory_bytes") == 0  # every request's bytes given back
    with pytest.raises(httpx2.TransportError):  # stopped with the app
        httpx2.get(scrape, timeout=2)


def _value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels}` of a scrape (labels in any order)."""
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        found, _, rest = sample.partition("{")
        if found == name and dict(re.findall(r'(\w+)="([^"]*)"', rest)) == labels:
            return float(value)
    raise AssertionError(f"no {name}{labels} in the scrape")
