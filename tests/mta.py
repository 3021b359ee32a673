"""A real mail system on loopback for end-to-end tests: Debian's Postfix in front of Dovecot IMAP.

Everything lives in one temporary directory the fixture owns: Postfix runs as its own instance (`postfix -c DIR`,
its own queue and data directories, SMTP with STARTTLS on a free 127.0.0.1 port, outbound mail disabled) and
delivers with its `virtual` agent to a Maildir; Dovecot (`dovecot -c CONF`, its own base directory) serves that
Maildir over IMAP on another free loopback port, with plaintext login. A system-wide Postfix or Dovecot, if
any, is neither read from nor touched. Starting either daemon needs root, as in CI.

Postfix's main.cf is the deployment kit's (deploy/postfix/main.cf: its size limit, its relay restrictions) with
only what a test instance needs set over it by `postconf -e` (`_MAIN_CF`: its own directories, port and TLS
certificate, delivery to a local Maildir instead of the provider, no SASL towards a provider).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from tests.helpers import require
from tests.mailsink import free_port

DOMAIN = "post.test"
OFFICER = f"officer@{DOMAIN}"
PASSWORD = "officer-imap-password"
KIT_MAIN_CF = Path(__file__).resolve().parent.parent / "deploy" / "postfix" / "main.cf"
# The reply address of the answers tests (TIPBOX_REPLY_TO): a mailbox of its own, same password.
ANSWERS = f"answers@{DOMAIN}"
# Mail is stored as nobody:nogroup, present on every Debian system (Postfix and Dovecot both refuse root).
MAIL_UID = MAIL_GID = 65534

_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-tipbox-test
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
myhostname = mta.tipbox.test
mydomain = tipbox.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
relay_domains =
default_transport = error:outbound mail is disabled in this test instance
alias_maps =
alias_database =
biff = no
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_sasl_auth_enable = no
virtual_mailbox_limit = 0
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/postfix/mailboxes
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_tls_security_level = may
smtpd_tls_chain_files = {root}/tls/server.pem
smtpd_tls_loglevel = 1
"""

_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
virtual   unix  - n n -     - virtual
smtp      unix  - - n -     - smtp
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

_DOVECOT_CONF = """\
instance_name = {instance}
base_dir = {root}/dovecot/run
state_dir = {root}/dovecot/state
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
log_path = {root}/dovecot.log
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {uid}
last_valid_uid = {uid}
mail_location = maildir:{root}/mail/%d/%n
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/dovecot/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/dovecot/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@dataclass
class MailSystem:
    """Postfix (SMTP, STARTTLS) on `smtp_port` delivering to `OFFICER`'s Maildir; Dovecot serving it on `imap_port`."""

    root: Path
    ca: trustme.CA
    postfix: str = "postfix"
    dovecot: str = "dovecot"
    smtp_port: int = 0
    imap_port: int = 0
    # main.cf settings set over the kit's and `_MAIN_CF`, e.g. {"message_size_limit": "10240000"}.
    overrides: dict[str, str] = field(default_factory=dict)

    @property
    def ca_file(self) -> Path:
        return self.root / "tls" / "ca.pem"

    def start(self) -> MailSystem:
        self.smtp_port, self.imap_port = free_port(), free_port()
        root = self.root
        for folder in ("postfix", "queue", "data", "mail", "home", "tls", "dovecot"):
            (root / folder).mkdir()
        root.chmod(0o755)  # the daemons' own users walk through it
        shutil.chown(root / "data", "postfix")
        for folder in ("mail", "home"):
            os.chown(root / folder, MAIL_UID, MAIL_GID)
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        chain = root / "tls" / "server.pem"
        chain.write_bytes(server.private_key_pem.bytes() + b"".join(blob.bytes() for blob in server.cert_chain_pems))
        chain.chmod(0o600)  # read by Postfix as root, before it drops privileges

        settings = {"root": root, "domain": DOMAIN, "uid": MAIL_UID, "gid": MAIL_GID}
        shutil.copyfile(KIT_MAIN_CF, root / "postfix" / "main.cf")
        test_instance = [line for line in _MAIN_CF.format(**settings).splitlines() if line.strip()]
        test_instance += [f"{name} = {value}" for name, value in self.overrides.items()]
        self._run(str(Path(self.postfix).with_name("postconf")), "-c", str(root / "postfix"), "-e", *test_instance)
        (root / "postfix" / "master.cf").write_text(_MASTER_CF.format(port=self.smtp_port))
        (root / "postfix" / "mailboxes").write_text(f"{OFFICER} {DOMAIN}/officer/\n{ANSWERS} {DOMAIN}/answers/\n")
        conf = root / "dovecot" / "dovecot.conf"
        conf.write_text(_DOVECOT_CONF.format(instance=f"tipbox-test-{root.name}", port=self.imap_port, **settings))
        (root / "dovecot" / "users").write_text(
            f"{OFFICER}:{{PLAIN}}{PASSWORD}:{MAIL_UID}:{MAIL_GID}::{root}/home::\n"
            f"{ANSWERS}:{{PLAIN}}{PASSWORD}:{MAIL_UID}:{MAIL_GID}::{root}/home::\n"
        )

        self._run(self.postfix, "-c", str(root / "postfix"), "start")
        self._run(self.dovecot, "-c", str(conf))
        self._wait_for_port(self.smtp_port)
        self._wait_for_port(self.imap_port)
        return self

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(self.postfix, "-c", str(self.root / "postfix"), "stop")
        pid_file = self.root / "dovecot" / "run" / "master.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            deadline = time.monotonic() + 10
            while pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    def logs(self) -> str:
        """Both daemons' logs, for a failing assertion's message."""
        parts = []
        for name in ("postfix.log", "dovecot.log"):
            path = self.root / name
            parts.append(f"--- {name}\n{path.read_text(errors='replace') if path.exists() else '(none)'}")
        return "\n".join(parts)

    def fetch(self, count: int, timeout: float = 20.0) -> list[bytes]:
        """Wait until the officer's INBOX holds `count` messages; return them as stored (raw bytes), oldest first."""
        deadline = time.monotonic() + timeout
        while True:
            with imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10) as imap:
                imap.login(OFFICER, PASSWORD)
                imap.select("INBOX", readonly=True)
                _, found = imap.search(None, "ALL")
                numbers = found[0].split()
                if len(numbers) >= count:
                    messages = []
                    for number in numbers:
                        _, data = imap.fetch(number.decode(), "(BODY.PEEK[])")
                        item = data[0]
                        assert isinstance(item, tuple), data
                        messages.append(bytes(item[1]))
                    return messages
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(numbers)} of {count} messages arrived\n{self.logs()}")
            time.sleep(0.2)

    def _run(self, command: str, *args: str) -> None:
        # Into a file, not a pipe: the daemons fork and their children would hold a pipe open.
        output = self.root / "commands.log"
        with output.open("ab") as log:
            done = subprocess.run([command, *args], stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=60)
        if done.returncode != 0:
            said = output.read_text(errors="replace")
            raise RuntimeError(f"{command} {' '.join(args)} failed:\n{said}\n{self.logs()}")

    def _wait_for_port(self, port: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}\n{self.logs()}") from None
                time.sleep(0.05)


@pytest.fixture(scope="session")
def mail_system(ca: trustme.CA) -> Iterator[MailSystem]:
    """Postfix and Dovecot, started once for the session and stopped at its end."""
    postfix = require("postfix", "postfix")
    dovecot = require("dovecot", "dovecot-imapd")
    if os.geteuid() != 0:
        message = "Postfix and Dovecot need root to start (CI runs as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="tipbox-mta-", dir="/tmp"))
    system = MailSystem(root, ca, postfix, dovecot)
    try:
        system.start()
        yield system
    finally:
        system.stop()
        shutil.rmtree(root, ignore_errors=True)
