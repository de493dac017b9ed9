#!/usr/bin/env bash
# What the test suite needs from the machine besides Python packages and the images:
# a MariaDB server binary, so tests/integration/test_storage_backends.py runs the claim
# lock's MySQL branch against a real server (it starts a private one on a Unix socket).
# Installed with apt-get when missing and we are root on Debian; otherwise the test
# skips and says why.
set -euo pipefail

say() { echo "test-host: $*" >&2; }

if command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]]; then
    exit 0
fi
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    say "no MariaDB server and no way to install it: the MySQL storage test will skip"
    exit 0
fi
say "installing mariadb-server (the MySQL storage test runs a private server)"
apt-get update -qq
# No service is started: the test starts its own server.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server \
    || say "could not install mariadb-server: the MySQL storage test will skip"
