"""The deployment kit (deploy/): each file checked by the tool that reads it, and every figure in it the one that
`app.sizes` derives from the kit's own settings. The Docker engine does not run in CI: the Compose file is checked
by docker-compose's own validation and compared with the systemd set-up, value by value."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app import sizes
from app.cli import CONFIG_ERROR
from app.forms import BODY_IDLE_SECONDS, MIN_BODY_RATE
from app.settings import ConfigError, Settings, load_settings
from tests.helpers import require

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "deploy"
TIPBOX = ROOT / ".venv" / "bin" / "tipbox"
# What Compose changes in tipbox's settings, and why: the other services are reached by name on its network.
COMPOSE_ONLY = {
    "TIPBOX_SMTP_HOST": "postfix",
    "TIPBOX_LIMITS_STORAGE": "redis://redis:6379/0",
    "TIPBOX_TRUSTED_PROXIES": "10.57.0.10",  # Caddy's address on the network
    "TIPBOX_METRICS_ADDRESS": "0.0.0.0:9108",  # inside the container; the port is not published
}


def _env_file() -> dict[str, str]:
    values = {}
    for line in (KIT / "tipbox.env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def _kit_settings(**overrides: str) -> Settings:
    """The settings tipbox.env gives, with a real secret (its placeholder is refused, see below) and one post."""
    env = {**_env_file(), "TIPBOX_SECRET_KEY": secrets.token_urlsafe(32), "TIPBOX_POSTS_FILE": "",
           "TIPBOX_MAILBOX": "post@example.vn", "TIPBOX_MAIL_FROM": "tipbox@example.vn",
           "TIPBOX_PUBLIC_URL": "https://tip.example.vn", **overrides}
    known = {f"TIPBOX_{name.upper()}" for name in Settings.model_fields}
    return load_settings(**{name.removeprefix("TIPBOX_").lower(): value for name, value in env.items()
                            if name in known and value})


def _one(pattern: str, path: Path) -> str:
    found = re.findall(pattern, path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert len(found) == 1, (pattern, path, found)
    return str(found[0])


def _all(pattern: str, path: Path) -> list[str]:
    return [str(value) for value in re.findall(pattern, path.read_text(encoding="utf-8"), flags=re.MULTILINE)]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((KIT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("name", ["TIPBOX_MAIL_FROM", "TIPBOX_PUBLIC_URL"])
def test_the_kits_placeholder_addresses_cannot_be_deployed(name: str) -> None:
    """Left unedited, tips (and Postfix's bounces) would go to whoever owns the example domain: tipbox refuses."""
    assert "example.invalid" in _env_file()[name]
    with pytest.raises(ConfigError, match=rf"^{name}: .*placeholder"):
        _kit_settings(**{name: _env_file()[name]})


def test_the_placeholder_secret_cannot_be_deployed() -> None:
    assert _env_file()["TIPBOX_SECRET_KEY"] == "change-me"
    with pytest.raises(ConfigError, match=r"^TIPBOX_SECRET_KEY"):
        _kit_settings(TIPBOX_SECRET_KEY="change-me")


def test_every_figure_in_the_kit_is_the_one_derived_from_the_settings() -> None:
    settings = _kit_settings()
    proxy = str(sizes.proxy_body_limit(settings))
    assert _one(r"^\s*client_max_body_size (\d+);", KIT / "nginx" / "nginx.conf") == proxy
    caddyfile = KIT / "caddy" / "Caddyfile"
    assert _one(r"^\s*max_size (\d+)$", caddyfile) == proxy
    assert _one(r"Content-Length}\) > (\d+)`", caddyfile) == proxy
    assert _one(r"^message_size_limit = (\d+)$", KIT / "postfix" / "main.cf") == str(sizes.mta_size_limit(settings))
    # The proxies wait for tipbox at least as long as tipbox lets a slow upload and the mail server take.
    assert _one(r"^\s*read_timeout (\d+)s$", caddyfile) == str(sizes.proxy_wait_seconds(settings))
    assert sizes.proxy_wait_seconds(settings) >= sizes.proxy_body_limit(settings) / MIN_BODY_RATE
    nginx = KIT / "nginx" / "nginx.conf"
    assert int(_one(r"^\s*proxy_read_timeout (\d+)s;", nginx)) >= sizes.answer_seconds(settings)
    assert int(_one(r"^\s*client_body_timeout (\d+)s;", nginx)) >= max(60, BODY_IDLE_SECONDS)
    memory = sizes.memory_max(settings)
    assert _one(r"^MemoryMax=(\S+)$", KIT / "tipbox.service") == memory
    tipbox = _compose()["services"]["tipbox"]
    assert tipbox["mem_limit"] == tipbox["memswap_limit"] == memory.lower()  # and no swap, as MemorySwapMax=0
    # The largest email fits the kit's Postfix, with what Postfix adds on top.
    assert sizes.too_large_for(settings, sizes.mta_size_limit(settings)) is None


def test_the_proxies_forward_to_the_address_tipbox_serves_and_trusts() -> None:
    host, port = "127.0.0.1", "8000"
    assert _one(r"^ExecStart=\S+ serve --host (\S+ --port \d+)$", KIT / "tipbox.service") == f"{host} --port {port}"
    assert _one(r"^\s*server (\S+);$", KIT / "nginx" / "nginx.conf") == f"{host}:{port}"
    assert _one(r"reverse_proxy {\$TIPBOX_UPSTREAM:(\S+)}", KIT / "caddy" / "Caddyfile") == f"{host}:{port}"
    # The proxy connects from loopback, the one address tipbox believes forwarding headers from.
    assert _env_file()["TIPBOX_TRUSTED_PROXIES"] == host
    assert _env_file()["TIPBOX_SMTP_HOST"] == host  # the local Postfix, listening on loopback only
    assert _one(r"^inet_interfaces = (\S+)$", KIT / "postfix" / "main.cf") == "loopback-only"


def test_compose_keeps_the_systemd_settings_but_the_addresses_of_its_services() -> None:
    compose = _compose()
    services = compose["services"]
    tipbox = services["tipbox"]
    assert tipbox["env_file"] == "${TIPBOX_ENV_FILE:-/etc/tipbox/tipbox.env}"  # the systemd unit's EnvironmentFile
    assert _one(r"^EnvironmentFile=(\S+)$", KIT / "tipbox.service") == "/etc/tipbox/tipbox.env"
    assert tipbox["environment"] == COMPOSE_ONLY
    assert set(COMPOSE_ONLY) <= set(_env_file())  # each one replaces a setting of the file, adds none
    # ...and each names the service it stands for.
    network = compose["networks"]["tipbox"]["ipam"]["config"][0]["subnet"]
    assert network == "10.57.0.0/24" and compose["networks"]["tipbox"]["enable_ipv6"] is False
    assert ipaddress.ip_address(COMPOSE_ONLY["TIPBOX_TRUSTED_PROXIES"]) in ipaddress.ip_network(network)
    # Postfix in Compose is built from the kit's main.cf (the file tests/mta.py starts the tests' Postfix from).
    assert services["postfix"]["build"] == "./postfix" and "volumes" in services["postfix"]
    assert services["caddy"]["networks"]["tipbox"]["ipv4_address"] == COMPOSE_ONLY["TIPBOX_TRUSTED_PROXIES"]
    assert {"postfix", "redis"} <= set(services)
    assert tipbox["command"] == ["tipbox", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert services["caddy"]["environment"]["TIPBOX_UPSTREAM"] == "tipbox:8000"
    # The same Caddyfile and the same main.cf, opened to the compose network only.
    assert "./caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in services["caddy"]["volumes"]
    assert services["postfix"]["build"] == "./postfix"
    assert "COPY main.cf /etc/postfix/main.cf" in (KIT / "postfix" / "Dockerfile").read_text(encoding="utf-8")
    relay = " ".join(services["postfix"]["command"])
    assert re.findall(r"postconf -e (.*?) &&", relay) == [
        f"inet_interfaces=all 'mynetworks=127.0.0.0/8 {network}' maillog_file=/dev/stdout"
    ]
    # The proxy's own error pages come from tipbox, as on the VPS.
    assert services["pages"]["command"] == ["tipbox", "proxy-pages", "/pages"]
    assert "pages:/etc/tipbox/pages:ro" in services["caddy"]["volumes"]
    assert services["redis"]["command"] == ["redis-server", "--save", "", "--appendonly", "no"]


def test_docker_compose_validates_the_file() -> None:
    compose = require("docker-compose", "docker-compose")
    env = {**os.environ, "TIPBOX_ENV_FILE": str(KIT / "tipbox.env"), "TIPBOX_DOMAIN": "tip.example.vn"}
    done = subprocess.run([compose, "-f", str(KIT / "docker-compose.yml"), "config"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert resolved["services"]["tipbox"]["environment"]["TIPBOX_MAX_UPLOAD_BYTES"] == "20000000"  # env_file read
    assert resolved["services"]["caddy"]["environment"]["TIPBOX_DOMAIN"] == "tip.example.vn"


def test_systemd_verifies_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` runs without systemd as PID 1; only the installed path of tipbox is this checkout's."""
    analyze = require("systemd-analyze", "systemd")
    unit = tmp_path / "tipbox.service"
    unit.write_text((KIT / "tipbox.service").read_text(encoding="utf-8").replace("/opt/tipbox/bin/tipbox", str(TIPBOX)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")  # an unknown or misspelt key is a warning
    security = subprocess.run([analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True,
                              timeout=60, check=False)
    exposure = re.search(r"Overall exposure level for tipbox.service: ([\d.]+) (\w+)", security.stdout)
    assert exposure is not None, security.stdout + security.stderr
    assert float(exposure.group(1)) <= 2.0 and exposure.group(2) == "OK"
    text = unit.read_text(encoding="utf-8")
    for line in ("DynamicUser=yes", "ProtectSystem=strict", "PrivateTmp=yes", "Restart=on-failure",
                 "StateDirectory=tipbox", "MemorySwapMax=0", "LimitCORE=0", f"RestartPreventExitStatus={CONFIG_ERROR}"):
        assert f"\n{line}\n" in text
    # A value systemd cannot parse ("Failed to parse value, ignoring") is a line from `verify`, asserted empty above.
    # The answers store lives in the state directory, the one place the service may write.
    assert _env_file()["TIPBOX_ANSWERS_STORE"].startswith("sqlite:////var/lib/tipbox/")


def test_the_proxy_configurations_load(tmp_path: Path) -> None:
    nginx, caddy = require("nginx", "nginx"), require("caddy", "caddy")
    home = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    done = subprocess.run([caddy, "validate", "--config", str(KIT / "caddy" / "Caddyfile"), "--adapter", "caddyfile"],
                          capture_output=True, text=True, timeout=60, check=False, env=home)
    assert done.returncode == 0 and "Valid configuration" in done.stdout + done.stderr, done.stderr
    fmt = subprocess.run([caddy, "fmt", str(KIT / "caddy" / "Caddyfile")], capture_output=True, text=True, timeout=60,
                         check=True)
    assert fmt.stdout == (KIT / "caddy" / "Caddyfile").read_text(encoding="utf-8")  # as `caddy fmt` writes it
    # nginx -t loads the certificates it names: the kit's file, with only the paths a test machine has.
    from tests.test_proxies import nginx_conf

    conf = nginx_conf(tmp_path, http_port=1, https_port=2, upstream_port=3)
    done = subprocess.run([nginx, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_the_firewalls_connection_limit_holds_per_address() -> None:
    """deploy/nftables.nft loaded in a network namespace of its own (nothing on this machine is touched): the 21st
    connection from one address is refused, another address still gets in."""
    nft, unshare, ip = require("nft", "nftables"), shutil.which("unshare"), require("ip", "iproute2")
    if os.geteuid() != 0 or unshare is None:
        pytest.fail("the firewall test needs root and unshare (util-linux), as in CI")
    script = f"""
import socket, subprocess
subprocess.run([{ip!r}, "link", "set", "lo", "up"], check=True)
subprocess.run([{nft!r}, "-f", {str(KIT / "nftables.nft")!r}], check=True)
server = socket.create_server(("127.0.0.1", 443), backlog=64)
held, results = [], []
for source in ["127.0.0.5"] * 21 + ["127.0.0.6"]:
    client = socket.socket()
    client.bind((source, 0))
    client.settimeout(5)
    try:
        client.connect(("127.0.0.1", 443))
        results.append("open")
    except ConnectionRefusedError:
        results.append("refused")
    held.append(client)
print(" ".join(results))
"""
    done = subprocess.run([unshare, "--net", "python3", "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["open"] * 20 + ["refused", "open"]
