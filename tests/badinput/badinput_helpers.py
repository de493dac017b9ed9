"""Helpers the bad-input tests share: writing Study files and running ``kubetune``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

SUPPORT = Path(__file__).resolve().parent / "support"


def study_document(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name},
        "spec": spec,
    }


def write_study(directory: Path, spec: dict[str, Any], name: str = "bad") -> Path:
    """A Study file in ``directory``; ``spec`` may hold anything, wrong types included."""
    path = directory / f"{name[:40]}.yaml"
    path.write_text(yaml.safe_dump(study_document(name, spec)), encoding="utf-8")
    return path


def kubetune(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``kubetune ARGS`` and wait for it."""
    return subprocess.run(
        [sys.executable, "-m", "kubetune.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
