"""Settings: the `TIPBOX_*` contract, the posts file, and one clear line for every bad value."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import ConfigError, Settings, load_settings
from tests.helpers import post_tip
from tests.mailsink import Sink

SECRET = "s" * 40
PROD = {"smtp_host": "smtp.example.vn", "mail_from": "tipbox@example.vn", "mailbox": "post@example.vn",
        "secret_key": SECRET}


def _posts_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "posts.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIPBOX_SMTP_HOST", "smtp.gmail.com")
    monkeypatch.setenv("TIPBOX_SMTP_SECURITY", "tls")
    monkeypatch.setenv("TIPBOX_MAIL_FROM", "tipbox@example.vn")
    monkeypatch.setenv("TIPBOX_MAILBOX", "nacosa@example.vn")
    monkeypatch.setenv("TIPBOX_SECRET_KEY", SECRET)
    monkeypatch.setenv("TIPBOX_MIN_FILL_SECONDS", "5")
    settings = load_settings()
    assert settings.port == 465 and not settings.dev_mode and settings.min_fill_seconds == 5
    posts = settings.load_posts()
    assert [p.mailbox for p in posts.values()] == ["nacosa@example.vn"]


def test_posts_file_lists_several_posts_in_order(tmp_path: Path) -> None:
    path = _posts_file(tmp_path, """
[posts.ncs]
name = "Đồn Biên phòng Na Cô Sa"
mailbox = "nacosa@example.vn"
languages = ["hmn", "vi"]

[posts.apachai]
name = "Đồn Biên phòng A Pa Chải"
mailbox = "apachai@example.vn"
""")
    settings = load_settings(**{**PROD, "mailbox": None, "posts_file": path})
    posts = settings.load_posts()
    assert list(posts) == ["ncs", "apachai"]
    assert posts["ncs"].default_language == "hmn"
    assert posts["apachai"].languages == ("vi", "hmn")


def test_development_needs_no_settings() -> None:
    settings = load_settings()
    assert settings.dev_mode
    assert len(settings.secret) == 32
    assert list(settings.load_posts()) == ["demo"]


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"mailbox": "not an address"}, "TIPBOX_MAILBOX"),
        ({"mailbox": "a@b.vn, c@d.vn"}, "TIPBOX_MAILBOX"),
        ({"mailbox": "post@example.vn\r\nBcc: x@evil.example"}, "TIPBOX_MAILBOX"),
        ({"mail_from": "Tipbox <tipbox@example.vn>"}, "TIPBOX_MAIL_FROM"),
        ({"mail_from": None}, "TIPBOX_MAIL_FROM"),
        ({"smtp_security": "ssl"}, "TIPBOX_SMTP_SECURITY"),
        ({"smtp_port": 70000}, "TIPBOX_SMTP_PORT"),
        ({"smtp_ca_file": "/nonexistent/ca.pem"}, "TIPBOX_SMTP_CA_FILE"),
        ({"secret_key": None}, "TIPBOX_SECRET_KEY"),
        ({"secret_key": "change-me"}, "TIPBOX_SECRET_KEY"),
        ({"secret_key": "short"}, "TIPBOX_SECRET_KEY"),
        ({"mailbox": None}, "TIPBOX_MAILBOX"),
        ({"smtp_username": "u"}, "TIPBOX_SMTP_PASSWORD"),
        ({"public_url": "tip.example.vn"}, "TIPBOX_PUBLIC_URL"),
        ({"min_fill_seconds": -1}, "TIPBOX_MIN_FILL_SECONDS"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_setting(overrides: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(**{**PROD, **overrides})
    message = str(error.value)
    assert message.startswith(names)
    assert "\n" not in message


def test_unreadable_ca_file_content(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^TIPBOX_SMTP_CA_FILE"):
        load_settings(**PROD, smtp_ca_file=bad)


@pytest.mark.parametrize(
    "text",
    [
        "[posts.NCS]\nname='x'\nmailbox='a@b.vn'\n",
        "[posts.ncs]\nmailbox='a@b.vn'\n",
        '[posts.ncs]\nname="Đồn\\u2028Na Cô Sa"\nmailbox="a@b.vn"\n',
        '[posts.ncs]\nname="Đồn\\u000bNa"\nmailbox="a@b.vn"\n',
        "[posts.ncs]\nname='x'\nmailbox='nope'\n",
        "[posts.ncs]\nname='x'\nmailbox='a@b.vn'\nlanguages=['fr']\n",
        "[posts.ncs\nname='x'\n",
        "title = 'no posts'\n",
    ],
)
def test_bad_posts_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"^TIPBOX_POSTS_FILE"):
        load_settings(**{**PROD, "mailbox": None, "posts_file": _posts_file(tmp_path, text)})


def test_cli_prints_one_clear_line_and_fails(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "TIPBOX_SMTP_HOST": "smtp.example.vn", "TIPBOX_MAIL_FROM": "tipbox@example.vn",
           "TIPBOX_MAILBOX": "post@example.vn", "TIPBOX_SECRET_KEY": "change-me"}
    for command in ("check", "serve"):
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", command], env=env, capture_output=True, text=True, timeout=30,
            cwd=tmp_path, check=False,
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "TIPBOX_SECRET_KEY" in lines[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[posts.ncs]\nname='x'\nmailbx='a@b.vn'\n", "TIPBOX_POSTS_FILE: [posts.ncs]: unknown key 'mailbx'"),
        ("[posts.ncs]\nname='x'\nmailbox='a@b.vn'\nofficer='c@d.vn'\n", "[posts.ncs]: unknown key 'officer'"),
        ("title='x'\n[posts.ncs]\nname='x'\nmailbox='a@b.vn'\n", "TIPBOX_POSTS_FILE: 'title': unknown key"),
        ("[posts.ncs]\nname='x'\n", "[posts.ncs]: 'mailbox' is required"),
        ("[posts.ncs]\nname='x'\nmailbox='a@b.vn'\nlanguages=[]\n", "[posts.ncs]: 'languages'"),
        ("[posts.apc]\nname='x'\nmailbox='a@b.vn'\n[posts.ncs]\nname='y'\nmailbox='nguyễn@b.vn'\n",
         "[posts.ncs] mailbox: 'nguyễn@b.vn' has letters outside ASCII before the @"),
    ],
)
def test_a_posts_file_mistake_is_one_line_naming_the_post_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(**{**PROD, "mailbox": None, "posts_file": _posts_file(tmp_path, text)})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_internationalised_domain_is_idna_encoded_everywhere(tmp_path: Path) -> None:
    # The expected forms are what the `idna` package (IDNA 2008, UTS 46) gives for these names.
    posts = _posts_file(tmp_path, "[posts.ncs]\nname='Na Cô Sa'\nmailbox='nacosa@bộđội.vn'\n")
    settings = load_settings(**{**PROD, "mailbox": None, "posts_file": posts, "mail_from": "tipbox@hòm.vn"})
    assert settings.load_posts()["ncs"].mailbox == "nacosa@xn--bi-qma9061aba.vn"
    assert settings.sender == "tipbox@xn--hm-2ja.vn"
    assert load_settings(**{**PROD, "mailbox": "Post@Hòm.VN"}).mailbox == "Post@xn--hm-2ja.vn"
    with pytest.raises(ConfigError, match=r"^TIPBOX_MAILBOX: 'bộ@b.vn' has letters outside ASCII"):
        load_settings(**{**PROD, "mailbox": "bộ@b.vn"})


UNSAFE = [
    # AUTH and every tip would cross the network in clear text.
    ({"TIPBOX_SMTP_SECURITY": "none", "TIPBOX_SMTP_USERNAME": "post", "TIPBOX_SMTP_PASSWORD": "pw"},
     "TIPBOX_SMTP_SECURITY"),
    ({"TIPBOX_SMTP_HOST": "192.0.2.25", "TIPBOX_SMTP_SECURITY": "none", "TIPBOX_SMTP_PASSWORD": "pw"},
     "TIPBOX_SMTP_SECURITY"),
    # Phones would send tips in clear text.
    ({"TIPBOX_PUBLIC_URL": "http://tip.example.vn"}, "TIPBOX_PUBLIC_URL"),
    ({"TIPBOX_PUBLIC_URL": "HTTP://TIP.EXAMPLE.VN/"}, "TIPBOX_PUBLIC_URL"),
]


@pytest.mark.parametrize(("unsafe", "setting"), UNSAFE)
def test_setups_that_cannot_be_safe_are_refused_at_start_up(
    tmp_path: Path, unsafe: dict[str, str], setting: str
) -> None:
    env = {"PATH": "/usr/bin:/bin", **{f"TIPBOX_{k.upper()}": v for k, v in PROD.items()}, **unsafe}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "tipbox"), "serve", "--port", "1"], env=env, capture_output=True,
        text=True, timeout=30, cwd=tmp_path, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tipbox: configuration error: {setting}: "), result.stderr


@pytest.mark.parametrize(
    "overrides",
    [
        {"smtp_host": "127.0.0.1", "smtp_security": "none", "smtp_username": "u", "smtp_password": "pw"},
        {"smtp_host": "localhost", "smtp_security": "none", "smtp_password": "pw"},
        {"smtp_host": "::1", "smtp_security": "none", "smtp_password": "pw"},
        {"smtp_security": "none"},  # no password: a relay that trusts this host's address, nothing secret in clear
        {"smtp_security": "starttls", "smtp_username": "u", "smtp_password": "pw"},
        {"public_url": "https://tip.example.vn"},
    ],
)
def test_safe_setups_start(overrides: dict[str, object]) -> None:
    assert load_settings(**{**PROD, **overrides})


def test_a_development_run_may_have_a_plain_http_address() -> None:
    assert load_settings(public_url="http://192.168.1.20:8000").dev_mode


# -- Deployment settings (docs/deploy.md) --------------------------------------------------------------------------


def test_a_single_post_can_be_named_and_placed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIPBOX_POST_NAME", "Đồn Biên phòng Na Cô Sa")
    monkeypatch.setenv("TIPBOX_POST_SLUG", "ncs")
    (post,) = load_settings(**PROD).load_posts().values()
    assert (post.slug, post.name, post.mailbox) == ("ncs", "Đồn Biên phòng Na Cô Sa", "post@example.vn")
    (default,) = load_settings(**PROD, post_name=None, post_slug=None).load_posts().values()
    assert (default.slug, default.name) == ("post", "Đồn Biên phòng")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"posts_file": "posts.toml"}, "TIPBOX_MAILBOX: set either TIPBOX_POSTS_FILE (several posts) or"),
        ({"mailbox": None, "posts_file": "posts.toml", "post_name": "Na Cô Sa"}, "TIPBOX_POST_NAME: set either"),
        ({"post_slug": "Na Cô Sa"}, "TIPBOX_POST_SLUG: 'Na Cô Sa' must be 1-32 lowercase letters"),
        ({"post_name": "Đồn\u2028Na Cô Sa"}, "TIPBOX_POST_NAME: must be one line of text"),
        ({"trusted_proxies": "127.0.0.1, proxy.local"}, "TIPBOX_TRUSTED_PROXIES: 'proxy.local' is not an address"),
        ({"metrics_address": "127.0.0.1:http"}, "TIPBOX_METRICS_ADDRESS: '127.0.0.1:http' is not PORT or HOST:PORT"),
    ],
)
def test_deployment_mistakes_are_one_line(tmp_path: Path, overrides: dict[str, str | None], message: str) -> None:
    _posts_file(tmp_path, "[posts.ncs]\nname='x'\nmailbox='a@b.vn'\n")
    values = {**PROD, **{k: str(tmp_path / v) if k == "posts_file" and v else v for k, v in overrides.items()}}
    with pytest.raises(ConfigError) as error:
        load_settings(**values)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_trusted_proxies_and_the_metrics_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIPBOX_TRUSTED_PROXIES", "127.0.0.1, ::1 10.57.0.0/24")
    monkeypatch.setenv("TIPBOX_METRICS_ADDRESS", "9108")
    settings = load_settings(**PROD)
    assert settings.trusted_proxies == ("127.0.0.1", "::1", "10.57.0.0/24")
    assert settings.metrics_bind == ("127.0.0.1", 9108)  # a bare port is loopback
    assert load_settings(**PROD, metrics_address="[::1]:9108").metrics_bind == ("::1", 9108)
    assert load_settings(**PROD, metrics_address="0.0.0.0:9108").metrics_bind == ("0.0.0.0", 9108)
    assert load_settings(**PROD, metrics_address="", trusted_proxies="").metrics_bind is None


def test_the_single_posts_name_is_in_the_subject_and_its_slug_in_the_address(
    sink: Sink, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(sink, post_name="Đồn Biên phòng Na Cô Sa", post_slug="ncs")
    with TestClient(create_app(settings)) as client:
        assert client.get("/p/post").status_code == 404
        assert post_tip(client, "/p/ncs", category="drugs", what="Có người bán ma túy").status_code == 200
    (message,) = sink.handler.parsed()
    assert str(message["Subject"]).startswith("[Tin báo] [Ma túy] Đồn Biên phòng Na Cô Sa · ")
    assert message["X-Tipbox-Post"] == "ncs"
