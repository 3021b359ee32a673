"""Configuration: one typed `Settings` from `TIPBOX_*` variables, and the posts it serves."""

from __future__ import annotations

import ipaddress
import re
import secrets
import ssl
import tomllib
import unicodedata
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path
from typing import Annotated, Literal

import limits
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app import i18n

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
_PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "dev", "development", "tipbox", "xxx"}
_MIN_SECRET_CHARS = 32
DEMO_SLUG = "demo"
SINGLE_POST = ("post", "Đồn Biên phòng")  # the slug and name of a post set with TIPBOX_MAILBOX alone


class ConfigError(Exception):
    """A setting is wrong; the message is one line naming it."""


@dataclass(frozen=True, slots=True)
class Post:
    """A border-guard post: its form lives at /p/{slug} and its tips go to `mailbox`."""

    slug: str
    name: str
    mailbox: str
    languages: tuple[str, ...]

    @property
    def default_language(self) -> str:
        return self.languages[0]


def check_address(value: str, setting: str) -> str:
    """`value` as one plain ASCII mailbox address (no display name, no list, no CR/LF); an internationalised domain
    is IDNA-encoded (`bộ-đội.vn` → `xn--b-i-...`), a local part outside ASCII refused (SMTPUTF8 is not assumed)."""
    value = value.strip()
    if not value.rpartition("@")[0].isascii():
        raise ConfigError(
            f"{setting}: {value!r} has letters outside ASCII before the @, which mail servers without SMTPUTF8 "
            "refuse; use an ASCII address for this mailbox"
        )
    try:
        address = Address(addr_spec=value)
    except (HeaderParseError, ValueError, IndexError) as exc:
        raise ConfigError(f"{setting}: {value!r} is not an email address") from exc
    if not address.username or not address.domain or address.addr_spec != value:
        raise ConfigError(f"{setting}: {value!r} is not an email address")
    if address.domain.isascii():
        return value
    try:
        domain = address.domain.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ConfigError(f"{setting}: {value!r} has a domain that cannot be IDNA-encoded") from exc
    return f"{address.username}@{domain}"


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
    # Deployment (docs/deploy.md): the proxies whose X-Forwarded-For is believed, the metrics' address, and the
    # name and address of a single post set with TIPBOX_MAILBOX.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    metrics_address: str | None = None
    post_name: str | None = None
    post_slug: str | None = None

    @field_validator(
        "smtp_host", "smtp_username", "mail_from", "mailbox", "public_url", "source_rate", "metrics_address",
        "post_name", "post_slug", mode="before"
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

    @field_validator("mail_from", "mailbox", mode="after")
    @classmethod
    def _address(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_address(value, f"TIPBOX_{str(info.field_name).upper()}")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.smtp_ca_file is not None:
            _check_ca_file(self.smtp_ca_file)
        if self.public_url is not None and not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", self.public_url):
            raise ConfigError(f"TIPBOX_PUBLIC_URL: {self.public_url!r} is not an http(s) URL")
        if not self.dev_mode:
            if self.mail_from is None:
                raise ConfigError("TIPBOX_MAIL_FROM: required when TIPBOX_SMTP_HOST is set")
            if self.mailbox is None and self.posts_file is None:
                raise ConfigError("TIPBOX_MAILBOX: set it (or TIPBOX_POSTS_FILE) to say where tips go")
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
        self._check_single_post()
        self.metrics_bind  # noqa: B018 - parsed now: a bad value stops start-up with one line
        return self

    def _check_single_post(self) -> None:
        """A posts file names every post; TIPBOX_MAILBOX (with TIPBOX_POST_NAME, TIPBOX_POST_SLUG) the only one. Not
        both: one of them would be silently ignored."""
        for name in ("mailbox", "post_name", "post_slug"):
            if self.posts_file is not None and getattr(self, name) is not None:
                raise ConfigError(f"TIPBOX_{name.upper()}: set either TIPBOX_POSTS_FILE (several posts) or "
                                  "TIPBOX_MAILBOX with TIPBOX_POST_NAME and TIPBOX_POST_SLUG (one post), not both")
        if self.post_slug is not None and not _SLUG.match(self.post_slug):
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

    def load_posts(self) -> dict[str, Post]:
        """The posts, in file order; the first is the default post served at `/`."""
        languages = i18n.available_languages(self.locales_dir)
        posts: dict[str, Post] = {}
        if self.posts_file is not None:
            posts = _read_posts_file(self.posts_file, languages)
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


def one_line(name: str) -> bool:
    """A post's name goes into the Subject header: one line, no control or separator characters."""
    return bool(name.strip()) and not any(unicodedata.category(c)[0] in "CZ" and c != " " for c in name)


def _check_rate(value: str, setting: str) -> None:
    try:
        limits.parse_many(value)
    except ValueError as exc:
        raise ConfigError(f"{setting}: {value!r} is not a rate like '30/hour' or '10 per hour'") from exc


def _check_ca_file(path: Path) -> None:
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TIPBOX_SMTP_CA_FILE: cannot read CA certificates from {path}: {exc}") from exc


class _PostEntry(BaseModel):
    """One `[posts.<slug>]` table of the posts file; a key not listed here is refused by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    mailbox: str
    languages: list[str] = Field(default=["vi", "hmn"], min_length=1)

    @field_validator("name")
    @classmethod
    def _one_line(cls, name: str) -> str:
        if not one_line(name):
            raise ValueError("must be one line of text")
        return name.strip()


class _PostsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    posts: dict[str, _PostEntry] = Field(min_length=1)


def _read_posts_file(path: Path, languages: frozenset[str]) -> dict[str, Post]:
    setting = "TIPBOX_POSTS_FILE"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{setting}: {path} is not valid TOML: {exc}") from exc
    try:
        table = _PostsFile.model_validate(data).posts
    except ValidationError as exc:
        # An unknown key first: a misspelt one ("mailbx") also makes the right one missing.
        errors = sorted(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
        raise ConfigError(f"{setting}: {_where(errors[0])}") from None
    posts: dict[str, Post] = {}
    for slug, entry in table.items():
        where = f"{setting}: [posts.{slug}]"
        if not _SLUG.match(slug):
            raise ConfigError(f"{where}: the slug must be 1-32 lowercase letters, digits or '-'")
        mailbox = check_address(entry.mailbox, f"{where} mailbox")
        unknown = [x for x in entry.languages if x not in languages]
        if unknown:
            raise ConfigError(f"{where}: no catalog for language {unknown[0]!r} (have {sorted(languages)})")
        posts[slug] = Post(slug, entry.name, mailbox, tuple(entry.languages))
    return posts


def _where(error: ErrorDetails) -> str:
    """One pydantic error of the posts file as a line naming the table and key: "[posts.ncs] 'mailbx': unknown key"."""
    loc = [str(part) for part in error["loc"]]
    if not loc or loc[0] != "posts":
        key = loc[0] if loc else "?"
        return f"{key!r}: unknown key (the file holds [posts.<slug>] tables)" if error["type"] == "extra_forbidden" \
            else "no [posts.<slug>] table"
    if len(loc) < 2:
        return "no [posts.<slug>] table"
    table = f"[posts.{loc[1]}]"
    if len(loc) < 3:
        return f"{table}: must be a table with 'name' and 'mailbox'"
    key = loc[2]
    if error["type"] == "extra_forbidden":
        return f"{table}: unknown key {key!r} (allowed: {', '.join(_PostEntry.model_fields)})"
    if error["type"] == "missing":
        return f"{table}: {key!r} is required"
    message = error["msg"].removeprefix("Value error, ")
    return f"{table}: {key!r} {message[:1].lower()}{message[1:]}"


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
