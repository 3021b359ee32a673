"""Officers' replies as Gmail, Outlook and Thunderbird write them (Vietnamese interface included), built here.

Each function takes the tip as the officer received it and returns the bytes the client would submit: the same
MIME structure, quote header, quoting style and threading headers that client writes.
"""

from __future__ import annotations

import email.policy
import email.utils
import html
import secrets
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage

from app.answers import threads

OFFICER = "officer@post.test"
TIPBOX = "tipbox@bienphong.test"
SECRET = b"test-secret-key-0123456789abcdefghijklmnop"
TIP_TEXT = "Có hai người lạ bán ma túy ở chợ phiên sáng thứ Bảy.\nNơi: Chợ Na Cô Sa"
CODE = "4821 0937 5512 9639"
WHEN = datetime(2024, 5, 6, 10, 15)


def tip(public: bytes = b"\x07" * 32, slug: str = "ncs", secret: bytes = SECRET) -> EmailMessage:
    """A tip as tipbox sends it when answers are on: its Message-ID carries the slug, public key and MAC."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = TIPBOX
    message["To"] = OFFICER
    message["Reply-To"] = "answers@post.test"
    message["Subject"] = f"[Tin báo] [Ma túy] Đồn Biên phòng Na Cô Sa · {CODE}"
    message["Message-ID"] = threads.message_id(slug, public, secret, "bienphong.test")
    message["Date"] = email.utils.format_datetime(WHEN.astimezone())
    message.set_content(f"{TIP_TEXT}\n\nMã biên nhận: {CODE}\n")
    message.add_alternative(f"<p>{html.escape(TIP_TEXT)}</p><p>Mã biên nhận: {CODE}</p>", subtype="html")
    return message


def _plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).rstrip("\n")


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))


def _headers(reply: EmailMessage, original: EmailMessage, sender: str, to: str, message_id: str) -> None:
    reply["From"] = sender
    reply["To"] = to
    reply["Subject"] = f"Re: {original['Subject']}"
    reply["Date"] = email.utils.format_datetime(datetime.now().astimezone())
    reply["Message-ID"] = message_id
    reply["In-Reply-To"] = str(original["Message-ID"])
    reply["References"] = " ".join(filter(None, [str(original.get("References") or ""), str(original["Message-ID"])]))
    reply["MIME-Version"] = "1.0"


def _reply_to(original: EmailMessage) -> str:
    return str(original.get("Reply-To") or original["From"])


def gmail(original: EmailMessage, text: str, *, sender: str = OFFICER, language: str = "vi") -> bytes:
    """Gmail web: multipart/alternative, a quote header wrapped before the address, `>` quoting, gmail_quote HTML."""
    if language == "vi":
        header = "Vào Th 2, 6 thg 5, 2024 vào lúc 10:15 Tipbox <\ntipbox@bienphong.test> đã viết:"
    else:
        header = "On Mon, May 6, 2024 at 10:15 AM Tipbox <tipbox@bienphong.test>\nwrote:"
    reply = EmailMessage(policy=email.policy.SMTP)
    _headers(reply, original, sender, _reply_to(original), f"<CA{secrets.token_hex(12)}@mail.gmail.com>")
    reply.set_content(f"{text}\n\n{header}\n\n{_quoted(_plain(original))}\n", charset="utf-8")
    body = "".join(f"<div>{html.escape(line)}</div>" if line else "<div><br></div>" for line in text.split("\n"))
    original_html = original.get_body(("html",))
    assert original_html is not None
    reply.add_alternative(
        f'<div dir="ltr">{body}</div><br><div class="gmail_quote gmail_quote_container">'
        f'<div dir="ltr" class="gmail_attr">{html.escape(header.replace(chr(10), ""))}<br></div>'
        '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);'
        f'padding-left:1ex">{original_html.get_content()}</blockquote></div>',
        subtype="html",
    )
    return reply.as_bytes()


def outlook(original: EmailMessage, text: str, *, sender: str = OFFICER, attach: bytes = b"") -> bytes:
    """Outlook (Vietnamese): top-posted, the original below an underscore rule and a Từ/Đã gửi/Đến/Chủ đề block,
    not `>`-quoted; Thread-Index; optionally a photo attached (multipart/mixed)."""
    block = (
        "________________________________\n"
        f"Từ: Tipbox <{TIPBOX}>\n"
        "Đã gửi: Thứ Hai, ngày 6 tháng 5 năm 2024 10:15\n"
        f"Đến: {OFFICER} <{OFFICER}>\n"
        f"Chủ đề: {original['Subject']}\n"
    )
    reply = EmailMessage(policy=email.policy.SMTP)
    _headers(reply, original, sender, _reply_to(original), f"<SEZP{secrets.token_hex(10).upper()}@outlook.com>")
    reply["Thread-Topic"] = str(original["Subject"])
    reply["Thread-Index"] = "AQHaoBcDEFGHIJKLMNOPQRSTUVWXYZ=="
    reply["Content-Language"] = "vi-VN"
    reply.set_content(f"{text}\n\n{block}\n{_plain(original)}\n", charset="utf-8")
    paragraphs = "".join(
        f'<div class="elementToProof">{html.escape(line) or "<br>"}</div>' for line in text.split("\n")
    )
    reply.add_alternative(
        f'<html><head><style>p{{margin:0}}</style></head><body><div dir="ltr">{paragraphs}</div>'
        '<div id="appendonsend"></div><hr style="display:inline-block;width:98%">'
        f'<div id="divRplyFwdMsg" dir="ltr"><b>Từ:</b> Tipbox &lt;{TIPBOX}&gt;<br><b>Đã gửi:</b> Thứ Hai, ngày 6 '
        "tháng 5 năm 2024 10:15<br></div><div>" + html.escape(_plain(original)) + "</div></body></html>",
        subtype="html",
    )
    if attach:
        reply.add_attachment(attach, "image", "png", filename="image001.png")
    return reply.as_bytes()


def thunderbird(original: EmailMessage, text: str, *, sender: str = OFFICER, bottom: bool = False) -> bytes:
    """Thunderbird (Vietnamese), plain text with format=flowed; replying below the quote when `bottom`."""
    header = "Vào 06/05/2024 10:15, Tipbox đã viết:"
    quoted = f"{header}\n{_quoted(_plain(original))}"
    body = f"{quoted}\n\n{text}\n" if bottom else f"{text}\n\n{quoted}\n"
    reply = EmailMessage(policy=email.policy.SMTP)
    _headers(reply, original, sender, _reply_to(original), f"<{secrets.token_hex(8)}-thunderbird@post.test>")
    reply["User-Agent"] = "Mozilla Thunderbird"
    reply["Content-Language"] = "vi"
    reply.set_content(body, charset="utf-8")
    reply.replace_header("Content-Type", 'text/plain; charset="UTF-8"; format=flowed')
    return reply.as_bytes()


def html_only(original: EmailMessage, text: str, *, sender: str = OFFICER) -> bytes:
    """A client that sends only HTML (some webmail and phone apps): Thunderbird's cite markup."""
    reply = EmailMessage(policy=email.policy.SMTP)
    _headers(reply, original, sender, _reply_to(original), f"<{secrets.token_hex(8)}@mobile.post.test>")
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in text.split("\n") if line)
    reply.set_content(
        f'<html><body>{paragraphs}<div class="moz-cite-prefix">Vào 06/05/2024 10:15, Tipbox đã viết:<br></div>'
        f'<blockquote type="cite"><p>{html.escape(TIP_TEXT)}</p></blockquote></body></html>',
        subtype="html",
        charset="utf-8",
    )
    return reply.as_bytes()


def unrelated(to: str, subject: str = "Họp giao ban sáng thứ Hai", sender: str = "chi-huy@post.test") -> bytes:
    """Ordinary mail, no thread: what else lands in a shared mailbox."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(datetime.now().astimezone())
    message["Message-ID"] = email.utils.make_msgid(domain="post.test")
    message.set_content("Họp lúc 7 giờ.\n")
    return message.as_bytes()


Client = Callable[..., bytes]
