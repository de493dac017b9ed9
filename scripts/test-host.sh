#!/usr/bin/env bash
# What the test suite needs from the machine besides Python packages and the images:
# - a MariaDB server binary, so tests/integration/test_storage_backends.py runs the claim
#   lock's MySQL branch against a real server (it starts a private one on a Unix socket);
# - PgBouncer, so tests/integration/test_pooled_claims.py runs many workers through a
#   real transaction-pooling PgBouncer (it starts a private one on a Unix socket), as
#   benchmarks/fleet_storage.py does.
# Installed with apt-get when missing and we are root on Debian; otherwise the test
# skips and says why.
set -euo pipefail

say() { echo "test-host: $*" >&2; }

has() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]]; }

missing=()
has mariadbd || missing+=(mariadb-server)
has pgbouncer || missing+=(pgbouncer)
if [[ ${#missing[@]} == 0 ]]; then
    exit 0
fi
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    say "no ${missing[*]} and no way to install it: the tests that need it will skip"
    exit 0
fi
say "installing ${missing[*]} (the MySQL storage and pooled-claims tests run private servers)"
apt-get update -qq
# No service is started (no systemd in a container, and the tests start their own).
for package in "${missing[@]}"; do
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" \
        || say "could not install $package: the tests that need it will skip"
done
