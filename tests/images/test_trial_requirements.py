"""The trial image's pinned CPU requirements install into a clean virtual
environment, and every built-in objective and the entrypoint run from it.

This is what ``trial_image/Dockerfile`` does (torch first, then the rest, then
kubetune from the files the Dockerfile copies), without Docker. It takes about
two and a half minutes, most of it pip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubetune.engine import bridge
from kubetune.engine.storage import open_storage
from kubetune.study.spec import validate_spec

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow(seconds=150)

#: What the Dockerfile copies into /src before ``pip install --no-deps /src``.
SOURCES = [
    "pyproject.toml",
    "README.md",
    "sdk",
    "trial_image/kubetune_trial",
    "operator/kubetune_operator",
]

#: The torch the Dockerfile installs first (the CPU build).
TORCH = "2.13.0"

BUILTINS = {
    "lightgbm": {"model": "lightgbm", "maxEpochs": 5},
    "stepwise": {"model": "lightgbm", "tuner": "stepwise", "maxEpochs": 5},
    "xgboost": {"model": "xgboost", "maxEpochs": 5, "validation": {"kind": "kfold", "folds": 3}},
    "lightning": {"model": "lightning", "maxEpochs": 3, "params": {"lr": 0.01, "batch_size": 32}},
}


def _unreachable_index_reason() -> str | None:
    """Why pip cannot install the pinned torch here (no package index, no wheel), or None.

    ``pip index versions`` asks the same indexes and find-links the install would.
    """
    try:
        probe = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", "torch"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "pip's package index does not answer (2 minutes)"
    available = [
        version.strip()
        for line in probe.stdout.splitlines()
        if line.startswith("Available versions:")
        for version in line.partition(":")[2].split(",")
    ]
    if probe.returncode != 0 or TORCH not in available:
        last = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"pip finds no torch=={TORCH} in its package index here: {last[0]}"
    return None


def _pip(venv: Path, *args: str) -> None:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_pinned_cpu_requirements_run_every_builtin(tmp_path: Path, storage_url: str) -> None:
    unreachable = _unreachable_index_reason()
    if unreachable:
        pytest.skip(unreachable)
    started = time.monotonic()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _pip(venv, f"torch=={TORCH}")  # first, as the Dockerfile does
    _pip(venv, "--requirement", str(REPO / "trial_image" / "requirements-cpu.txt"))
    source = tmp_path / "src"
    for name in SOURCES:
        target = source / name
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, target)
    _pip(venv, "--no-deps", str(source))
    check = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    installed = time.monotonic()

    entrypoint = venv / "bin" / "kubetune-trial"
    helped = subprocess.run([str(entrypoint), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "KUBETUNE_STORAGE_URL" in helped.stdout

    # The environment a pod has: no PYTHONPATH into this checkout.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(KUBETUNE_STORAGE_URL=storage_url, PYTHONUNBUFFERED="1")
    env["KUBETUNE_TERMINATION_LOG"] = str(tmp_path / "termination-log")
    workers = {}
    for name, builtin in BUILTINS.items():
        spec = {
            "objective": {"direction": "maximize", "metric": "auc"},
            "budget": {"maxTrials": 1},
            "trial": {"builtin": {"data": {"dataset": "sklearn:breast_cancer"}, **builtin}},
        }
        bridge.prepare_study(open_storage(storage_url), name, validate_spec(spec))
        workers[name] = subprocess.Popen(
            [str(entrypoint)],
            env={**env, "KUBETUNE_STUDY_NAME": name},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    import optuna

    for name, process in workers.items():
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, f"{name}:\n{output}"
        study = optuna.load_study(study_name=name, storage=storage_url)
        assert [t.state.name for t in study.trials] == ["COMPLETE"], f"{name}:\n{output}"
        assert study.best_value > 0.8, name
    print(
        f"\nclean venv: install {installed - started:.0f}s, run {time.monotonic() - installed:.0f}s"
    )
