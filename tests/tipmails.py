"""Real tipbox emails for the filter and guide tests: sent through the form of a running app to a real SMTP server.

Three posts share one deployment: Na Cô Sa gets one tip of every category (the weapons one with a photo) and a
follow-up to its drugs tip; A Pa Chải gets a tip and a follow-up, so that rules for some posts (`tipbox filters
--post`) have another post's mail to tell apart; the Pa Pỏm station of Na Cô Sa, whose name begins with its post's,
gets a drugs tip, whose subject therefore holds Na Cô Sa's drugs subject word for word. `STRAY` is an email from
someone else dressed as a tip, which no filter may take.
"""

from __future__ import annotations

import email
import email.policy
import io
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cached_property
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from app import filters, i18n
from app.categories import CATEGORIES
from app.main import create_app
from app.settings import Settings, load_settings
from tests.helpers import SECRET, form_fields, post_tip
from tests.mailsink import Sink

ROOT = Path(__file__).parent.parent
MAIL_FROM = "tipbox@bienphong.example.vn"
POSTS_TOML = """\
[posts.ncs]
name = "Đồn Biên phòng Na Cô Sa"
mailbox = "nacosa@example.vn"

[posts.apc]
name = "Đồn Biên phòng A Pa Chải"
mailbox = "apachai@example.vn"
languages = ["hmn", "vi"]

[posts.ncs-pp]
name = "Đồn Biên phòng Na Cô Sa - Trạm Pa Pỏm"
mailbox = "nacosa@example.vn"
"""
_RECEIPT = re.compile(r'id="receipt">\s*(\d{4} \d{4} \d{4} \d{4})\s*<')


@dataclass(frozen=True)
class Sent:
    """One email as the post's mailbox receives it, with what the test knows it to be."""

    post: str  # the post's slug
    category: str  # the category it is filed under (a follow-up: its first tip's)
    follow_up: bool
    raw: bytes

    # Parsed once: the filter tests match every email against every rule.
    @cached_property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)

    @cached_property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @cached_property
    def text(self) -> str:
        """The plain-text part, what a search engine indexes of the body."""
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())


def _stray() -> bytes:
    """Not from tipbox: a tip's subject, forged X-Tipbox-* headers and the follow-up line, from another address."""
    message = EmailMessage()
    message["From"] = "someone@example.vn"
    message["To"] = "nacosa@example.vn"
    message["Subject"] = "[Tin báo] [Ma túy] Đồn Biên phòng Na Cô Sa · 4821 0937 5512 9634"
    for name, value in (("X-Tipbox-Kind", "tip"), ("X-Tipbox-Category", "drugs"), ("X-Tipbox-Post", "ncs")):
        message[name] = value
    message.set_content("Bổ sung cho tin báo mã 4821 0937 5512 9634\n")
    return message.as_bytes(policy=email.policy.SMTP)


STRAY = Sent("", "", False, _stray())


def settings_for(root: Path, sink: Sink | None = None) -> Settings:
    """Settings with the two posts; SMTP to `sink` (or a placeholder host: enough to print filters)."""
    posts = root / "posts.toml"
    posts.write_text(POSTS_TOML, encoding="utf-8")
    return load_settings(
        smtp_host="127.0.0.1",
        smtp_port=sink.port if sink else 25,
        smtp_security="none",
        mail_from=MAIL_FROM,
        posts_file=posts,
        secret_key=SECRET,
        min_fill_seconds=0,
        source_rate="",
        dev_mailbox=root / "mailbox",
    )


def send_tips(root: Path) -> list[Sent]:
    """Send the tips through the form and return the emails the SMTP server accepted, in order."""
    sink = Sink().start()
    sent: list[tuple[str, str, bool]] = []
    try:
        with TestClient(create_app(settings_for(root, sink))) as client:
            codes = {}
            for slug in CATEGORIES:
                fields = {"category": slug, "what": f"Tin báo thử: {slug}", "where": "Bản Na Cô Sa"}
                if slug == "weapons":
                    page = client.post(
                        "/p/ncs", data={**form_fields(client, "/p/ncs"), **fields}, files={"photo": _photo()}
                    )
                else:
                    page = post_tip(client, "/p/ncs", **fields)
                assert page.status_code == 200, page.text
                match = _RECEIPT.search(page.text)
                assert match, page.text
                codes[slug] = match.group(1)
                sent.append(("ncs", slug, False))
            # The resident picks another category this time; the email is still filed under the first tip's.
            page = post_tip(client, "/p/ncs", category="other", what="Báo thêm: họ quay lại", receipt=codes["drugs"])
            assert page.status_code == 200, page.text
            sent.append(("ncs", "drugs", True))
            page = post_tip(client, "/p/apc", category="smuggling", what="Muaj neeg nqa khoom tsis raug cai")
            assert page.status_code == 200, page.text
            sent.append(("apc", "smuggling", False))
            match = _RECEIPT.search(page.text)
            assert match, page.text
            page = post_tip(client, "/p/apc", category="smuggling", what="Lawv rov qab los", receipt=match.group(1))
            assert page.status_code == 200, page.text
            sent.append(("apc", "smuggling", True))
            page = post_tip(client, "/p/ncs-pp", category="drugs", what="Có người lạ mang gói hàng qua suối")
            assert page.status_code == 200, page.text
            sent.append(("ncs-pp", "drugs", False))
    finally:
        sink.stop()
    raws = sink.handler.messages
    assert len(raws) == len(sent)
    return [Sent(post, category, follow_up, raw) for (post, category, follow_up), raw in zip(sent, raws, strict=True)]


def _photo() -> tuple[str, bytes, str]:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), "#5d8a4e").save(buffer, "JPEG")
    return "IMG_0001.jpg", buffer.getvalue(), "image/jpeg"


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> list[Sent]:
    return send_tips(tmp_path_factory.mktemp("tips"))


def tipbox_filters(tmp_path: Path, *args: str) -> str:
    """Run the real command, configured as a deployment is (environment), and return what it prints."""
    done = run_filters(tmp_path, *args)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode("utf-8")


def run_filters(tmp_path: Path, *args: str, **settings: str | None) -> subprocess.CompletedProcess[bytes]:
    """`tipbox filters ARGS` with the posts file and a production configuration; `settings` (smtp_host=None, ...)
    change or remove TIPBOX_* variables."""
    posts = tmp_path / "posts.toml"
    posts.write_text(POSTS_TOML, encoding="utf-8")
    config = {"smtp_host": "127.0.0.1", "mail_from": MAIL_FROM, "posts_file": str(posts), "secret_key": SECRET}
    config.update(settings)
    env = {name: value for name, value in os.environ.items() if not name.startswith("TIPBOX_")}
    env.update({f"TIPBOX_{name.upper()}": value for name, value in config.items() if value is not None})
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "filters", *args], cwd=ROOT, env=env, capture_output=True, timeout=60
    )


def folder(msgid: str, post: str | None = None) -> str:
    """The folder the guide names for a category label (or follow-ups), read from the officers' catalog; with a
    post's name, that post's own folder."""
    return " - ".join(["Tin báo", *([post] if post else []), i18n.translations("vi").gettext(msgid)])


def expected_folder(email: Sent, per_post: bool = False) -> str:
    """The folder `email` belongs in: every post's (`tipbox filters`), or its post's own (`--post`)."""
    post = tomllib.loads(POSTS_TOML)["posts"][email.post]["name"] if per_post else None
    return folder(filters.FOLLOW_UPS if email.follow_up else CATEGORIES[email.category], post)
