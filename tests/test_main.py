"""The app factory, and FastAPI's native telemetry switched off."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import Settings, load_settings
from tests.helpers import form_fields, post_tip
from tests.mailsink import Sink

ROOT = Path(__file__).resolve().parent.parent


def test_factory_builds_independent_apps(sink: Sink, make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    posts = tmp_path / "posts.toml"
    posts.write_text('[posts.ncs]\nname = "Đồn Na Cô Sa"\nmailbox = "ncs@example.vn"\nlanguages = ["hmn", "vi"]\n')
    one = TestClient(create_app(make_settings(sink)))
    two = TestClient(create_app(make_settings(sink, mailbox=None, posts_file=posts)))
    assert one.get("/p/ncs").status_code == 404
    page = two.get("/p/ncs")
    assert page.status_code == 200 and "Đồn Na Cô Sa" in page.text and '<html lang="hmn">' in page.text
    untokened = re.compile(r'name="t" value="[^"]*"')  # each served form carries its own token
    default = untokened.sub("", two.get("/").text)
    # The first post is the default form: the same page, its links carrying the language as ?lang= (no slug).
    assert default == untokened.sub("", page.text.replace("/p/ncs/", "/?lang=").replace("/p/ncs", "/"))
    assert one.get("/docs").status_code == 404 and one.get("/openapi.json").status_code == 404


def test_dev_mode_starts_the_embedded_mailbox(tmp_path: Path) -> None:
    settings = load_settings(dev_mailbox=tmp_path / "mbox", min_fill_seconds=0)
    with TestClient(create_app(settings)) as client:
        assert post_tip(client, category="drugs", what="thử nghiệm").status_code == 200
    assert len(list((tmp_path / "mbox").glob("*.eml"))) == 1


def test_native_telemetry_is_off(sink: Sink, make_settings: Callable[..., Settings]) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    # Control: a plain FastAPI app records a span for a request with these providers installed.
    control = FastAPI()

    @control.get("/ping")
    def ping() -> str:
        return "pong"

    TestClient(control).get("/ping")
    assert spans.get_finished_spans(), "the control app should have been traced"
    spans.clear()
    reader.collect()

    with TestClient(create_app(make_settings(sink))) as client:
        client.get("/")
        post_tip(client, category="drugs", what="không được ghi vết")
    assert spans.get_finished_spans() == ()
    collected = reader.get_metrics_data()
    routes = {
        str((point.attributes or {}).get("http.route"))
        for resource in (collected.resource_metrics if collected else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }
    assert "/ping" in routes  # the control's request was measured...
    assert routes <= {"/ping", "None"}  # ...and none of tipbox's routes ("None": points with no route)


def test_heavy_libraries_load_only_when_first_needed(tmp_path: Path) -> None:
    """A served form and a sent tip load no image, audio, poster, dev-mailbox, Redis, file-watcher or metrics library.

    They are megabytes each in every process's memory (docs/benchmarks.md, idle RSS); they load with the first
    photo, voice note, poster, dev run or Redis set-up instead. The second half checks that they still do.
    """
    script = f"""
import sys
from starlette.testclient import TestClient
from app.main import create_app
from app.settings import load_settings
from tests.helpers import form_fields

HEAVY = ("PIL", "pillow_heif", "mutagen", "reportlab", "qrcode", "aiosmtpd", "redis", "watchfiles", "prometheus_client",
         "imapclient", "mailparser_reply")
with TestClient(create_app(load_settings(dev_mailbox={str(tmp_path / "mbox")!r}, min_fill_seconds=0))) as client:
    data = {{**form_fields(client), "category": "weapons", "what": "Súng tự chế"}}
    assert client.post("/", data=data).status_code == 200
    print(sorted(name for name in HEAVY if name in sys.modules))
    from tests.media import jpeg, m4a  # the test files are made with Pillow and PyAV: only now

    files = [("photo", ("a.jpg", jpeg(), "image/jpeg")), ("voice", ("b.m4a", m4a(), "audio/mp4"))]
    data = {{**form_fields(client), "category": "weapons", "what": "Có ảnh và ghi âm"}}
    assert client.post("/", data=data, files=files).status_code == 200
    print(sorted(name for name in HEAVY if name in sys.modules))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    idle, used = result.stdout.splitlines()[-2:]
    assert idle == "['aiosmtpd']"  # the dev mailbox is this run's SMTP server
    assert used == "['PIL', 'aiosmtpd', 'mutagen', 'pillow_heif']"
    emails = [path.read_text() for path in (tmp_path / "mbox").glob("*.eml")]
    assert len(emails) == 2 and any("photo-1.jpg" in email and "voice-1.m4a" in email for email in emails)


def test_with_answers_and_metrics_off_their_libraries_never_load(sink: Sink) -> None:
    """A post that does not answer (no TIPBOX_REPLY_TO) and has no metrics address serves forms and relays tips
    without libsodium, the IMAP client, the reply parser or the Prometheus client in memory."""
    script = f"""
import os, sys
from starlette.testclient import TestClient
from app.main import create_app
from app.settings import load_settings
from tests.helpers import form_fields

settings = load_settings(smtp_host="127.0.0.1", smtp_port={sink.port}, smtp_security="none", min_fill_seconds=0,
                         mail_from="tipbox@example.vn", mailbox="post@example.vn", secret_key="k" * 43)
assert not settings.answers_on
with TestClient(create_app(settings)) as client:
    data = {{**form_fields(client), "category": "weapons", "what": "Súng tự chế"}}
    assert client.post("/", data=data).status_code == 200
    unused = ("nacl", "imapclient", "mailparser_reply", "prometheus_client")
    print(sorted(name for name in unused if name in sys.modules))
"""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("TIPBOX_")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env=environment, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert len(sink.handler.messages) == 1


def _raw(client: TestClient, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body as sent (the test client would decompress the body)."""
    with client.stream(method, path, **kwargs) as response:
        return response.status_code, dict(response.headers), b"".join(response.iter_raw())


def test_pages_go_compressed_to_phones_that_ask_and_as_they_are_to_others(client: TestClient) -> None:
    gzip_ = {"Accept-Encoding": "gzip, deflate, br"}
    # A page rendered in full (the form given back with a problem), compressed by the app's middleware.
    fields = {**form_fields(client), "category": "drugs", "what": ""}
    status, headers, body = _raw(client, "POST", "/", data=fields, headers=gzip_)
    assert status == 422 and headers["content-encoding"] == "gzip" and "Accept-Encoding" in headers["vary"]
    page = gzip.decompress(body).decode()
    assert int(headers["content-length"]) == len(body) < len(page) // 2 and "<html lang=" in page
    status, headers, body = _raw(client, "POST", "/", data=fields, headers={"Accept-Encoding": "identity"})
    assert status == 422 and "content-encoding" not in headers and body.decode().startswith("<!doctype html>")
    # The fresh form comes compressed already (app/pagecache.py): compressed once, not twice.
    status, headers, body = _raw(client, "GET", "/", headers=gzip_)
    assert status == 200 and headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(body).decode().startswith("<!doctype html>")
    # A poster's PDF streams are compressed already: sent as they are.
    status, headers, body = _raw(client, "GET", "/p/post/poster.pdf", headers=gzip_)
    assert status == 200 and "content-encoding" not in headers and body.startswith(b"%PDF-")
