"""The officer's email built with Python's `email` package: the reference app/mail.py's own writer is tested against.

`app.mail.as_bytes` writes a `Draft` straight to bytes with `app.mime`; `as_message(draft)` builds the same message
with the stdlib, and `serialize` writes it as it goes over SMTP. Python 3.11's header folder drops the space at a fold
inside encoded words ("Na Cô" → "NaCô"), so the reference writes headers unfolded (RFC 5322 allows 998 characters).
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from app.mail import Draft

_WIRE_POLICY = email.policy.SMTP.clone(max_line_length=998)


def as_message(draft: Draft) -> EmailMessage:
    """`draft` as the `email` package builds it, in the shape `app.mail.Composer.compose` documents."""
    message = EmailMessage(policy=email.policy.SMTP)
    for name, value in draft.headers:
        message[name] = value
    message.set_content(draft.plain, cte="quoted-printable")
    message.add_alternative(draft.html, subtype="html", cte="quoted-printable")
    html = message.get_body(("html",))
    assert html is not None
    for attachment, cid in draft.files:
        maintype, _, subtype = attachment.content_type.partition("/")
        if cid is not None:
            html.add_related(
                attachment.data, maintype, subtype, cid=f"<{cid}>", disposition="inline", filename=attachment.filename
            )
        else:
            message.add_attachment(attachment.data, maintype, subtype, filename=attachment.filename)
    if html.get_content_type() == "multipart/related":
        html.set_param("type", "text/html")  # RFC 2387: the type of the part the others are related to
    return message


def serialize(message: EmailMessage) -> bytes:
    """The message as it goes over SMTP: CRLF line ends, headers intact."""
    return message.as_bytes(policy=_WIRE_POLICY)


def parse(data: bytes) -> EmailMessage:
    """A message's bytes as an officer's mail client reads them."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message
