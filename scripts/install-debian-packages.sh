#!/usr/bin/env bash
# Debian packages the tests need: PostgreSQL and Redis servers (the distributed, CeleryExecutor test),
# Chromium and its WebDriver (the browser test of the migration report).
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
  echo "Debian packages present: postgresql, redis-server, chromium, chromium-driver"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages' own services are not needed: the test starts private servers on free ports.
