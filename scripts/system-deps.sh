#!/usr/bin/env bash
# System packages the test suite needs. As root (as in CI) they are installed with apt;
# otherwise this names what to install. Under CI=true anything missing fails the run.
set -euo pipefail

# command → Debian package
declare -A NEED=(
  [chromium]=chromium
  [npm]=npm
  [redis-server]=redis-server
  [pdftoppm]=poppler-utils
  [zbarimg]=zbar-tools
  [postfix]=postfix
  [dovecot]=dovecot-imapd
  [faketime]=faketime
  [nginx]=nginx
  [caddy]=caddy
  [systemd-analyze]=systemd
  [nft]=nftables
  [docker-compose]=docker-compose
  [ip]=iproute2
  [sievec]=dovecot-sieve
)
FONTS=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
for cmd in "${!NEED[@]}"; do have "$cmd" || missing+=("${NEED[$cmd]}"); done
[ -f "$FONTS" ] || missing+=(fonts-dejavu-core)
[ -x /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)  # Dovecot's LMTP server (Sieve filter tests)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Postfix asks questions at install time; answer them (local delivery only).
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string tipbox.test" | debconf-set-selections
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi

echo "system-deps: missing packages: ${missing[*]}"
echo "system-deps: install them with: sudo apt-get install ${missing[*]}"
if [ "${CI:-}" = "true" ]; then
  echo "system-deps: CI=true and packages are missing: failing" >&2
  exit 1
fi
echo "system-deps: tests that need them will be skipped (they never skip under CI=true)"
