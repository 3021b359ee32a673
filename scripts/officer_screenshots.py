"""Remake the duty guide's screenshots (docs/can-bo-gmail.png, docs/can-bo-thunderbird.png) from real tipbox emails.

    .venv/bin/python scripts/officer_screenshots.py [--out docs]

The emails are written by the app's own code (`Composer`, the cleaned photo from `app.attachments`), then parsed
back from their wire bytes as a mail client would; the two views only frame them the way Gmail and Thunderbird
lay out a message (no logo or asset of either). Folder and label names come from `app.filters`. Debian's
Chromium renders the views (Playwright, `/usr/bin/chromium`); the PNGs are reduced to 256 colours to stay small.
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import html
import io
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from PIL import Image, ImageDraw
from playwright.sync_api import sync_playwright

from app import attachments, filters, receipts
from app.categories import CATEGORIES, RECEIPT_TAGS
from app.mail import Attachment, Composer, Tip
from app.settings import Post

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"screenshot-secret-key-0123456789abcdef"
SENDER = "tipbox@bienphong.example.vn"
POST = Post("ncs", "Đồn Biên phòng Na Cô Sa", "nacosa@bienphong.example.vn", ("vi", "hmn"))
CHROMIUM = "/usr/bin/chromium"


def _photo() -> Attachment:
    """A small drawn scene as a phone would send it: a JPEG, cleaned by tipbox like any upload."""
    picture = Image.new("RGB", (1200, 900), "#9cc3e6")
    draw = ImageDraw.Draw(picture)
    draw.polygon([(0, 520), (300, 300), (620, 520), (900, 340), (1200, 540), (1200, 900), (0, 900)], fill="#5d8a4e")
    draw.polygon([(520, 900), (600, 560), (660, 560), (820, 900)], fill="#b8a07a")
    draw.rectangle((640, 470, 720, 560), fill="#7a4b2a")
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=80)
    upload = attachments.Upload("photo", buffer.getvalue())
    return attachments.clean([upload], max_files=5, max_bytes=20_000_000)[0]


def _tip(category: str, what: str, where: str, when: str, day: int, hour: int, **more: object) -> Tip:
    values: dict[str, object] = {"post": POST, "contact": "", "language": "vi", "follow_up_to": None, **more}
    receipt = values.pop("receipt", None) or receipts.new_code(RECEIPT_TAGS[category], SECRET)
    received = datetime(2026, 11, day, hour, 5, tzinfo=UTC)
    return Tip(category=category, what=what, where=where, when=when, received_at=received, receipt=receipt, **values)  # type: ignore[arg-type]


def _emails() -> list[EmailMessage]:
    """A drugs tip with a photo, a follow-up to it, and two other tips, as the post's mailbox receives them."""
    composer = Composer(SENDER, SECRET)
    code = receipts.new_code(RECEIPT_TAGS["drugs"], SECRET)
    photo = _photo()
    what = "Sáng chủ nhật có hai người lạ bán ma túy ở góc chợ phiên, gần hàng thịt.\nHọ đi xe máy, biển số tỉnh khác."
    tips = [
        (_tip("drugs", what, "Chợ phiên bản Na Cô Sa", "Chủ nhật, khoảng 7 giờ sáng", 29, 0, receipt=code), [photo]),
        (_tip("other", "Hôm nay họ lại đến, đi cùng một người nữa.", "Chợ phiên", "Sáng nay", 30, 1,
              receipt=code, follow_up_to=code), []),
        (_tip("border", "Muaj ob tug neeg hla ciam teb thaum tsaus ntuj.", "Ze lub zos", "Nag hmo", 30, 2,
              language="hmn"), []),
        (_tip("theft", "Mất trộm hai con trâu đêm qua.", "Bản Sả Lùng", "Đêm qua", 30, 3), []),
    ]
    wires = [composer.compose(tip, files).data for tip, files in tips]
    return [email.message_from_bytes(wire, policy=email.policy.default) for wire in wires]


def _body(message: EmailMessage) -> str:
    """The HTML part with its inline photos as data: URIs (what a client does with `cid:`)."""
    part = message.get_body(("html",))
    assert part is not None
    text = str(part.get_content())
    for item in message.walk():
        cid = item.get("Content-ID")
        if cid:
            data = base64.b64encode(item.get_payload(decode=True)).decode()  # type: ignore[arg-type]
            text = text.replace(f"cid:{cid.strip('<>')}", f"data:{item.get_content_type()};base64,{data}")
    return text


def _frame(message: EmailMessage) -> str:
    fit = "this.style.height=this.contentDocument.body.scrollHeight+30+'px'"
    return f'<iframe srcdoc="{html.escape(_body(message))}" onload="{fit}"></iframe>'


def _text(value: object) -> str:
    return html.escape(re.sub(r"\s+", " ", str(value)))


def _folders() -> list[str]:
    rules = filters.sorting(SENDER)
    return [*(folder.name for folder in rules.folders), *rules.by_hand]


_GMAIL_CSS = """
body{margin:0;font-family:Arial,sans-serif;background:#f6f8fc;color:#1f1f1f;font-size:14px}
header{height:56px;display:flex;align-items:center;padding:0 16px;gap:80px} .brand{font-size:20px;color:#444}
.search{background:#e9eef6;border-radius:24px;padding:12px 20px;width:560px;color:#555}
main{display:flex} nav{width:330px} nav ul{list-style:none;margin:0;padding:0}
nav li{padding:6px 16px 6px 26px;border-radius:0 16px 16px 0}
nav li{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
nav li.on{background:#d3e3fd;font-weight:bold} nav h4{margin:14px 26px 6px;font-size:14px}
.tag{display:inline-block;width:10px;height:10px;border:2px solid #777;border-radius:2px;margin-right:10px}
section{flex:1;background:#fff;border-radius:16px;margin:0 16px 16px 0;padding:18px 24px}
h1{font-size:20px;font-weight:normal;margin:0 0 14px}
.chip{font-size:12px;background:#ddd;border-radius:4px;padding:2px 6px;margin-left:8px}
.chip{vertical-align:middle;white-space:nowrap}
.who{display:flex;justify-content:space-between;color:#5e5e5e;margin-bottom:6px} .who b{color:#1f1f1f}
iframe{border:0;width:100%;height:600px}
"""

_THUNDERBIRD_CSS = """
body{margin:0;font-family:"DejaVu Sans",Arial,sans-serif;font-size:13px;color:#1a1a1a;display:flex;height:100vh}
aside{width:300px;background:#f0f0f4;border-right:1px solid #ccc;padding:8px 0}
aside ul{list-style:none;margin:0;padding:0 0 0 14px} aside li{padding:4px 8px;white-space:nowrap}
aside li.on{background:#cfe0f7} aside b{display:block;padding:4px 10px}
.right{flex:1;display:flex;flex-direction:column} table{border-collapse:collapse;width:100%}
th{text-align:left;font-weight:normal;background:#f4f4f6;border-bottom:1px solid #ccc;padding:4px 8px}
td{padding:4px 8px;white-space:nowrap} tr.sel td{background:#2a6fd6;color:#fff}
.list{border-bottom:2px solid #ccc;height:70px} .head{padding:8px 14px;background:#fafafa;border-bottom:1px solid #ddd}
.head div{line-height:1.7} .head span{display:inline-block;width:80px;color:#666}
iframe{border:0;width:100%;height:600px}
"""


def gmail_view(messages: list[EmailMessage]) -> str:
    """The drugs tip open in a Gmail-like window, its category label applied by the imported filter."""
    tip = messages[0]
    label = filters.folder_name(CATEGORIES["drugs"])
    labels = "".join(
        f'<li class="{"on" if name == label else ""}"><span class="tag"></span>{_text(name)}</li>'
        for name in _folders()
    )
    chips = f'<span class="chip">Hộp thư đến</span><span class="chip">{_text(label)}</span>'
    who = f'<span><b>{_text(tip["From"])}</b> &nbsp;tới {_text(tip["To"])}</span><span>{_text(tip["Date"])}</span>'
    return (
        f'<!doctype html><html lang="vi"><meta charset="utf-8"><style>{_GMAIL_CSS}</style>'
        '<header><span class="brand">Hộp thư (giống Gmail)</span><span class="search">Tìm trong thư</span></header>'
        f"<main><nav><ul><li>Hộp thư đến</li><li>Có gắn dấu sao</li><li>Đã gửi</li></ul><h4>Nhãn</h4><ul>{labels}</ul>"
        f'</nav><section><h1>{_text(tip["Subject"])}{chips}</h1><div class="who">{who}</div>{_frame(tip)}</section>'
        "</main></html>"
    )


def thunderbird_view(messages: list[EmailMessage]) -> str:
    """The follow-up open in a Thunderbird-like window, in the follow-ups folder the filters move it to."""
    shown = messages[1]
    folder = filters.folder_name(filters.FOLLOW_UPS)
    tree = "".join(f'<li class="{"on" if name == folder else ""}">{_text(name)}</li>' for name in _folders())
    when = shown["Date"].datetime.strftime("%d/%m/%Y %H:%M")
    row = f'<tr class="sel"><td>{_text(shown["Subject"])}</td><td>{_text(shown["From"])}</td><td>{when}</td></tr>'
    head = "".join(
        f"<div><span>{name}</span>{_text(shown[header])}</div>"
        for name, header in (("Từ", "From"), ("Chủ đề", "Subject"), ("Tới", "To"), ("Ngày", "Date"))
    )
    return (
        f'<!doctype html><html lang="vi"><meta charset="utf-8"><style>{_THUNDERBIRD_CSS}</style>'
        f"<aside><b>{_text(POST.mailbox)}</b><ul><li>Hộp thư đến</li>{tree}<li>Thư đã gửi</li><li>Thùng rác</li></ul>"
        '</aside><div class="right"><div class="list"><table><tr><th>Chủ đề</th><th>Người gửi</th><th>Ngày</th></tr>'
        f'{row}</table></div><div class="head">{head}</div>{_frame(shown)}</div></html>'
    )


def shoot(pages: dict[Path, str], width: int = 1280, height: int = 900) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": width, "height": height})
        for path, markup in pages.items():
            page.set_content(markup)
            page.wait_for_timeout(300)  # the iframes size themselves on load
            shot = Image.open(io.BytesIO(page.screenshot(full_page=False)))
            shot.convert("RGB").quantize(256).save(path, optimize=True)
            print(f"{path} {path.stat().st_size // 1024} KB")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    messages = _emails()
    views = {"can-bo-gmail.png": gmail_view(messages), "can-bo-thunderbird.png": thunderbird_view(messages)}
    shoot({args.out / name: markup for name, markup in views.items()})


if __name__ == "__main__":
    main()
