#!/usr/bin/env bash
# Makes this machine (Debian bookworm, root, no container registry reachable)
# able to build and run our images with podman; see docs/images.md.
#
#   scripts/container-host.sh          install podman etc. if missing, configure
#                                      podman, import the local base image if missing
#
# Each step is skipped when already done, so `make images` runs this every time.
# Environment:
#   KUBETUNE_BASE_IMAGE   the local base image (default localhost/kubetune-base:bookworm)
#   DEBIAN_MIRROR         the Debian mirror for the base (default http://deb.debian.org)
set -euo pipefail

BASE_IMAGE=${KUBETUNE_BASE_IMAGE:-localhost/kubetune-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org}
# Debian's Python (as the python:3.11-slim-bookworm image has) and what the trial
# image's runtime stage apt-installs, so that no build needs a Debian mirror.
BASE_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,passwd,libgomp1,ocl-icd-libopencl1

say() { echo "container-host: $*" >&2; }

# 1. The tools (CI starts from a fresh machine).
missing=()
for tool in podman buildah runc mmdebstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y podman buildah runc mmdebstrap
fi

# 2. podman's settings: runc (crun fails here: "cgroups in hybrid mode not supported")
# and no default ulimits (runc cannot set them in this sandbox: "error setting rlimit").
CONF=/etc/containers/containers.conf
WANTED='# Written by kubetune scripts/container-host.sh; see docs/images.md.
[containers]
default_ulimits = []

[engine]
runtime = "runc"'
if [[ ! -f $CONF ]] || ! grep -q 'default_ulimits = \[\]' "$CONF" || ! grep -q '^runtime = "runc"' "$CONF"; then
    if [[ -s $CONF ]] && ! grep -q 'kubetune scripts/container-host.sh' "$CONF"; then
        cp "$CONF" "$CONF.orig"
        say "saved the previous $CONF as $CONF.orig"
    fi
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n' "$WANTED" >"$CONF"
    say "wrote $CONF"
fi

# 3. The local base image: no registry means no python:3.11.7-slim-bookworm, so a
# Debian bookworm with Debian's Python 3.11, from Debian packages.
if ! podman image exists "$BASE_IMAGE"; then
    say "building $BASE_IMAGE with mmdebstrap (about 90 s)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mmdebstrap --variant=minbase --include="$BASE_PACKAGES" \
        --aptopt='Acquire::Retries "3"' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
        bookworm "$work/base.tar" \
        "deb $DEBIAN_MIRROR/debian bookworm main" \
        "deb $DEBIAN_MIRROR/debian bookworm-updates main" \
        "deb $DEBIAN_MIRROR/debian-security bookworm-security main" </dev/null
    podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --message "Debian bookworm with Debian's Python, by kubetune scripts/container-host.sh" \
        "$work/base.tar" "$BASE_IMAGE" >/dev/null
    say "imported $BASE_IMAGE"
fi
