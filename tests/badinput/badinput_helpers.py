"""Helpers the bad-input tests share: writing Study files, and running ``kubetune``
(tests/kubetune_cli.py, shared with the other CLI tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubetune_cli import kubetune

__all__ = ["SUPPORT", "kubetune", "study_document", "write_study"]

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
