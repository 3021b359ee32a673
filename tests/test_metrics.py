"""Metrics for operators: counters by post, category and reason, never per source, on an address of their own."""

from __future__ import annotations

import re

import httpx2
import pytest

from app.budget import MemoryBudget
from app.metrics import REASONS, Metrics
from tests.mailsink import free_port


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
