"""Our container images, built once per test session by ``make images`` and reused.

* :func:`image_names` -- the names the Makefile builds (``make -s image-names``: the one
  place they are set, from the chart's appVersion).
* :func:`build_images` -- run ``make images`` unless the images are up to date, under a
  file lock (pytest-xdist workers, and other test sessions on this machine, share
  podman's default store); raises :class:`ImagesUnavailable` where podman cannot run.
* ``images`` -- a session fixture returning :class:`Images` (skips the test where
  images cannot be built: not root). Use it in a conftest with
  ``from harness.images import *  # noqa: F403``, then::

      def test_it(images: Images) -> None:
          subprocess.run(["podman", "run", "--rm", images.trial, "--help"], check=True)

"Up to date" means: both images exist and either the files the builds read have the same
contents as when this module last ran ``make images`` (a stamp in the temp folder), or the
images are newer than every one of those files. ``make test`` runs ``make images`` before
pytest, so the fixture usually finds them built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .file_lock import exclusive

__all__ = ["Images", "ImagesUnavailable", "build_images", "image_names", "images"]

REPO = Path(__file__).resolve().parents[2]
LOCK_PATH = Path(tempfile.gettempdir()) / "kubetune-images.lock"
#: What the builds read (besides the base image): a change to any of them rebuilds.
INPUTS = (
    "Makefile",
    ".dockerignore",
    "scripts",
    "operator/Dockerfile",
    "trial_image/Dockerfile",
    "trial_image/requirements-common.txt",
    "trial_image/requirements-cpu.txt",
    "trial_image/requirements-cuda.txt",
    "pyproject.toml",
    "README.md",
    "sdk",
    "operator/kubetune_operator",
    "trial_image/kubetune_trial",
    "examples",
    "charts/kubetune/Chart.yaml",
)
BUILD_TIMEOUT = 1800.0


class ImagesUnavailable(RuntimeError):
    """podman cannot build or run images on this machine (e.g. not root)."""


@dataclasses.dataclass(frozen=True)
class Images:
    operator: str
    trial: str
    trial_cuda: str
    base: str = "localhost/kubetune-base:bookworm"


def image_names() -> Images:
    """The image names, as the Makefile sets them."""
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", "image-names"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    operator, trial, trial_cuda = done.stdout.split()
    return Images(operator=operator, trial=trial, trial_cuda=trial_cuda)


def _input_files() -> Iterator[Path]:
    for name in INPUTS:
        path = REPO / name
        if path.is_file():
            yield path
        elif path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.is_file() and "__pycache__" not in found.parts:
                    yield found


def inputs_digest() -> str:
    digest = hashlib.sha256()
    for path in _input_files():
        digest.update(str(path.relative_to(REPO)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _newest_input() -> float:
    return max(path.stat().st_mtime for path in _input_files())


def _inspect(image: str) -> tuple[str, float] | None:
    """(image ID, creation time) or None if podman has no such image."""
    done = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}} {{.Created.Unix}}", image],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.split():
        return None
    image_id, created = done.stdout.split()[:2]
    return image_id, float(created)


def _stamp_path() -> Path:
    key = hashlib.sha256(str(REPO).encode()).hexdigest()[:12]
    return LOCK_PATH.with_name(f"kubetune-images-{key}.json")


def build_images(log_path: Path | None = None) -> Images:
    """``make images`` unless the images are up to date (see the module doc)."""
    if os.geteuid() != 0:
        raise ImagesUnavailable("building and running images with podman needs root here")
    if shutil.which("make") is None:
        raise ImagesUnavailable("make is missing")
    names = image_names()
    with exclusive(LOCK_PATH):
        stamp_path = _stamp_path()
        digest = inputs_digest()
        if shutil.which("podman") is not None:
            found = [_inspect(names.operator), _inspect(names.trial)]
            if all(found):
                ids = [f[0] for f in found if f]
                with contextlib.suppress(OSError, ValueError):
                    stamp = json.loads(stamp_path.read_text())
                    if stamp == {"inputs": digest, "ids": ids}:
                        return names
                if min(f[1] for f in found if f) > _newest_input():
                    stamp_path.write_text(json.dumps({"inputs": digest, "ids": ids}))
                    return names
        log_path = log_path or Path(tempfile.gettempdir()) / "kubetune-make-images.log"
        started = datetime.datetime.now()
        with open(log_path, "w") as log:
            done = subprocess.run(
                ["make", "--no-print-directory", "images"],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        if done.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"make images failed ({log_path}):\n{tail}")
        found = [_inspect(names.operator), _inspect(names.trial)]
        if not all(found):
            raise RuntimeError(f"make images built no {names.operator} or {names.trial}")
        ids = [f[0] for f in found if f]
        stamp_path.write_text(json.dumps({"inputs": digest, "ids": ids}))
        took = (datetime.datetime.now() - started).total_seconds()
        print(f"make images: {took:.0f} s ({log_path})")
    return names


@pytest.fixture(scope="session")
def images() -> Images:
    """The operator and trial images, built once per session (see the module doc)."""
    try:
        return build_images()
    except ImagesUnavailable as e:
        pytest.skip(f"no images: {e}")
