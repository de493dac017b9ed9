"""A local study's identity: the code behind its objective (and a module of it that
the workers would not find, refused before they start).

A study continues while the objective's code is unchanged, and is refused
(:class:`~kubetune.errors.SpecChangeRefused`) once it has results and the code
changed. The code is, for ``tune()``, what it ships (its digest is the
``kubetune.io/code-digest`` annotation); for a Study file's ``python:``, the file
of the module it names, the packages above it and the modules of the same
project that it imports (see :func:`objective_code`).

Example:
    >>> from kubetune.study.spec import load_study
    >>> objective_code(load_study("examples/quickstart.yaml")) is None  # doctest: +SKIP
    True
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kubetune.errors import SpecChangeRefused
from kubetune.study.names import CODE_DIGEST_ANNOTATION

if TYPE_CHECKING:
    import optuna

    from kubetune.study.spec import Study

#: The study system attribute holding the digest of the code its trials ran.
CODE_DIGEST_ATTR = "kubetune.code-digest"
#: The digest of the ``python:`` module's files when the study last ran: what a Study
#: file naming the module is known by, also recorded for a script run.
MODULE_DIGEST_ATTR = "kubetune.module-digest"
#: At most this many files make up a ``python:`` objective's code (a guard, not a limit
#: anyone should meet: the files are the module and the project's modules it imports).
MAX_CODE_FILES = 500


def objective_code(
    document: Study, search_path: Sequence[str] | None = None
) -> tuple[str, dict[str, str]] | None:
    """The digest of the code behind ``document``'s objective, and its files
    (path: text; empty for ``tune()``, whose digest is its annotation), or None
    when there is no code to follow (a command, a built-in, a module not found here).

    A ``python: pkg.module:function`` objective's code is found as the worker finds
    it (the working directory first, then ``$PYTHONPATH``, then ``sys.path``): the
    module's file, the ``__init__.py`` of the packages above it, and, transitively,
    the modules it imports that live under the same folder (the project's own code,
    not installed libraries).
    """
    annotated = document.metadata.annotations.get(CODE_DIGEST_ANNOTATION)
    if annotated:
        return annotated, {}
    entry = document.spec.trial.python
    if entry is None:
        return None
    roots = list(search_path) if search_path is not None else _search_path()
    module = entry.partition(":")[0]
    for root in roots:
        if _module_file(Path(root), module) is not None:
            files = _project_files(Path(root), module)
            sha = hashlib.sha256(entry.encode())
            for path in sorted(files):
                sha.update(b"\0" + path.encode() + b"\0" + files[path].encode())
            return sha.hexdigest(), files
    return None


def check_objective_code(study: optuna.Study, document: Study, source: Path | None = None) -> None:
    """Refuse ``study`` when its objective's code changed since its trials ran; else
    record the code's digest in it.

    A study with no finished (COMPLETE, PRUNED) or running trial takes the new code,
    as it takes a new spec. ``source`` is the Study file, for the message; a
    ``python:`` module the workers would not find from here but that sits beside it
    is refused (:class:`~kubetune.study.spec.SpecError`), saying how to run it.
    """
    from optuna.trial import TrialState

    found = objective_code(document)
    if found is None:
        if source is not None and source.suffix != ".py":  # a script's folder is its own
            _check_module_found(document, source)
        return
    digest = found[0]
    storage = study._storage
    attrs = storage.get_study_system_attrs(study._study_id)
    recorded = attrs.get(CODE_DIGEST_ATTR)
    # A script run (`kubetune run tune.py`) is known by its text before study.optimize,
    # a Study file by its module's files; the Study `kubetune init tune.py` wrote goes on
    # with the script's study while the module's files are those the script last ran.
    annotated = bool(document.metadata.annotations.get(CODE_DIGEST_ANNOTATION))
    module = _module_digest(document) if annotated else digest
    same_module = module is not None and attrs.get(MODULE_DIGEST_ATTR) == module
    if recorded is not None and recorded != digest and not same_module:
        trials = study.get_trials(deepcopy=False)
        held = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        if any(t.state in held for t in trials):
            raise SpecChangeRefused(
                study.study_name,
                ["trial"],
                _code_changed(study, document, source, recorded, digest),
            )
    if recorded != digest:
        storage.set_study_system_attr(study._study_id, CODE_DIGEST_ATTR, digest)
    if module is not None and attrs.get(MODULE_DIGEST_ATTR) != module:
        storage.set_study_system_attr(study._study_id, MODULE_DIGEST_ATTR, module)


def _module_digest(document: Study) -> str | None:
    """The digest of the ``python:`` module's files of a document whose code digest is
    annotated (a script run); None when the module is not found here."""
    plain = document.model_copy(
        update={"metadata": document.metadata.model_copy(update={"annotations": {}})}
    )
    found = objective_code(plain)
    return None if found is None else found[0]


def _check_module_found(document: Study, source: Path) -> None:
    """Before any worker starts, refuse a ``python:`` objective whose module the
    workers would not find (they import it from the working directory and
    $PYTHONPATH) while its file sits beside the Study file: the Study is run from
    the wrong folder. Bad input, as a built-in's data file that is not here (exit
    code 2); a module found nowhere is the worker's to report, with its own words."""
    from kubetune.engine.scripts import module_not_found
    from kubetune.study.spec import SpecError

    entry = document.spec.trial.python
    if entry is None:
        return
    module = entry.partition(":")[0]
    top = module.partition(".")[0]
    folder = source.resolve().parent
    if folder == Path.cwd().resolve() or _findable(top, _search_path()):
        return
    if _module_file(folder, module) is None and _module_file(folder, top) is None:
        return
    beside = folder / top if (folder / top).is_dir() else folder / f"{top}.py"
    shown = _relative(folder)
    raise SpecError(
        [
            (
                "spec.trial.python",
                f"{module_not_found(module, top)}\n"
                f"  {_relative(beside)} is beside the Study file: run from that folder "
                f"(cd {shlex.quote(shown)} && kubetune run {shlex.quote(source.name)}), "
                f"or add {shown} to PYTHONPATH",
            )
        ]
    )


def _findable(top: str, roots: Sequence[str]) -> bool:
    """A worker would find top-level module ``top``: on ``roots`` (any kind of module,
    a namespace package too) or through an import hook (an editable install's).
    Nothing is imported; when unsure, the worker's own import decides."""
    if top in sys.builtin_module_names:
        return True
    try:
        if importlib.machinery.PathFinder.find_spec(top, list(roots)) is not None:
            return True
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return True


def _code_changed(
    study: optuna.Study, document: Study, source: Path | None, recorded: str, digest: str
) -> str:
    name = study.study_name
    count = len(study.get_trials(deepcopy=False))
    script = source is not None and source.suffix == ".py"
    if script:
        assert source is not None
        what = f"the code of {source.name} before its study.optimize call"
    elif CODE_DIGEST_ANNOTATION in document.metadata.annotations:
        what = "the objective tune() ships"
    else:
        what = f"the code behind spec.trial.python ({document.spec.trial.python})"
    if script:
        assert source is not None
        start_over = f"kubetune run {_relative(source)} --fresh"
    elif source is not None:
        start_over = f"kubetune run {source} --fresh (or kubetune delete {source} first)"
    elif CODE_DIGEST_ANNOTATION in document.metadata.annotations:
        start_over = "leave name= unset (each version of the code gets its own study)"
    else:
        start_over = "delete the study (optuna.delete_study) first"
    return (
        f"spec.trial: study {name!r} already ran with other code: {what} changed "
        f"(digest {recorded[:12]}, now {digest[:12]}); its trials would not be comparable.\n"
        f"  To start over, deleting its {count} trials: {start_over}.\n"
        "  To keep them and run the changed code beside them: give it a new name."
    )


def _relative(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _search_path() -> list[str]:
    paths = [os.getcwd()]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths += [p for p in sys.path if p]
    return paths


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _project_files(root: Path, module: str) -> dict[str, str]:
    """``module``'s file, its packages' ``__init__.py`` and the modules under ``root``
    it imports, transitively; keyed by their path under ``root``."""
    installed = bool({"site-packages", "dist-packages"} & set(root.parts))
    files: dict[str, str] = {}
    pending = [module]
    seen: set[str] = set()
    while pending and len(files) < MAX_CODE_FILES:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        for depth in range(1, len(parts)):  # the packages above it run on import
            pending.append(".".join(parts[:depth]))
        file = _module_file(root, name)
        if file is None:
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        files[file.relative_to(root).as_posix()] = text
        if installed:
            continue  # an installed library's own imports are not the project's code
        package = name if file.name == "__init__.py" else ".".join(parts[:-1])
        pending.extend(_imports(text, package))
    return files


def _imports(source: str, package: str) -> list[str]:
    """The modules ``source`` imports (``from a import b`` may import module ``a.b``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                if node.level - 1 > len(base_parts):
                    continue
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base:
                continue
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return names
