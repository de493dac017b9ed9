#!/usr/bin/env bash
# Builds one of our images with podman (or Docker), from the repository root (`make images` calls it;
# the names come from the Makefile). See docs/images.md.
#
#   scripts/build-image.sh operator ghcr.io/kubetune/operator:0.1.0
#   scripts/build-image.sh trial    ghcr.io/kubetune/trial:0.1.0
#   scripts/build-image.sh trial    ghcr.io/kubetune/trial:0.1.0-cuda cuda
#
# Environment: CONTAINER_ENGINE and BASE_IMAGE (see scripts/image-env.sh), and
#   PIP_CERT, PIP_FIND_LINKS   default: what `pip config` says on this machine. The CA
#                bundle and the wheel folder are mounted into the build at the same paths;
#                a wheel folder holding the CPU build of torch replaces PyTorch's CPU index.
set -euo pipefail

what=${1:?operator or trial}
image=${2:?image name}
variant=${3:-cpu}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/image-env.sh
source scripts/image-env.sh
engine=$CONTAINER_ENGINE
base=$BASE_IMAGE

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

args=(--network host --file "$dockerfile" --tag "$image" --build-arg "PYTHON_IMAGE=$base")
[[ $what == trial ]] && args+=(--build-arg "VARIANT=$variant")
if [[ $engine == podman ]]; then
    # Docker's image format keeps the Dockerfiles' SHELL; --layers caches every step.
    args+=(--format docker --layers)
    # podman can mount files into a build (Docker cannot): this machine's CA bundle and
    # its folder of wheels, if pip is configured with them.
    cert=${PIP_CERT:-$(pip_config cert)}
    find_links=${PIP_FIND_LINKS:-$(pip_config find-links)}
    if [[ -n $cert && -f $cert ]]; then
        args+=(--volume "$cert:$cert:ro" --build-arg "PIP_CERT=$cert")
    fi
    if [[ $what == trial && $variant == cpu ]]; then
        torch=$(grep -E '^torch==' trial_image/requirements-cpu.txt | cut -d= -f3)
        for folder in $find_links; do
            folder=${folder#file://}
            if [[ -d $folder ]] && compgen -G "$folder/torch-$torch+cpu-*.whl" >/dev/null; then
                # The CPU build of torch is there: take it rather than PyTorch's CPU index.
                args+=(--volume "$folder:$folder:ro" --build-arg "PIP_FIND_LINKS=$folder"
                       --build-arg "TORCH_CPU_INDEX_URL=")
                break
            fi
        done
    fi
fi

echo "build-image.sh: $engine build ${args[*]} ." >&2
exec "$engine" build "${args[@]}" .
