"""Configuration: one typed `Settings` from `TIPBOX_*` variables, and the posts it serves (`app.posts`)."""

from __future__ import annotations

import ipaddress
import re
import secrets
import ssl
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import limits
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app import i18n
from app.posts import SLUG, check_address, one_line, read_posts_file
from app.posts import ConfigError as ConfigError  # the posts' types, known to the rest of the app from here
from app.posts import Post as Post

_PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "dev", "development", "tipbox", "xxx"}
_MIN_SECRET_CHARS = 32
DEMO_SLUG = "demo"
SINGLE_POST = ("post", "Đồn Biên phòng")  # the slug and name of a post set with TIPBOX_MAILBOX alone
DEV_REPLY_TO = "answers@tipbox.invalid"


class Settings(BaseSettings):
    """Every `TIPBOX_*` setting; see README.md, "Settings"."""

    model_config = SettingsConfigDict(env_prefix="TIPBOX_", extra="ignore", frozen=True)

    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_ca_file: Path | None = None
    smtp_timeout: float = Field(default=20.0, gt=0, le=300)
    smtp_data_timeout: float = Field(default=120.0, gt=0, le=600)
    mail_from: str | None = None
    mailbox: str | None = None
    posts_file: Path | None = None
    secret_key: SecretStr | None = None
    public_url: str | None = None
    min_fill_seconds: float = Field(default=3.0, ge=0)
    form_max_age: int = Field(default=24 * 3600, ge=60)
    dev_mailbox: Path = Path("mailbox")
    locales_dir: Path | None = None
    max_files: int = Field(default=5, ge=0, le=20)
    max_upload_bytes: int = Field(default=20_000_000, ge=0)
    upload_memory_bytes: int = Field(default=200_000_000, ge=0)
    max_text_chars: int = Field(default=5000, ge=100)
    post_rate: str = "30/hour"
    source_rate: str | None = "10/hour"
    limits_storage: str = "memory://"
    # Answers (issue 14): on exactly when reply_to is set, and always in development.
    reply_to: str | None = None
    imap_host: str | None = None
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_security: Literal["tls", "starttls", "none"] = "tls"
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_folder: str = "INBOX"
    imap_poll_seconds: float = Field(default=60.0, ge=1, le=3600)
    imap_ca_file: Path | None = None
    answers_store: str | None = None
    answer_days: int = Field(default=90, ge=1, le=3650)
    # The reply mailbox's receiving server, as it names itself in Authentication-Results: answers are kept only if
    # it vouches for the From domain (DMARC or DKIM). Unset: officers' addresses are trusted as written.
    answers_authserv_id: str | None = None
    # Deployment (docs/deploy.md): the proxies whose X-Forwarded-For is believed, the metrics' address, and the
    # name and address of a single post set with TIPBOX_MAILBOX.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    metrics_address: str | None = None
    post_name: str | None = None
    post_slug: str | None = None

    @field_validator(
        "smtp_host", "smtp_username", "mail_from", "mailbox", "public_url", "source_rate", "reply_to", "imap_host",
        "imap_username", "answers_store", "answers_authserv_id", "metrics_address", "post_name", "post_slug",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        items = value.replace(",", " ").split() if isinstance(value, str) else value  # "127.0.0.1, 10.0.0.0/8"
        for item in items if isinstance(items, list | tuple) else ():
            try:
                ipaddress.ip_network(str(item), strict=False)
            except ValueError:
                raise ConfigError(f"TIPBOX_TRUSTED_PROXIES: {item!r} is not an address or network") from None
        return tuple(items) if isinstance(items, list) else items

    @field_validator("mail_from", "mailbox", "reply_to", mode="after")
    @classmethod
    def _address(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_address(value, f"TIPBOX_{str(info.field_name).upper()}")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        for name, ca_file in (("TIPBOX_SMTP_CA_FILE", self.smtp_ca_file), ("TIPBOX_IMAP_CA_FILE", self.imap_ca_file)):
            if ca_file is not None:
                _check_ca_file(ca_file, name)
        if self.public_url is not None and not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", self.public_url):
            raise ConfigError(f"TIPBOX_PUBLIC_URL: {self.public_url!r} is not an http(s) URL")
        if not self.dev_mode:
            if self.mail_from is None:
                raise ConfigError("TIPBOX_MAIL_FROM: required when TIPBOX_SMTP_HOST is set")
            if self.mailbox is None and self.posts_file is None:
                raise ConfigError("TIPBOX_MAILBOX: set it (or TIPBOX_POSTS_FILE) to say where tips go")
            self._refuse_placeholders()
            secret = self.secret_key.get_secret_value() if self.secret_key else ""
            if secret.strip().lower() in _PLACEHOLDER_SECRETS or len(secret) < _MIN_SECRET_CHARS:
                raise ConfigError(
                    f"TIPBOX_SECRET_KEY: set a random value of at least {_MIN_SECRET_CHARS} characters "
                    '(python3 -c "import secrets; print(secrets.token_urlsafe(32))")'
                )
        _check_rate(self.post_rate, "TIPBOX_POST_RATE")
        if self.source_rate is not None:
            _check_rate(self.source_rate, "TIPBOX_SOURCE_RATE")
        if not re.match(r"^(memory://|rediss?://\S+)$", self.limits_storage):
            raise ConfigError(
                f"TIPBOX_LIMITS_STORAGE: {self.limits_storage!r} is neither memory:// nor a redis://host:port URL"
            )
        if self.smtp_username is not None and self.smtp_password is None:
            raise ConfigError("TIPBOX_SMTP_PASSWORD: required when TIPBOX_SMTP_USERNAME is set")
        if self.imap_host is not None and None in (self.imap_username, self.imap_password, self.reply_to):
            raise ConfigError("TIPBOX_IMAP_HOST: needs TIPBOX_IMAP_USERNAME, TIPBOX_IMAP_PASSWORD and TIPBOX_REPLY_TO")
        if not re.match(r"^(sqlite:///\S+|rediss?://\S+)$", store := self.answers_store_url):
            raise ConfigError(f"TIPBOX_ANSWERS_STORE: {store!r} is neither sqlite:///path nor redis://host:port/db")
        self._check_single_post()
        self._refuse_unsafe_transport()
        self.metrics_bind  # noqa: B018 - parsed now: a bad value stops start-up with one line
        return self

    def _refuse_placeholders(self) -> None:
        """The kit's example addresses (at `example.invalid`, RFC 2606), left as they came: refused by name."""
        host = urlsplit(self.public_url).hostname if self.public_url else None
        for name, value in (
            ("TIPBOX_MAIL_FROM", self.mail_from), ("TIPBOX_MAILBOX", self.mailbox), ("TIPBOX_REPLY_TO", self.reply_to),
            ("TIPBOX_PUBLIC_URL", host),
        ):
            if value is not None and value.lower().rstrip(".").endswith("example.invalid"):
                raise ConfigError(f"{name}: {value!r} is the kit's placeholder; set the post's real one")

    def _refuse_unsafe_transport(self) -> None:
        """Set-ups that would send what must stay secret in clear text across a network: refused by name."""
        if self.smtp_security == "none" and self.smtp_password is not None and not _loopback(self.smtp_host):
            raise ConfigError(
                f"TIPBOX_SMTP_SECURITY: 'none' with a password sends it and every tip unencrypted to "
                f"{self.smtp_host!r}, which is not this machine; use starttls or tls (or a local Postfix on 127.0.0.1)"
            )
        if not self.dev_mode and self.public_url is not None and self.public_url.lower().startswith("http://"):
            raise ConfigError(
                f"TIPBOX_PUBLIC_URL: {self.public_url!r} is plain http, so phones would send tips unencrypted; "
                "serve it over https (a reverse proxy with a certificate) and set the https:// address"
            )

    def _check_single_post(self) -> None:
        """A posts file names every post; TIPBOX_MAILBOX (with TIPBOX_POST_NAME, TIPBOX_POST_SLUG) the only one. Not
        both: one of them would be silently ignored."""
        for name in ("mailbox", "post_name", "post_slug"):
            if self.posts_file is not None and getattr(self, name) is not None:
                raise ConfigError(f"TIPBOX_{name.upper()}: set either TIPBOX_POSTS_FILE (several posts) or "
                                  "TIPBOX_MAILBOX with TIPBOX_POST_NAME and TIPBOX_POST_SLUG (one post), not both")
        if self.post_slug is not None and not SLUG.match(self.post_slug):
            raise ConfigError(f"TIPBOX_POST_SLUG: {self.post_slug!r} must be 1-32 lowercase letters, digits or '-'")
        if self.post_name is not None and not one_line(self.post_name):
            raise ConfigError("TIPBOX_POST_NAME: must be one line of text")

    @property
    def metrics_bind(self) -> tuple[str, int] | None:
        """Where metrics are served, from TIPBOX_METRICS_ADDRESS (`9108` is loopback), or None: not served."""
        if self.metrics_address is None:
            return None
        host, _, port = self.metrics_address.strip().rpartition(":")
        host = host.strip("[]") if host else "127.0.0.1"
        if not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise ConfigError(f"TIPBOX_METRICS_ADDRESS: {self.metrics_address!r} is not PORT or HOST:PORT")
        return host, int(port)

    @property
    def dev_mode(self) -> bool:
        """No SMTP host configured: tips go to the embedded dev mailbox."""
        return self.smtp_host is None

    @property
    def answers_on(self) -> bool:
        """Officers can answer residents: a reply address is set, or this is a development run."""
        return self.reply_to is not None or self.dev_mode

    @property
    def reply_address(self) -> str:
        """Where officers' replies go: `TIPBOX_REPLY_TO`, or in development the dev mailbox's own address."""
        return self.reply_to or DEV_REPLY_TO

    @property
    def answers_store_url(self) -> str:
        """`TIPBOX_ANSWERS_STORE`; unset, a SQLite file here (in development: in the dev mailbox's folder)."""
        if self.answers_store is not None:
            return self.answers_store
        return f"sqlite:///{self.dev_mailbox / 'answers.sqlite3'}" if self.dev_mode else "sqlite:///./answers.sqlite3"

    @property
    def port(self) -> int:
        """The SMTP port, defaulting by security mode (587, 465, 25)."""
        if self.smtp_port is not None:
            return self.smtp_port
        return {"starttls": 587, "tls": 465, "none": 25}[self.smtp_security]

    @property
    def sender(self) -> str:
        return self.mail_from or "tipbox@localhost"

    @property
    def secret(self) -> bytes:
        """The secret key; in dev mode without one, a random key for this process only."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value().encode()
        return _DEV_SECRET

    @property
    def max_body_bytes(self) -> int:
        """Largest request body accepted: the uploads plus room for the text fields and multipart framing."""
        return self.max_upload_bytes + 64 * 1024

    @property
    def base_url(self) -> str:
        return (self.public_url or "http://127.0.0.1:8000").rstrip("/")

    @property
    def hsts(self) -> bool:
        """Served at an https:// public address: every answer says Strict-Transport-Security."""
        return self.base_url.startswith("https://")

    def load_posts(self) -> dict[str, Post]:
        """The posts, in file order; the first is the default post served at `/`."""
        languages = i18n.available_languages(self.locales_dir)
        posts: dict[str, Post] = {}
        if self.posts_file is not None:
            posts = read_posts_file(self.posts_file, languages)
        if self.mailbox is not None:
            slug, name = self.post_slug or SINGLE_POST[0], (self.post_name or SINGLE_POST[1]).strip()
            posts = {slug: Post(slug, name, self.mailbox, ("vi", "hmn"))}
        if not posts and self.dev_mode:
            slug, name = self.post_slug or DEMO_SLUG, (self.post_name or "Đồn Biên phòng (thử nghiệm)").strip()
            posts = {slug: Post(slug, name, "officer@tipbox.invalid", ("vi", "hmn"))}
        if not posts:
            raise ConfigError("TIPBOX_POSTS_FILE: no post configured")
        return posts


_DEV_SECRET = secrets.token_bytes(32)


def _loopback(host: str | None) -> bool:
    """Whether `host` names this machine (loopback): only there may SMTP go without TLS when it carries a password."""
    if host is None or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_rate(value: str, setting: str) -> None:
    try:
        limits.parse_many(value)
    except ValueError as exc:
        raise ConfigError(f"{setting}: {value!r} is not a rate like '30/hour' or '10 per hour'") from exc


def _check_ca_file(path: Path, name: str) -> None:
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{name}: cannot read CA certificates from {path}: {exc}") from exc


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and `overrides`); a bad value raises `ConfigError` with one line naming it."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, ConfigError):
            raise ctx_error from None
        field = str(error["loc"][0]) if error["loc"] else "?"
        raise ConfigError(f"TIPBOX_{field.upper()}: {error['msg']}") from None
    settings.load_posts()
    return settings
