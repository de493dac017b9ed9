"""Starting real worker processes from tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[2]


def start_worker(
    env: dict[str, str], name: str = "s", worker: str = "w0", **extra: str
) -> subprocess.Popen[str]:
    """``python -m kubetune_trial`` as a pod or a local run starts it."""
    full = {**env, "KUBETUNE_STUDY_NAME": name, "KUBETUNE_WORKER_NAME": worker, **extra}
    return subprocess.Popen(
        [sys.executable, "-m", "kubetune_trial"],
        env=full,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_worker(env: dict[str, str], name: str = "s", **extra: str) -> tuple[int, str]:
    process = start_worker(env, name, **extra)
    output, _ = process.communicate(timeout=120)
    return process.returncode, output


def load(storage_url: str, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage_url)
