"""Dovecot with LMTP and Pigeonhole Sieve on loopback: mail delivered over LMTP runs each user's Sieve script,
and IMAP shows where it was filed.

Beside tests/mta.py (Postfix in front of Dovecot IMAP) rather than inside it: this instance has its own base
directory, ports, users and a Sieve script per user, and Postfix is not needed to hand a message to LMTP.
Starting Dovecot needs root, as in CI; a system-wide Dovecot, if any, is neither read from nor touched.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import require
from tests.mailsink import free_port
from tests.mta import MAIL_GID, MAIL_UID

DOMAIN = "post.test"
# One LIST answer: flags, hierarchy delimiter, then the name, quoted here since every test name has a space.
_LISTED = re.compile(r'^\([^)]*\) (?:"[^"]*"|NIL) "?((?:[^"\\]|\\.)*)"?$')
PASSWORD = "sieve-imap-password"

_DOVECOT_CONF = """\
instance_name = {instance}
base_dir = {root}/run
state_dir = {root}/state
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
log_path = {root}/dovecot.log
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {uid}
last_valid_uid = {uid}
mail_location = maildir:{root}/mail/%n
postmaster_address = postmaster@{domain}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}
plugin {{
  sieve = file:{root}/sieve/%n;active={root}/sieve/%n.sieve
}}
"""


def imap_utf7(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 5.1.3), as Dovecot lists and selects it."""
    out, pending = [], []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + encoded.replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if " " <= char <= "~":
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def _from_imap_utf7(name: str) -> str:
    def decode(match: re.Match[str]) -> str:
        body = match.group(1)
        if not body:
            return "&"
        padded = body.replace(",", "/") + "=" * (-len(body) % 4)
        return base64.b64decode(padded).decode("utf-16-be")

    return re.sub(r"&([^-]*)-", decode, name)


@dataclass
class SieveMailbox:
    """Dovecot on `imap_port` (IMAP) and `lmtp_port` (LMTP), one Maildir and one active Sieve script per user."""

    root: Path
    dovecot: str = "dovecot"
    sievec: str = "sievec"
    imap_port: int = 0
    lmtp_port: int = 0

    @property
    def conf(self) -> Path:
        return self.root / "dovecot.conf"

    def start(self, users: list[str], extra_conf: str = "") -> SieveMailbox:
        """Start Dovecot for `users`; `extra_conf` is added to its configuration (a namespace, a setting)."""
        self.imap_port, self.lmtp_port = free_port(), free_port()
        for folder in ("run", "state", "mail", "home", "sieve"):
            (self.root / folder).mkdir()
        self.root.chmod(0o755)  # Dovecot's own users walk through it
        for folder in ("mail", "home", "sieve"):
            os.chown(self.root / folder, MAIL_UID, MAIL_GID)
        self.conf.write_text(
            _DOVECOT_CONF.format(
                instance=f"tipbox-sieve-{self.root.name}", root=self.root, domain=DOMAIN, uid=MAIL_UID,
                imap_port=self.imap_port, lmtp_port=self.lmtp_port,
            )
            + extra_conf
        )
        home = self.root / "home"
        (self.root / "users").write_text(
            "".join(f"{user}@{DOMAIN}:{{PLAIN}}{PASSWORD}:{MAIL_UID}:{MAIL_GID}::{home}::\n" for user in users)
        )
        self._run(self.dovecot, "-c", str(self.conf))
        for port in (self.imap_port, self.lmtp_port):
            self._wait_for_port(port)
        return self

    def stop(self) -> None:
        pid_file = self.root / "run" / "master.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            deadline = time.monotonic() + 10
            while pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def install_script(self, user: str, script: str) -> subprocess.CompletedProcess[str]:
        """Compile `script` with Pigeonhole's `sievec` and make it `user`'s active script (as ManageSieve would)."""
        folder = self.root / "sieve" / user
        folder.mkdir(exist_ok=True)
        path = folder / "tipbox.sieve"
        path.write_text(script, encoding="utf-8")
        compiled = subprocess.run(
            [self.sievec, "-c", str(self.conf), str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        active = self.root / "sieve" / f"{user}.sieve"
        active.symlink_to(f"{user}/tipbox.sieve")
        for item in (folder, active, *folder.iterdir()):
            os.lchown(item, MAIL_UID, MAIL_GID)
        return compiled

    def deliver(self, user: str, raw: bytes, sender: str = "tipbox@bienphong.example.vn") -> None:
        """Hand one message to Dovecot's LMTP for `user`; raises unless it was accepted."""
        with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=30) as lmtp:
            refused = lmtp.sendmail(sender, [f"{user}@{DOMAIN}"], raw)
        assert not refused, refused

    def create_folders(self, user: str, names: list[str]) -> None:
        """Make and subscribe each folder, as a webmail's "new folder" or Thunderbird's does."""
        with self.imap(user) as imap:
            for name in names:
                for command in (imap.create, imap.subscribe):
                    status, said = command(f'"{imap_utf7(name)}"')
                    assert status == "OK", (name, said)

    def folders(self, user: str) -> dict[str, list[bytes]]:
        """What an officer's client shows of `user`'s mailbox: the INBOX and each subscribed folder (names decoded
        to UTF-8), with its messages as stored. IMAP clients, phones and webmails list only subscribed folders."""
        found: dict[str, list[bytes]] = {}
        with self.imap(user) as imap:
            _, listed = imap.lsub()
            names = [self._listed(line, listed) for line in listed if line is not None]
            for wire_name in ["INBOX", *[name for name in names if name != "INBOX"]]:
                status, _ = imap.select(f'"{wire_name}"', readonly=True)
                assert status == "OK", wire_name
                _, numbers = imap.search(None, "ALL")
                messages = []
                for number in numbers[0].split():
                    _, data = imap.fetch(number.decode(), "(BODY.PEEK[])")
                    item = data[0]
                    assert isinstance(item, tuple), data
                    messages.append(bytes(item[1]))
                found[_from_imap_utf7(wire_name)] = messages
        return found

    def all_folders(self, user: str) -> set[str]:
        """Every folder of `user`'s mailbox, subscribed or not (names decoded to UTF-8)."""
        with self.imap(user) as imap:
            _, listed = imap.list()
            return {_from_imap_utf7(self._listed(line, listed)) for line in listed}

    @contextlib.contextmanager
    def imap(self, user: str) -> Iterator[imaplib.IMAP4]:
        """An IMAP session logged in as `user`."""
        with imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10) as imap:
            imap.login(f"{user}@{DOMAIN}", PASSWORD)
            yield imap

    @staticmethod
    def _listed(line: object, listed: object) -> str:
        assert isinstance(line, bytes), listed
        match = _LISTED.match(line.decode("ascii"))
        assert match, line
        return match.group(1)

    def _run(self, command: str, *args: str) -> None:
        output = self.root / "commands.log"
        with output.open("ab") as log:  # a file, not a pipe: the daemon forks and would hold a pipe open
            done = subprocess.run([command, *args], stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=60)
        if done.returncode != 0:
            said = output.read_text(errors="replace")
            raise RuntimeError(f"{command} {' '.join(args)} failed:\n{said}\n{self.log()}")

    def _wait_for_port(self, port: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}\n{self.log()}") from None
                time.sleep(0.05)


@pytest.fixture
def sieve_mailbox() -> Iterator[SieveMailbox]:
    """A fresh Dovecot with LMTP and Sieve for one test (users are given to `start`)."""
    dovecot = require("dovecot", "dovecot-imapd")
    sievec = require("sievec", "dovecot-sieve")
    if not Path("/usr/lib/dovecot/lmtp").exists():
        message = "Dovecot's LMTP server is not installed (apt-get install dovecot-lmtpd)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    if os.geteuid() != 0:
        message = "Dovecot needs root to start (CI runs as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="tipbox-sieve-", dir="/tmp"))
    mailbox = SieveMailbox(root, dovecot, sievec)
    try:
        yield mailbox
    finally:
        mailbox.stop()
        shutil.rmtree(root, ignore_errors=True)
