"""Running the ``kubetune`` command as a user does, for the tests that need it as a
subprocess (its exit code, its standard output and error as printed), and a plain
Python script the same way (the SDK as a user's script calls it).

```python
result = kubetune(env, tmp_path, "run", "study.yaml", "--storage", storage_url)
assert result.returncode == 0, result.stdout + result.stderr
process = start_kubetune(env, tmp_path, "run", "study.yaml")  # acts while it runs
ran = python_script(env, tmp_path, str(tmp_path / "read.py"))
```
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

#: ``kubetune`` from this checkout, with the venv's interpreter.
KUBETUNE = [sys.executable, "-m", "kubetune.cli"]


def kubetune(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 280
) -> subprocess.CompletedProcess[str]:
    """Run ``kubetune ARGS`` in ``cwd`` with ``env`` and wait for it (text output)."""
    return subprocess.run(
        [*KUBETUNE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def start_kubetune(
    env: dict[str, str], cwd: Path, *args: str, **popen_options: Any
) -> subprocess.Popen[str]:
    """``kubetune ARGS`` started in the background (output piped, as text), for a test
    to act while it runs; ``popen_options`` go to ``subprocess.Popen`` (e.g.
    ``preexec_fn`` for a process that Ctrl-C can reach)."""
    return subprocess.Popen(
        [*KUBETUNE, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen_options,
    )


def python_script(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 280
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` as ``kubetune`` runs above: a user's script and its arguments,
    or ``-m kubetune_trial`` as a trial pod's entrypoint runs it."""
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
