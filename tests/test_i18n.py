"""Languages: choosing one per request, the shipped catalogs, and an operator's overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import i18n

OFFERED = ("vi", "hmn")


@pytest.mark.parametrize(
    ("query", "header", "expected"),
    [
        (None, None, "vi"),
        ("hmn", "vi-VN,vi;q=0.9", "hmn"),  # the URL wins over the phone
        (None, "hmn", "hmn"),
        (None, "en-US,en;q=0.9,hmn;q=0.8,vi;q=0.7", "hmn"),
        (None, "vi;q=0.2, hmn;q=0.5", "hmn"),
        (None, "mww", "hmn"),  # Hmong Daw's code on some phones
        (None, "fr, de", "vi"),  # nothing offered: the post's default
        ("xx", "hmn;q=abc, vi", "vi"),  # unknown ?lang and a malformed q are skipped
        (None, "hmn;q=0", "vi"),
        ("HMN", None, "hmn"),
    ],
)
def test_choose(query: str | None, header: str | None, expected: str) -> None:
    assert i18n.choose(query, header, OFFERED) == expected


def test_post_default_comes_first() -> None:
    assert i18n.choose(None, None, ("hmn", "vi")) == "hmn"


def test_shipped_catalogs() -> None:
    assert {"vi", "hmn"} <= i18n.available_languages()
    assert i18n.language_name("vi") == "Tiếng Việt"
    assert i18n.language_name("hmn") == "Hmoob"
    assert i18n.translations("vi").gettext("Send") == "Gửi"
    assert i18n.translations("hmn").gettext("Send") == "Xa"


def test_operator_override_and_new_language(tmp_path: Path) -> None:
    (tmp_path / "hmn.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "Send"\nmsgstr "Xa mus"\n', encoding="utf-8",
    )
    (tmp_path / "tdd").mkdir()
    (tmp_path / "tdd" / "LC_MESSAGES").mkdir()
    (tmp_path / "tdd" / "LC_MESSAGES" / "messages.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "language-name"\nmsgstr "ᥖᥭᥰ ᥖᥬᥲ ᥑᥨᥒᥰ"\n', encoding="utf-8",
    )
    hmong = i18n.translations("hmn", tmp_path)
    assert hmong.gettext("Send") == "Xa mus"  # overridden
    assert hmong.gettext("Sent") == "Xa lawm"  # not overridden: the shipped string
    assert "tdd" in i18n.available_languages(tmp_path)
    assert i18n.language_name("tdd", tmp_path) == "ᥖᥭᥰ ᥖᥬᥲ ᥑᥨᥒᥰ"
    assert i18n.translations("tdd", tmp_path).gettext("Send") == "Send"  # untranslated: English
