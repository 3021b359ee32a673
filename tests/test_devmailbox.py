"""The embedded dev mailbox: a real SMTP server on loopback that files messages as .eml."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

import aiosmtplib

from app.devmailbox import DevMailbox


def test_messages_are_filed_as_eml(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "mailbox"

    async def scenario() -> None:
        mailbox = DevMailbox(folder)
        port = await mailbox.start()
        try:
            for number in range(2):
                await aiosmtplib.send(
                    f"Subject: tin {number}\r\n\r\nNội dung\r\n".encode(),
                    sender="tipbox@localhost", recipients=["officer@tipbox.invalid"],
                    hostname="127.0.0.1", port=port, start_tls=False,
                )
        finally:
            await mailbox.stop()

    asyncio.run(scenario())
    files = sorted(folder.glob("*.eml"))
    assert len(files) == 2
    subjects = {str(email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["Subject"]) for f in files}
    assert subjects == {"tin 0", "tin 1"}
    assert not list(folder.glob("*.part"))


def test_unwritable_folder_refuses_the_message(tmp_path: Path) -> None:
    """If the .eml cannot be written, the sender must not be told "sent": the server answers 451."""
    folder = tmp_path / "mailbox"

    async def scenario() -> int:
        mailbox = DevMailbox(folder)
        port = await mailbox.start()
        folder.rmdir()
        folder.write_text("a file where the folder was")  # unwritable even for root
        try:
            await aiosmtplib.send(b"Subject: x\r\n\r\ny\r\n", sender="a@localhost", recipients=["b@localhost"],
                                  hostname="127.0.0.1", port=port, start_tls=False)
        except aiosmtplib.SMTPDataError as exc:
            return exc.code
        finally:
            await mailbox.stop()
        return 250

    assert asyncio.run(scenario()) == 451
