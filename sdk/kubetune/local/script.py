"""Local workers for an Optuna script: ``kubetune run script.py`` on this machine.

The workers import the script as a module named after its file, from its folder
(put first on their ``PYTHONPATH`` while the run lasts), so its sibling modules
import as they do under ``python script.py``.

Example:
    >>> with workers_find(derived):                     # doctest: +SKIP
    ...     LocalRun(derived.study, url, source=script).run()
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from kubetune.engine.script_study import DerivedStudy
from kubetune.engine.scripts import ScriptError


@contextlib.contextmanager
def workers_find(derived: DerivedStudy) -> Iterator[None]:
    """Worker processes started meanwhile import the script's module from its folder.

    Raises :class:`~kubetune.engine.scripts.ScriptError` when another module of that
    name in the working folder (where workers look first) would be imported instead.
    """
    cwd = Path.cwd().resolve()
    folder = derived.folder
    if folder != cwd:
        for shadow in (cwd / f"{derived.module}.py", cwd / derived.module):
            if shadow.exists():
                raise ScriptError(
                    f"{shadow} would be imported by the workers instead of "
                    f"{folder / (derived.module + '.py')} (they look in the working folder "
                    "first): run kubetune from the script's folder, or rename one of them"
                )
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), previous) if p)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous
