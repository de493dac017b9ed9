# Sourced by container-host.sh and build-image.sh: which engine builds, from which base.
#   CONTAINER_ENGINE  podman if installed; else docker if a Docker daemon answers; else
#                     podman (container-host.sh installs it). A docker client with no
#                     daemon behind it, as on our CI machines, does not count.
#   BASE_IMAGE        the Dockerfiles' PYTHON_IMAGE. Default: with podman as root,
#                     localhost/kubetune-base:bookworm, a Debian-package base that
#                     container-host.sh makes (no registry needed); otherwise the
#                     Dockerfiles' own default, python:3.11.7-slim-bookworm.
# shellcheck shell=bash
PUBLIC_BASE_IMAGE=python:3.11.7-slim-bookworm
LOCAL_BASE_IMAGE=localhost/kubetune-base:bookworm
if [[ -z ${CONTAINER_ENGINE:-} ]]; then
    if ! command -v podman >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 \
        && docker info >/dev/null 2>&1; then
        CONTAINER_ENGINE=docker
    else
        CONTAINER_ENGINE=podman
    fi
fi
if [[ -z ${BASE_IMAGE:-} ]]; then
    if [[ $CONTAINER_ENGINE == podman && $(id -u) == 0 ]]; then
        BASE_IMAGE=$LOCAL_BASE_IMAGE
    else
        BASE_IMAGE=$PUBLIC_BASE_IMAGE
    fi
fi
