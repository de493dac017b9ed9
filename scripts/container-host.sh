#!/usr/bin/env bash
# Makes a machine able to build and run our images with podman; `make images` runs it
# first, and every step is skipped when already done. See docs/images.md.
#
# On a Debian machine with no container registry reachable (our CI, run as root):
#   1. installs podman buildah runc mmdebstrap if missing (apt-get);
#   2. writes /etc/containers/containers.conf: runc as the runtime, no default ulimits
#      (only if the file is missing or ours: a file of yours is left alone);
#   3. makes the local base image (Debian bookworm with Debian's Python 3.11) with
#      mmdebstrap, if missing.
# Elsewhere: with Docker it does nothing; not as root, or with BASE_IMAGE set to a public
# image, there is no step 3 (scripts/image-env.sh says which engine and base).
#
# Environment: CONTAINER_ENGINE, BASE_IMAGE, DEBIAN_MIRROR (default http://deb.debian.org).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/image-env.sh
source scripts/image-env.sh

DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org}
# Debian's Python (as the python:3.11-slim-bookworm image has) and what the trial
# image's last stage apt-installs, so the builds need no Debian mirror (they use one
# if it is reachable: the trial Dockerfile's apt-get then finds its packages installed).
BASE_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,passwd,libgomp1,ocl-icd-libopencl1

say() { echo "container-host: $*" >&2; }

if [[ $CONTAINER_ENGINE != podman ]]; then
    exit 0  # Docker builds from the public base; nothing to set up
fi
root=false
[[ $(id -u) == 0 ]] && root=true

# 1. The tools (CI starts from a fresh machine).
local_base=false
[[ $BASE_IMAGE == localhost/* ]] && local_base=true
missing=()
for tool in podman buildah runc; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if $local_base && ! command -v mmdebstrap >/dev/null 2>&1; then
    missing+=(mmdebstrap)
fi
if ((${#missing[@]})); then
    if ! $root || ! command -v apt-get >/dev/null 2>&1; then
        say "missing ${missing[*]}: install them (as root on Debian: this script does)"
        exit 1
    fi
    say "installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

# 2. podman's settings: runc (crun fails on these machines: "cgroups in hybrid mode not
# supported") and no default ulimits (runc may not set them in a sandbox: "error setting
# rlimit type 7: operation not permitted").
CONF=/etc/containers/containers.conf
MARK='# Written by kubetune scripts/container-host.sh; see docs/images.md.'
if $root && { [[ ! -e $CONF ]] || grep -qF "$MARK" "$CONF"; }; then
    wanted="$MARK
[containers]
default_ulimits = []

[engine]
runtime = \"runc\""
    if [[ ! -e $CONF ]] || [[ $(cat "$CONF") != "$wanted" ]]; then
        mkdir -p "$(dirname "$CONF")"
        printf '%s\n' "$wanted" >"$CONF"
        say "wrote $CONF"
    fi
fi

# 3. The local base image: with no registry, no python:3.11.7-slim-bookworm; a Debian
# bookworm with Debian's Python 3.11 instead, from Debian packages.
if $local_base && ! podman image exists "$BASE_IMAGE"; then
    if ! $root; then
        say "$BASE_IMAGE is missing and mmdebstrap needs root: run as root, or set BASE_IMAGE=python:3.11.7-slim-bookworm"
        exit 1
    fi
    say "making $BASE_IMAGE with mmdebstrap (about a minute)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
        --aptopt='Acquire::Retries "3"' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
        bookworm "$work/base.tar" \
        "deb $DEBIAN_MIRROR/debian bookworm main" \
        "deb $DEBIAN_MIRROR/debian bookworm-updates main" \
        "deb $DEBIAN_MIRROR/debian-security bookworm-security main" </dev/null
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --message "Debian bookworm with Debian's Python, by kubetune scripts/container-host.sh" \
        "$work/base.tar" "$BASE_IMAGE" >/dev/null
    say "imported $BASE_IMAGE"
fi
