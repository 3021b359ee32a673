"""The form's addresses, plain routes of the one router: every method and every failure still gets a proper answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from app.pages import Pages
from app.settings import Settings
from tests.helpers import hidden_fields, post_tip
from tests.mailsink import Sink

PHONES = ("vi-VN,vi;q=0.9", "hmn", "en-US,en;q=0.8", "")


@pytest.mark.parametrize("path", ["/", "/more", "/p/post", "/P/POST", "/p/post/more", "/p/post/hmn", "/P/POST/VI"])
def test_each_form_address_answers_get_head_and_a_wrong_method(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200 and 'name="t"' in page.text
    head = client.head(path)
    assert head.status_code == 200 and head.content == b""
    wrong = client.delete(path, headers={"Accept-Language": "hmn"})
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD, POST"
    language = "vi" if path.endswith("/VI") else "hmn"  # the address's language, else the phone's
    assert f'<html lang="{language}"' in wrong.text and "content-security-policy" in wrong.headers


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
    assert response.status_code == 500 and response.headers["content-language"] == "vi, hmn"
    assert "Có lỗi xảy ra. Tin của bạn có thể chưa được gửi" in response.text  # no English: a resident may land here
    assert "Muaj teeb meem." in response.text and "Internal Server Error" not in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "a bug" not in response.text


@pytest.mark.parametrize(("path", "language"), [("/p/post/hmn", "hmn"), ("/P/POST/HMN", "hmn"), ("/p/post/vi", "vi")])
def test_the_language_in_the_address_wins_over_the_phones(client: TestClient, path: str, language: str) -> None:
    other = "vi" if language == "hmn" else "hmn"
    for phone in PHONES:
        page = client.get(path, headers={"Accept-Language": phone})
        assert page.status_code == 200 and page.headers["content-language"] == language
        assert f'<html lang="{language}">' in page.text
        # Every link keeps the language: the form posts to it, the switch leads to the other one's address.
        assert f'action="/p/post/{language}"' in page.text
        assert f'<a href="/p/post/{other}" hreflang="{other}"' in page.text
    sent = post_tip(client, path, category="drugs", what="Muaj neeg muag tshuaj yeeb")
    assert sent.status_code == 200 and sent.headers["content-language"] == language
    assert f'class="more" href="/p/post/{language}"' in sent.text  # "Send another tip" keeps it too


def test_lang_in_the_query_keeps_working_and_links_move_the_language_into_the_address(client: TestClient) -> None:
    page = client.get("/p/post?lang=hmn", headers={"Accept-Language": "vi"})
    assert page.headers["content-language"] == "hmn" and 'action="/p/post/hmn"' in page.text
    default = client.get("/?lang=hmn", headers={"Accept-Language": "vi"})
    assert default.headers["content-language"] == "hmn"
    assert 'action="/?lang=hmn"' in default.text and 'href="/?lang=vi" hreflang="vi"' in default.text
    more = client.get("/p/post/more?lang=hmn")
    assert more.headers["content-language"] == "hmn" and 'action="/p/post/more?lang=hmn"' in more.text


def test_a_language_the_post_does_not_offer_falls_back_as_without_it(client: TestClient) -> None:
    page = client.get("/p/post/fr", headers={"Accept-Language": "hmn"})
    assert page.status_code == 200 and page.headers["content-language"] == "hmn"
    assert 'action="/p/post/hmn"' in page.text


def test_the_posters_and_the_follow_up_form_keep_their_addresses(client: TestClient) -> None:
    assert client.get("/p/post/poster.pdf").headers["content-type"] == "application/pdf"
    more = client.get("/p/post/more")
    assert more.status_code == 200 and '<details class="fold" id="follow" open>' in more.text


def test_a_page_that_does_not_exist_keeps_the_language(client: TestClient) -> None:
    for path, language in (("/p/nowhere/hmn", "hmn"), ("/nowhere?lang=hmn", "hmn"), ("/P/NOWHERE/VI", "vi")):
        missing = client.get(path, headers={"Accept-Language": "vi" if language == "hmn" else "hmn"})
        assert missing.status_code == 404 and missing.headers["content-language"] == language
        assert f'<a class="more" href="/?lang={language}">' in missing.text


def test_the_form_given_back_keeps_the_language_in_its_address(client: TestClient) -> None:
    fields = hidden_fields(client.get("/p/post/hmn").text)
    data = {**fields, "category": "drugs", "what": ""}
    back = client.post("/p/post/hmn", data=data, headers={"Accept-Language": "vi"})
    assert back.status_code == 422 and back.headers["content-language"] == "hmn"
    assert 'action="/p/post/hmn"' in back.text
