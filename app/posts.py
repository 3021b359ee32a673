"""The posts a deployment serves: `Post`, and the posts file (`TIPBOX_POSTS_FILE`) read and checked by a model.

`app.settings` reads the file through `read_posts_file`; a mistake in it is a `ConfigError`, one line naming the
table and the key.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")


class ConfigError(Exception):
    """A setting (or the posts file) is wrong; the message is one line naming it."""


@dataclass(frozen=True, slots=True)
class Post:
    """A border-guard post: its form lives at /p/{slug} and its tips go to `mailbox`."""

    slug: str
    name: str
    mailbox: str
    languages: tuple[str, ...]
    officers: tuple[str, ...] = ()  # addresses, or "*@domain"

    @property
    def default_language(self) -> str:
        return self.languages[0]

    @property
    def answerers(self) -> tuple[str, ...]:  # who may answer: the officers listed, or the post's mailbox
        return self.officers or (self.mailbox,)


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


def one_line(name: str) -> bool:
    """A post's name goes into the Subject header: one line, no control or separator characters."""
    return bool(name.strip()) and not any(unicodedata.category(c)[0] in "CZ" and c != " " for c in name)


class _PostEntry(BaseModel):
    """One `[posts.<slug>]` table of the posts file; a key not listed here is refused by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    mailbox: str
    languages: list[str] = Field(default=["vi", "hmn"], min_length=1)
    officers: list[str] = Field(default=[], max_length=100)

    @field_validator("name")
    @classmethod
    def _one_line(cls, name: str) -> str:
        if not one_line(name):
            raise ValueError("must be one line of text")
        return name.strip()


class _PostsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    posts: dict[str, _PostEntry] = Field(min_length=1)


def read_posts_file(path: Path, languages: frozenset[str]) -> dict[str, Post]:
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
        if not SLUG.match(slug):
            raise ConfigError(f"{where}: the slug must be 1-32 lowercase letters, digits or '-'")
        mailbox = check_address(entry.mailbox, f"{where} mailbox")
        unknown = [x for x in entry.languages if x not in languages]
        if unknown:
            raise ConfigError(f"{where}: no catalog for language {unknown[0]!r} (have {sorted(languages)})")
        officers = tuple(_officer(value, f"{where} officers") for value in entry.officers)
        posts[slug] = Post(slug, entry.name, mailbox, tuple(entry.languages), officers)
    return posts


def _officer(value: str, setting: str) -> str:
    """One entry of a post's `officers`: an address, or `*@domain` for every address of a domain."""
    if value.strip().startswith("*@"):
        return "*@" + check_address("x" + value.strip()[1:], setting).partition("@")[2]
    return check_address(value, setting)


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
