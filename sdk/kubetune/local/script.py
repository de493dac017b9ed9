"""Local workers for an Optuna script: ``kubetune run script.py`` on this machine.

The workers import the script as a module named after its file, from its folder
(put first on their ``PYTHONPATH`` while the run lasts), so its sibling modules
import as they do under ``python script.py``. The study runs in the storage
:func:`script_storage` picks; :func:`study_of_script` finds it again afterwards
(``kubetune best|trials|plot|dashboard|delete script.py``).

Example:
    >>> with workers_find(derived):                     # doctest: +SKIP
    ...     LocalRun(derived.study, url, source=script).run()
    >>> study, storage = study_of_script(Path("train.py"))   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from kubetune.engine.script_study import DerivedStudy, derive_study
from kubetune.engine.scripts import ScriptError, never_optimized, run_script
from kubetune.engine.worker import STORAGE_URL_ENV
from kubetune.errors import KubetuneError
from kubetune.study.spec import Study


def script_storage(derived: DerivedStudy, storage: str | None) -> str | None:
    """The storage a script's local study runs in, as ``local_storage`` takes it:
    ``storage`` (``--storage``), else ``$KUBETUNE_STORAGE_URL``, else the script's own
    ``create_study(storage=...)`` URL (which may hold a password, so it never goes
    into the Study), else None: the embedded PostgreSQL."""
    if (
        storage is None
        and STORAGE_URL_ENV not in os.environ
        and derived.study.spec.storage.url is None
    ):
        return derived.storage_url
    return storage


def study_of_script(path: Path, storage: str | None = None) -> tuple[Study, str | None]:
    """The Study ``kubetune run path`` runs, and the storage (for ``local_storage``) it
    runs in: the script is executed up to its ``study.optimize``, as ``kubetune init``
    does (what it prints goes to standard error: it is not the caller's output).

    Raises :class:`~kubetune.engine.scripts.ScriptError` for a script that cannot be
    read or never calls ``optimize`` (bad input, as for ``kubetune run``), and
    :class:`~kubetune.errors.KubetuneError` for one that raises before it (it could
    not go on).
    """
    try:
        with contextlib.redirect_stdout(sys.stderr):
            record = run_script(path)
    except ScriptError:
        raise
    except Exception as error:
        raise KubetuneError(
            f"{path.name} raised {type(error).__name__} before study.optimize ({error}); "
            "kubetune finds a script's study by running it up to there"
        ) from error
    if record.optimize is None:
        raise never_optimized(path.name)
    derived = derive_study(record, path)
    return derived.study, script_storage(derived, storage)


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
    with on_pythonpath(folder):
        yield


@contextlib.contextmanager
def on_pythonpath(folder: str | Path) -> Iterator[None]:
    """Worker processes started meanwhile find ``folder`` first on their path (the
    script's folder; the folder ``tune(local=True)`` writes the shipped code to)."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), previous) if p)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous
