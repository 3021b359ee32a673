"""Whether the receiving mail server vouched for an answer's From: its `Authentication-Results` header (RFC 8601).

Anyone who has seen one tip email can write an officer's address in From. With `TIPBOX_ANSWERS_AUTHSERV_ID` set,
an answer is kept only if the topmost `Authentication-Results` header (the one the reply mailbox's own server added
as it received the message; any lower one may have been written by the sender) names that server and says
`dmarc=pass` for the From domain (relaxed alignment, which the server computes with the public suffix list), or
`dkim=pass` signed by exactly the From domain. A value glued to a comment or a quote (`header.d=post.vn(.evil.com)`,
"Composition Kills", USENIX Security 2020) and a domain that is not plain letters, digits, hyphens and dots vouch
for nothing: the signer wrote that value, and the server may echo it as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

_SPECIALS = frozenset(';="()')
_GLUED = "\0"  # stands for a comment or quote that touched the word before it: that word cannot be read
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")


@dataclass(frozen=True, slots=True)
class Result:
    """One `method=result` with its properties (`header.d` → `example.com`), names in lower case."""

    method: str
    result: str
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Results:
    """One `Authentication-Results` header: who wrote it ("" when it does not say) and what it found."""

    authserv_id: str
    results: tuple[Result, ...]


def _tokens(value: str) -> Iterator[str]:
    """Words, quoted strings (unquoted, as `"…`), `;` and `=`; comments, folding and white space dropped."""
    i, end = 0, len(value)
    while i < end:
        char = value[i]
        if char.isspace():
            i += 1
        elif char == "(":  # a comment, nested and with quoted pairs; unclosed, it runs to the end
            depth = 0
            while i < end:
                if value[i] == "\\":
                    i += 1
                elif value[i] == "(":
                    depth += 1
                elif value[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            i += 1
        elif char == '"':
            text, i = [], i + 1
            while i < end and value[i] != '"':
                if value[i] == "\\" and i + 1 < end:
                    i += 1
                text.append(value[i])
                i += 1
            i += 1
            yield '"' + "".join(text)
        elif char in ";=":
            yield char
            i += 1
        elif char == ")":  # a stray one: nothing to read
            i += 1
        else:
            start = i
            while i < end and not value[i].isspace() and value[i] not in _SPECIALS:
                i += 1
            glued = i < end and value[i] in '("'
            yield value[start:i] + (_GLUED if glued else "")


def _split(tokens: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in tokens:
        if word == ";":
            parts.append([])
        else:
            parts[-1].append(word)
    return parts


def _text(word: str) -> str | None:
    """A word or a quoted string's text; None for `=`."""
    if word == "=" or word.endswith(_GLUED):
        return None
    return word[1:] if word.startswith('"') else word


def _result(tokens: list[str]) -> Result | None:
    """`method[/version]=result [reason=…] [ptype.property=value …]`, or None for anything else."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        if i + 2 >= len(tokens):
            return None
        name, equals, value = tokens[i], tokens[i + 1], _text(tokens[i + 2])
        if equals != "=" or value is None or name.startswith('"') or name == "=":
            return None
        pairs.append((name.lower(), value))
        i += 3
    if not pairs:
        return None
    (method, result), rest = pairs[0], pairs[1:]
    properties = {name: value for name, value in rest if "." in name}
    return Result(method.partition("/")[0].strip(), result.lower(), properties)


def parse(value: str) -> Results:
    """An `Authentication-Results` value; results that cannot be read are left out (they vouch for nothing)."""
    parts = _split(list(_tokens(value)))
    head = parts[0]
    # "authserv-id [version]"; Microsoft 365 writes none and starts with a result ("spf=pass …").
    authserv_id = "" if not head or "=" in head else (_text(head[0]) or "").lower()
    results = [_result(part) for part in ([head] if authserv_id == "" and head else []) + parts[1:]]
    return Results(authserv_id, tuple(result for result in results if result is not None))


def _domain(value: str) -> str:
    """The domain of an address or a domain, in lower case; "" unless it is a plain host name."""
    domain = value.rpartition("@")[2].strip().rstrip(".").lower()
    return domain if _DOMAIN.fullmatch(domain) else ""


def vouches_for(results: Results, authserv_id: str, address: str) -> bool:
    """True if `results` come from `authserv_id` and say DMARC or DKIM passed for the domain of `address`."""
    sender = _domain(address)
    if results.authserv_id != authserv_id.strip().lower() or not sender:
        return False
    for result in results.results:
        if result.result != "pass":
            continue
        if result.method == "dmarc" and _domain(result.properties.get("header.from", "")) == sender:
            return True
        if result.method == "dkim":
            # header.d is the signing domain; Gmail writes only header.i (an address at that domain). A parent
            # domain's signature is DMARC's to judge (relaxed alignment stops at the organisational domain).
            signer = result.properties.get("header.d") or result.properties.get("header.i", "")
            if _domain(signer) == sender:
                return True
    return False


def authenticated(headers: list[str], authserv_id: str, address: str) -> bool:
    """True if the topmost of `headers` (the `Authentication-Results` values, top first) vouches for `address`."""
    return bool(headers) and vouches_for(parse(headers[0]), authserv_id, address)
