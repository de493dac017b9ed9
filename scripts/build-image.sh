#!/usr/bin/env bash
# Builds one of our images with podman, from the repository root (`make images` calls it;
# the names come from the Makefile). See docs/images.md.
#
#   scripts/build-image.sh operator ghcr.io/kubetune/operator:0.1.0
#   scripts/build-image.sh trial    ghcr.io/kubetune/trial:0.1.0
#   scripts/build-image.sh trial    ghcr.io/kubetune/trial:0.1.0-cuda cuda
#
# Environment:
#   BASE_IMAGE   the base (build arg PYTHON_IMAGE); default localhost/kubetune-base:bookworm,
#                which scripts/container-host.sh makes; python:3.11.7-slim-bookworm where a
#                registry is reachable
#   PIP_CERT, PIP_FIND_LINKS   default: what `pip config` says on this machine. The CA
#                bundle and the wheel folder are mounted into the build at the same paths;
#                a wheel folder holding the CPU build of torch replaces PyTorch's CPU index.
set -euo pipefail

what=${1:?operator or trial}
image=${2:?image name}
variant=${3:-cpu}
base=${BASE_IMAGE:-localhost/kubetune-base:bookworm}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

case $what in
    operator) dockerfile=operator/Dockerfile ;;
    trial) dockerfile=trial_image/Dockerfile ;;
    *) echo "build-image.sh: operator or trial, not $what" >&2; exit 2 ;;
esac

pip_config() {  # pip_config KEY: global.KEY from pip's configuration, if pip is there
    local python
    for python in "$repo/.venv/bin/python" python3; do
        if "$python" -m pip --version >/dev/null 2>&1; then
            "$python" -m pip config get "global.$1" 2>/dev/null || true
            return
        fi
    done
}

cert=${PIP_CERT:-$(pip_config cert)}
find_links=${PIP_FIND_LINKS:-$(pip_config find-links)}

args=(--format docker --network host --layers --file "$dockerfile" --tag "$image"
      --build-arg "PYTHON_IMAGE=$base")
if [[ -n $cert && -f $cert ]]; then
    args+=(--volume "$cert:$cert:ro" --build-arg "PIP_CERT=$cert")
fi
if [[ $what == trial ]]; then
    args+=(--build-arg "VARIANT=$variant")
    torch=$(grep -E '^torch==' trial_image/requirements-cpu.txt | cut -d= -f3)
    local_torch=""
    for folder in $find_links; do
        folder=${folder#file://}
        if [[ -d $folder ]] && compgen -G "$folder/torch-$torch+cpu-*.whl" >/dev/null; then
            local_torch=$folder
        fi
    done
    if [[ $variant == cpu && -n $local_torch ]]; then
        args+=(--volume "$local_torch:$local_torch:ro" --build-arg "PIP_FIND_LINKS=$local_torch"
               --build-arg "TORCH_CPU_INDEX_URL=")
    fi
fi

echo "build-image.sh: podman build ${args[*]} ." >&2
exec podman build "${args[@]}" .
