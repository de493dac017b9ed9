"""Optuna scripts as users write them: the study they start is kubetune's to run.

Nearly every Optuna script ends the way Optuna's tutorial does, at top level::

    study = optuna.create_study(direction="minimize")
    study.optimize(objective, n_trials=30)
    print(study.best_params)

While such a script (or module) is executed here, ``optuna.create_study`` and
``optuna.load_study`` record their arguments and return a real in-memory study,
the samplers and pruners it builds record their constructor's arguments, and
``Study.optimize`` records its call and hands it to the caller:

- a trial worker importing the module (:func:`import_module`) stops the
  module's execution right there: everything defined before ``optimize`` (the
  objective) stays usable, the script's own study never runs a trial, and the
  code after ``optimize`` never runs;
- ``kubetune init`` (:func:`run_script` with no handler) stops there too, and
  derives a Study from what was recorded (:mod:`kubetune.engine.script_study`);
- ``kubetune run script.py`` (:func:`run_script` with a handler) runs the study
  on kubetune's workers when ``optimize`` is called, then points the script's
  study object at the finished, distributed study and lets the script go on, so
  its code after ``optimize`` sees the real results.

A module with an ``if __name__ == "__main__":`` guard imports as usual: nothing
intercepted runs. Calls from other threads pass through untouched, and everything
patched is restored when the execution ends.

Example:
    >>> module, record = import_module("seed_script")          # doctest: +SKIP
    >>> record.optimize.func is module.objective               # doctest: +SKIP
    True
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import importlib.util
import inspect
import os
import sys
import threading
import traceback
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.errors import KubetuneError

if TYPE_CHECKING:
    import optuna

#: The user attribute a worker sets on its first trial when importing the objective's
#: module intercepted a ``study.optimize`` call: the supervisor says so once.
NOTE_ATTR = "kubetune.script_note"


class ScriptError(KubetuneError, ValueError):
    """A script kubetune cannot run as a study; the message names the file and why."""


class _Stop(BaseException):
    """Ends a script's execution at its ``study.optimize`` call. A BaseException, so
    the script's own ``except Exception`` does not swallow it."""


class _Abort(BaseException):
    """Carries an error out of the script's frames (past its ``except Exception``)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclasses.dataclass(frozen=True)
class CallSite:
    """Where a call was made: the file and line of the user's code."""

    filename: str
    lineno: int
    in_function: str | None
    """The function the call was made in, or None at a module's top level."""

    def __str__(self) -> str:
        return f"{_shown(self.filename)}, line {self.lineno}"


@dataclasses.dataclass
class StudyCall:
    """One ``optuna.create_study`` or ``optuna.load_study`` call and the study it got."""

    function: str
    arguments: dict[str, Any]
    site: CallSite
    study: optuna.Study


@dataclasses.dataclass
class OptimizeCall:
    """One ``study.optimize(func, ...)`` call, its arguments as given."""

    study: optuna.Study
    func: Callable[..., Any]
    arguments: dict[str, Any]
    """The arguments given besides ``func`` (n_trials, timeout, n_jobs, callbacks, ...)."""
    site: CallSite

    @property
    def n_trials(self) -> int | None:
        return self.arguments.get("n_trials")  # type: ignore[no-any-return]

    @property
    def timeout(self) -> float | None:
        return self.arguments.get("timeout")  # type: ignore[no-any-return]

    @property
    def n_jobs(self) -> int:
        return int(self.arguments.get("n_jobs", 1))

    @property
    def callbacks(self) -> list[Any]:
        return list(self.arguments.get("callbacks") or [])


@dataclasses.dataclass
class ScriptRecord:
    """What executing a script or module recorded."""

    module: types.ModuleType
    filename: str | None
    studies: list[StudyCall] = dataclasses.field(default_factory=list)
    optimize: OptimizeCall | None = None
    finished: bool = False
    """The script ran to its end (it was not stopped at ``optimize``)."""
    _constructed: dict[int, tuple[type, dict[str, Any], Any]] = dataclasses.field(
        default_factory=dict, repr=False
    )

    @property
    def display_name(self) -> str:
        return Path(self.filename).name if self.filename else self.module.__name__

    @property
    def note(self) -> str:
        """What a worker says once when it intercepted the script's own study."""
        return (
            f"{self.display_name} calls study.optimize at import; kubetune runs the trials instead"
        )

    def study_call(self) -> StudyCall | None:
        """The create_study/load_study call that made the optimized study, if recorded."""
        if self.optimize is None:
            return None
        for call in self.studies:
            if call.study is self.optimize.study:
                return call
        return None

    def constructor_arguments(self, obj: object) -> tuple[type, dict[str, Any]] | None:
        """The class and the arguments (as given) ``obj`` was built with while the
        script ran, when it is a sampler or pruner built then."""
        found = self._constructed.get(id(obj))
        if found is None or found[2] is not obj:
            return None
        return found[0], found[1]


def never_optimized(display_name: str) -> ScriptError:
    """The error for a script that ran to its end without calling ``study.optimize``."""
    return ScriptError(
        f"{display_name} never calls study.optimize (it ran to its end): kubetune runs the "
        "study a script starts with optuna.create_study(...) and study.optimize(objective, ...)"
    )


# ------------------------------------------------------------------ patching

_lock = threading.RLock()
_session: _Session | None = None


class _Session:
    """The interception of one execution, in the thread that runs it."""

    def __init__(
        self,
        record: ScriptRecord,
        on_optimize: Callable[[ScriptRecord], optuna.Study | None] | None,
        *,
        load_real: bool,
        one_optimize: bool = False,
    ) -> None:
        self.record = record
        self.on_optimize = on_optimize
        self.load_real = load_real
        #: Refuse at the first optimize a script whose code would call it again.
        self.one_optimize = one_optimize
        self.thread = threading.get_ident()


def _current() -> _Session | None:
    session = _session
    if session is None or session.thread != threading.get_ident():
        return None
    return session


def _call_site(depth: int = 2) -> CallSite:
    """The first frame outside Optuna and this module, ``depth`` frames up or more."""
    import optuna

    frame = sys._getframe(depth)
    here = os.path.abspath(__file__)
    library = os.path.dirname(os.path.abspath(optuna.__file__)) + os.sep
    while frame is not None and (
        os.path.abspath(frame.f_code.co_filename) == here
        or os.path.abspath(frame.f_code.co_filename).startswith(library)
    ):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:  # pragma: no cover - there is always a caller
        return CallSite("<unknown>", 0, None)
    name = frame.f_code.co_name
    return CallSite(frame.f_code.co_filename, frame.f_lineno, None if name == "<module>" else name)


def _directions_of(arguments: dict[str, Any]) -> list[Any]:
    if arguments.get("directions") is not None:
        return list(arguments["directions"])
    return [arguments.get("direction") or "minimize"]


@contextlib.contextmanager
def _intercepting(session: _Session) -> Iterator[None]:
    """Patch Optuna for ``session``; restore it afterwards."""
    global _session
    import optuna
    import optuna.study

    with _lock:
        originals: list[tuple[object, str, Any]] = []

        def patch(owner: object, name: str, value: Any) -> None:
            if name in vars(owner):
                originals.append((owner, name, vars(owner)[name]))
                setattr(owner, name, value)

        real_create = optuna.study.study.create_study
        real_optimize = optuna.Study.optimize
        create_signature = inspect.signature(real_create)
        load_signature = inspect.signature(optuna.study.study.load_study)
        optimize_signature = inspect.signature(real_optimize)

        def create_study(*args: Any, **kwargs: Any) -> optuna.Study:
            current = _current()
            if current is None or current.record.optimize is not None:
                # After the script's optimize, its code makes studies as it would.
                return real_create(*args, **kwargs)
            site = _call_site()
            arguments = create_signature.bind(*args, **kwargs).arguments
            study = _in_memory(
                real_create,
                study_name=arguments.get("study_name"),
                direction=arguments.get("direction"),
                directions=arguments.get("directions"),
                sampler=arguments.get("sampler"),
                pruner=arguments.get("pruner"),
            )
            current.record.studies.append(StudyCall("create_study", arguments, site, study))
            return study

        def load_study(*args: Any, **kwargs: Any) -> optuna.Study:
            current = _current()
            real_load = optuna.study.study.load_study
            if current is None or current.record.optimize is not None:
                return real_load(*args, **kwargs)
            site = _call_site()
            arguments = load_signature.bind(*args, **kwargs).arguments
            directions: list[Any] = ["minimize"]
            if current.load_real:
                # The study must exist, as plain Optuna wants: its directions are the study's.
                loaded = real_load(
                    study_name=arguments.get("study_name"), storage=arguments["storage"]
                )
                directions = list(loaded.directions)
                arguments = {**arguments, "directions": directions}
            study = _in_memory(
                real_create,
                study_name=arguments.get("study_name"),
                directions=directions,
                sampler=arguments.get("sampler"),
                pruner=arguments.get("pruner"),
            )
            current.record.studies.append(StudyCall("load_study", arguments, site, study))
            return study

        def optimize(self: optuna.Study, *args: Any, **kwargs: Any) -> None:
            current = _current()
            if current is None:
                return real_optimize(self, *args, **kwargs)
            site = _call_site()
            arguments = dict(optimize_signature.bind(self, *args, **kwargs).arguments)
            arguments.pop("self", None)
            func = arguments.pop("func")
            call = OptimizeCall(self, func, arguments, site)
            record = current.record
            if record.optimize is not None:
                raise _Abort(
                    ScriptError(
                        f"{record.display_name} calls study.optimize twice ({record.optimize.site} "
                        f"and {site}); kubetune runs one study.optimize per script: give the "
                        "first its whole budget (n_trials) and drop the second"
                    )
                )
            if current.one_optimize:
                again = _optimize_again(record, call)
                if again is not None:  # before any trial runs, not at the second call
                    raise _Abort(ScriptError(again))
            record.optimize = call
            if current.on_optimize is None:
                raise _Stop
            try:
                with _paused():  # kubetune's own Optuna calls are not the script's
                    real = current.on_optimize(record)
            except (_Stop, _Abort):
                raise
            except BaseException as error:
                raise _Abort(error) from error
            if real is None:
                raise _Stop
            # The script's study object becomes the finished, distributed study.
            optuna.Study.__init__(
                self,
                study_name=real.study_name,
                storage=real._storage,
                sampler=self.sampler,
                pruner=self.pruner,
            )
            return None

        patch(optuna, "create_study", create_study)
        patch(optuna.study, "create_study", create_study)
        patch(optuna, "load_study", load_study)
        patch(optuna.study, "load_study", load_study)
        patch(optuna.Study, "optimize", optimize)
        for cls in _recorded_classes():
            if "__init__" in cls.__dict__:
                patch(cls, "__init__", _recording_init(cls, cls.__dict__["__init__"]))
        _session = session
        try:
            yield
        finally:
            _session = None
            for owner, name, value in reversed(originals):
                setattr(owner, name, value)


@contextlib.contextmanager
def _paused() -> Iterator[None]:
    """Optuna as it is, meanwhile (the patches pass every call through)."""
    global _session
    session, _session = _session, None
    try:
        yield
    finally:
        _session = session


def _in_memory(create: Callable[..., optuna.Study], **arguments: Any) -> optuna.Study:
    """A real study in memory (Optuna's "a new study created in memory" unsaid: it
    is not the study that runs)."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return create(**arguments)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _recording_init(cls: type, original: Callable[..., None]) -> Callable[..., None]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        current = _current()
        if current is not None and type(self) is cls:
            try:
                arguments = dict(signature.bind(self, *args, **kwargs).arguments)
            except TypeError:  # pragma: no cover - the original accepted them
                return
            arguments.pop("self", None)
            current.record._constructed[id(self)] = (cls, arguments, self)

    return __init__


def _recorded_classes() -> list[type]:
    """The samplers and pruners whose arguments a Study can carry."""
    import optuna.pruners as p
    import optuna.samplers as s

    return [
        s.TPESampler,
        s.RandomSampler,
        s.CmaEsSampler,
        s.GPSampler,
        s.QMCSampler,
        s.GridSampler,
        s.NSGAIISampler,
        s.BruteForceSampler,
        p.NopPruner,
        p.MedianPruner,
        p.PercentilePruner,
        p.SuccessiveHalvingPruner,
        p.HyperbandPruner,
        p.ThresholdPruner,
        p.WilcoxonPruner,
        p.PatientPruner,
    ]


# ----------------------------------------------------------------- executing

#: Modules imported by :func:`import_module`, with what their import recorded.
_imported: dict[str, tuple[types.ModuleType, ScriptRecord]] = {}


def import_module(name: str) -> tuple[types.ModuleType, ScriptRecord | None]:
    """Import module ``name`` as a trial worker does: a top-level ``study.optimize``
    stops its execution there (its study runs no trial; the code after it never
    runs), and the module, as far as it ran, is registered in ``sys.modules``.

    Returns the module and what it recorded (None for a module imported before,
    elsewhere). Raises what the import raises (``ModuleNotFoundError``, the module's
    own errors), and :class:`ScriptError` when a module it imports calls
    ``study.optimize`` at import.
    """
    if name in sys.modules:
        module = sys.modules[name]
        known = _imported.get(name)
        return module, (known[1] if known is not None and known[0] is module else None)
    parent, _, child = name.rpartition(".")
    if parent:
        importlib.import_module(parent)
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    module = importlib.util.module_from_spec(spec)
    record = ScriptRecord(module, spec.origin)
    sys.modules[name] = module
    try:
        with _intercepting(_Session(record, None, load_real=False)):
            spec.loader.exec_module(module)
        record.finished = True
    except _Stop:
        pass
    except _Abort as abort:
        sys.modules.pop(name, None)
        raise abort.error from None
    except BaseException:
        sys.modules.pop(name, None)
        raise
    if parent:
        setattr(sys.modules[parent], child, module)
    optimize = record.optimize
    if optimize is not None and spec.origin and not _same_file(optimize.site.filename, spec.origin):
        sys.modules.pop(name, None)
        raise ScriptError(
            f"{record.display_name} imports code that calls study.optimize when imported "
            f"({optimize.site}); the import stopped there. Guard that call with "
            'if __name__ == "__main__": or move it out of the imported module'
        )
    _imported[name] = (module, record)
    return module, record


def import_failure(module_name: str, error: BaseException, skip: Sequence[str] = ()) -> str:
    """Why :func:`import_module` of an objective's module failed, as its user reads
    it: ``cannot import 'mod': TYPE: message (at FILE, line N)``, the place being the
    user's code (see :func:`user_location`; ``skip`` adds the caller's own folders).
    The module itself not found says where modules are imported from instead."""
    if is_own_module_missing(module_name, error):
        assert isinstance(error, ModuleNotFoundError)
        return module_not_found(module_name, str(error.name))
    if isinstance(error, SyntaxError) and error.filename and not error.filename.startswith("<"):
        # Compiling the module failed: no frame of it ran, the error names the place.
        where = f" (at {error.filename}, line {error.lineno})" if error.lineno else ""
        return f"cannot import {module_name!r}: {type(error).__name__}: {error.msg}{where}"
    location = user_location(error, skip)
    where = f" (at {location[0]}, line {location[1]})" if location else ""
    return f"cannot import {module_name!r}: {type(error).__name__}: {error}{where}"


def is_own_module_missing(module_name: str, error: BaseException) -> bool:
    """``error`` says ``module_name`` itself (or a package above it) is not there, not a
    module it imports (``import lightgbmx`` in it)."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return False
    parts = module_name.split(".")
    return error.name in {".".join(parts[:depth]) for depth in range(1, len(parts) + 1)}


def module_not_found(module_name: str, missing: str) -> str:
    """The reason for an objective's module (or its package ``missing``) that is not
    found: where a worker looks for it, the working directory named."""
    said = f"cannot import {module_name!r}: ModuleNotFoundError: No module named {missing!r}"
    parent = missing.rpartition(".")[0]
    if parent in sys.modules:  # the package was found, not its module
        package = sys.modules[parent]
        found = getattr(package, "__file__", None) or ", ".join(getattr(package, "__path__", []))
        return f"{said} (package {parent!r} is {found})"
    cwd = os.getcwd()
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != cwd]
    pythonpath = f"PYTHONPATH ({os.pathsep.join(extra)})" if extra else "PYTHONPATH (not set)"
    return (
        f"{said}; python: objectives are imported from the working directory ({cwd}) "
        f"and {pythonpath}"
    )


def user_location(error: BaseException, skip: Sequence[str] = ()) -> tuple[str, int] | None:
    """The file and line of the deepest frame of the user's code in ``error``'s
    traceback, or None when it has none. Frames of kubetune, Optuna, the standard
    library, importlib (``<frozen ...>``) and the folders in ``skip`` are not the
    user's; an installed library's frame is taken only when there is no other (a
    user's project may itself be installed)."""
    import sysconfig

    import optuna

    def under(folders: Sequence[str]) -> tuple[str, ...]:
        return tuple(os.path.abspath(folder) + os.sep for folder in folders)

    ours = under(
        [
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # kubetune
            os.path.dirname(os.path.abspath(optuna.__file__)),
            *skip,
        ]
    )
    standard = under([sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")])
    installed_folders = {"site-packages", "dist-packages"}
    own: list[traceback.FrameSummary] = []
    installed: list[traceback.FrameSummary] = []
    for frame in traceback.extract_tb(error.__traceback__):
        path = os.path.abspath(frame.filename)
        if frame.filename.startswith("<") or path.startswith(ours) or frame.lineno is None:
            continue
        # Outside a virtualenv, site-packages lies inside the standard library's folder.
        if installed_folders & set(Path(path).parts):
            installed.append(frame)
        elif not path.startswith(standard):
            own.append(frame)
    chosen = own or installed
    if not chosen:
        return None
    return chosen[-1].filename, chosen[-1].lineno


def run_script(
    path: Path,
    on_optimize: Callable[[ScriptRecord], optuna.Study | None] | None = None,
) -> ScriptRecord:
    """Execute the script ``path`` as ``python path`` would (as ``__main__``, its
    folder first on ``sys.path``), with its Optuna study intercepted.

    At ``study.optimize``, ``on_optimize`` gets the record (its ``optimize`` set): it
    returns the finished
    study to continue the script with (the script's study object then is that
    study, and ``optimize`` returns), or None to stop the script there. With no
    ``on_optimize``, the script stops at ``optimize``. Raises :class:`ScriptError`
    for a script that cannot be read or calls ``optimize`` twice, and whatever the
    script or ``on_optimize`` raises.
    """
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScriptError(f"{path}: cannot read it: {error}") from None
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as error:
        raise ScriptError(f"{path}, line {error.lineno}: {error.msg}") from None
    module = types.ModuleType("__main__")
    module.__file__ = str(path)
    module.__dict__.update(__builtins__=__builtins__, __cached__=None, __package__=None)
    record = ScriptRecord(module, str(path))
    folder = str(path.resolve().parent)
    saved_main = sys.modules.get("__main__")
    saved_argv = sys.argv
    sys.modules["__main__"] = module
    sys.argv = [str(path)]
    sys.path.insert(0, folder)
    try:
        with _intercepting(_Session(record, on_optimize, load_real=True, one_optimize=True)):
            exec(code, module.__dict__)
        record.finished = True
    except _Stop:
        pass
    except _Abort as abort:
        raise abort.error from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        sys.argv = saved_argv
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
    return record


def reachable_on_import(record: ScriptRecord) -> bool:
    """Whether importing the script reaches its ``study.optimize`` call: the call is in
    its top-level code, not in a function nor under ``if __name__ == "__main__":``."""
    call = record.optimize
    if call is None or record.filename is None:
        return False
    if call.site.in_function is not None or not _same_file(call.site.filename, record.filename):
        return False
    try:
        tree = ast.parse(Path(record.filename).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return False
    return not any(
        _is_main_guard(node) and node.lineno <= call.site.lineno <= (node.end_lineno or 0)
        for node in ast.walk(tree)
    )


def _optimize_again(record: ScriptRecord, call: OptimizeCall) -> str | None:
    """Why the script's code would call ``study.optimize`` again after ``call`` (its
    first), read from its source: the call is in a loop, or another ``X.optimize(...)``
    follows it in the same function or top-level code, not in another branch of an
    ``if`` (``X`` bound to anything but a study is not Optuna's). None when it would
    not, or cannot be told (a call inside a function called twice is refused when the
    second call comes)."""
    if record.filename is None or not _same_file(call.site.filename, record.filename):
        return None
    try:
        tree = ast.parse(Path(record.filename).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    line = call.site.lineno
    scope: ast.AST = tree
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.lineno <= line <= (node.end_lineno or node.lineno)
            and (scope is tree or node.lineno > getattr(scope, "lineno", 0))
        ):
            scope = node  # the innermost function holding the call
    sites = list(_optimize_sites(scope, record.module.__dict__))
    current = next(
        (site for site in sites if site.node.lineno <= line <= (site.node.end_lineno or line)),
        None,
    )
    if current is None:
        return None
    name = record.display_name
    advice = (
        "kubetune runs one study.optimize per script: give it the whole budget (n_trials) "
        "and call it once"
    )
    if current.in_loop:
        return f"{name} calls study.optimize in a loop ({call.site}); {advice}"
    for site in sites:
        if site.node.lineno > (current.node.end_lineno or line) and not current.excludes(site):
            other = CallSite(call.site.filename, site.node.lineno, call.site.in_function)
            return f"{name} calls study.optimize twice ({call.site} and {other}); {advice}"
    return None


@dataclasses.dataclass(frozen=True)
class _Site:
    """An ``X.optimize(...)`` call in a scope's code, and where it sits there."""

    node: ast.Call
    branches: tuple[tuple[int, bool], ...]
    """The ``if`` statements around it: (the statement's id, in its else branch)."""
    in_loop: bool

    def excludes(self, other: _Site) -> bool:
        """Whether the two calls are in different branches of one ``if``."""
        mine = dict(self.branches)
        return any(key in mine and mine[key] != branch for key, branch in other.branches)


def _optimize_sites(scope: ast.AST, names: dict[str, Any]) -> Iterator[_Site]:
    """The ``X.optimize(...)`` calls in ``scope``'s own code (not in functions or classes
    it defines), ``X`` a study or a name not bound yet."""
    import optuna

    def visit(node: ast.AST, branches: tuple[tuple[int, bool], ...], loop: bool) -> Iterator[_Site]:
        for field_name, value in ast.iter_fields(node):
            children = value if isinstance(value, list) else [value]
            for child in children:
                if not isinstance(child, ast.AST) or isinstance(
                    child,
                    ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda,
                ):
                    continue
                inner_branches, inner_loop = branches, loop
                if isinstance(node, ast.If) and field_name in ("body", "orelse"):
                    inner_branches = (*branches, (id(node), field_name == "orelse"))
                if isinstance(node, ast.For | ast.AsyncFor | ast.While) and field_name == "body":
                    inner_loop = True
                if (
                    isinstance(child, ast.Call)
                    and isinstance(child.func, ast.Attribute)
                    and child.func.attr == "optimize"
                    and _may_be_study(child.func.value, names, optuna.Study)
                ):
                    yield _Site(child, inner_branches, inner_loop)
                yield from visit(child, inner_branches, inner_loop)

    body = (
        scope.body if isinstance(scope, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef) else []
    )
    for statement in body:
        yield from visit(ast.Module(body=[statement], type_ignores=[]), (), False)


def _may_be_study(receiver: ast.expr, names: dict[str, Any], study_type: type) -> bool:
    if isinstance(receiver, ast.Name) and receiver.id in names:
        return isinstance(names[receiver.id], study_type)
    return True


def statement_line(filename: str, lineno: int) -> int:
    """The first line of the top-level statement holding line ``lineno`` of ``filename``."""
    try:
        tree = ast.parse(Path(filename).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return lineno
    for node in tree.body:
        if node.lineno <= lineno <= (node.end_lineno or node.lineno):
            return node.lineno
    return lineno


def _is_main_guard(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _shown(filename: str) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(filename).resolve().relative_to(Path.cwd().resolve()))
    return filename
