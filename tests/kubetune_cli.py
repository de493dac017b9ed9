"""Running the ``kubetune`` command as a user does, for the tests that need it as a
subprocess (its exit code, its standard output and error as printed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: ``kubetune`` from this checkout, with the venv's interpreter.
KUBETUNE = [sys.executable, "-m", "kubetune.cli"]


def kubetune(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 280
) -> subprocess.CompletedProcess[str]:
    """Run ``kubetune ARGS`` in ``cwd`` with ``env`` and wait for it (text output)."""
    return subprocess.run(
        [*KUBETUNE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
