"""Layering and hygiene that reviews would otherwise have to catch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    return str(BIN / name) if (BIN / name).exists() else (shutil.which(name) or name)


def test_import_layers_hold() -> None:
    """kubetune imports neither the operator nor the trial runner; those two are independent."""
    result = subprocess.run(
        [_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = subprocess.run([_tool("ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nothing_is_importable_as_operator() -> None:
    """A top-level ``operator`` package would shadow the standard library."""
    import operator

    assert operator.__file__ is None or "site-packages" not in operator.__file__
    assert not (REPO / "operator" / "__init__.py").exists()
    assert hasattr(operator, "itemgetter")


def test_trial_runner_starts_without_heavy_imports() -> None:
    """The runner's start-up must not pay for libraries it does not use."""
    code = (
        "import sys, kubetune_trial.runner, kubetune_trial.cli;"
        "heavy = {'torch', 'lightning', 'lightgbm', 'xgboost', 'kopf', 'kubernetes', 'rich',"
        " 'typer', 'sklearn', 'pandas'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
