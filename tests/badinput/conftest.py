"""Fixtures for the bad-input tests: run ``kubetune`` as a user does, on files
that are wrong in one way each, and look at what the user gets back.

The operator's side (a Study's status conditions) is in
``tests/e2e/test_bad_input.py``, which uses the e2e ``cluster`` fixture.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parent / "support"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli_env() -> dict[str, str]:
    """The environment of a user's shell: our bad objectives importable, the venv's
    programs on PATH, and no storage URL (each test says which it uses)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SUPPORT), str(REPO), env.get("PYTHONPATH", "")) if p
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"  # Rich wraps long messages at 80 columns otherwise
    env.pop("KUBETUNE_STORAGE_URL", None)
    return env
