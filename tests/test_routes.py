"""The form's addresses, plain routes of the one router: every method and every failure still gets a proper answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from app.pages import Pages
from app.settings import Settings
from tests.mailsink import Sink


@pytest.mark.parametrize("path", ["/", "/more", "/p/post", "/P/POST", "/p/post/more"])
def test_each_form_address_answers_get_head_and_a_wrong_method(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200 and 'name="t"' in page.text
    head = client.head(path)
    assert head.status_code == 200 and head.content == b""
    wrong = client.delete(path, headers={"Accept-Language": "hmn"})
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD, POST"
    assert '<html lang="hmn"' in wrong.text and "content-security-policy" in wrong.headers


def test_other_addresses_still_reach_the_rest_of_the_app(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok"
    assert client.get("/p/post/poster.pdf?size=a4").headers["content-type"] == "application/pdf"
    missing = client.get("/p/post/nothing-here")
    assert missing.status_code == 404 and "<html lang=" in missing.text


def test_a_failing_form_page_is_a_500_that_still_carries_the_security_headers(
    sink: Sink, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Pages, "fresh_form", broken)
    with TestClient(create_app(make_settings(sink)), raise_server_exceptions=False) as client:
        response = client.get("/")
    assert response.status_code == 500 and response.text == "Internal Server Error"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "a bug" not in response.text
