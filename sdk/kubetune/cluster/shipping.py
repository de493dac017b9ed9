"""Shipping an objective function's source to where trials run.

``client.tune(objective)`` cannot rely on the trial image having the user's
code, so it sends the source: the whole module that defines the function
(plus any modules or packages named in ``modules=[...]``), as files keyed by
their path. In a cluster they travel in a ConfigMap mounted into the trial
pods; locally they are written to a temporary folder on ``PYTHONPATH``.

A function defined in a script run as ``python tune.py`` ships as a module
``kubetune_tune`` made from the script's own lines that the function needs: its
``def``, the imports, assignments, helper functions and classes it uses (and
what those use), in the script's order. The rest of the script (the
``tune()`` call, prints, an ``if __name__ == "__main__":`` block) is left out,
so importing the shipped module never runs the caller again; modules next to
the script that those lines import (``from helpers import load``) are shipped
whole. One defined in a notebook or a REPL ships as a small module made from
its source, the modules it uses and the simple constants it reads.

Example:
    >>> code = ship(my_objective)                  # doctest: +SKIP
    >>> code.entry                                 # doctest: +SKIP
    'train:my_objective'
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import hashlib
import inspect
import sys
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kubetune.errors import KubetuneError

#: A ConfigMap holds at most 1 MiB; leave room for its metadata.
MAX_SHIPPED_BYTES = 900 * 1024
#: Module name for a function defined where there is no file (a notebook, a REPL).
INTERACTIVE_MODULE = "kubetune_objective"
#: A script ``tune.py`` ships as module ``kubetune_tune``: never the script's own name,
#: which a worker would find (and import, running the whole script) in its directory.
SCRIPT_MODULE_PREFIX = "kubetune_"


class ShippingError(KubetuneError, ValueError):
    """The function or a module cannot be shipped; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class ShippedCode:
    """Source files to put on the trial's ``PYTHONPATH``, and the function to call.

    ``files`` maps relative paths (``pkg/train.py``) to source text.
    """

    module: str
    function: str
    files: dict[str, str]
    identity: str | None = None
    """The code's identity when it is not every file's text (a script: its text
    before ``study.optimize``); None: :attr:`digest` hashes the files."""

    @property
    def entry(self) -> str:
        """``module:function`` (``module`` alone with no function), for ``spec.trial.python``."""
        return f"{self.module}:{self.function}" if self.function else self.module

    @property
    def digest(self) -> str:
        """sha256 of the entry and every file: the same code gives the same digest."""
        if self.identity is not None:
            return self.identity
        sha = hashlib.sha256(self.entry.encode())
        for path in sorted(self.files):
            sha.update(b"\0" + path.encode() + b"\0" + self.files[path].encode())
        return sha.hexdigest()

    @property
    def size(self) -> int:
        return sum(len(text.encode()) for text in self.files.values())

    def configmap_data(self) -> dict[str, str]:
        """ConfigMap keys allow no ``/``: a path's slashes become dots (``pkg.train.py``)."""
        return {_key(path): text for path, text in self.files.items()}

    def volume_items(self) -> list[dict[str, str]]:
        """``items`` of a configMap volume that put each key back at its path."""
        return [{"key": _key(path), "path": path} for path in sorted(self.files)]

    def write_to(self, root: Path) -> None:
        for path, text in self.files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")


def _key(path: str) -> str:
    return path.replace("/", ".")


def ship(function: Callable[..., Any], modules: Iterable[Any] = ()) -> ShippedCode:
    """The source needed to import ``function`` elsewhere, plus ``modules``.

    ``modules`` are module objects or dotted names; a package brings every
    ``.py`` file under it. Raises :class:`ShippingError` for a function that is
    not importable by name (a lambda, a nested function, a method) or source
    that cannot be found.
    """
    if not inspect.isfunction(function):
        raise ShippingError(
            f"objective {function!r} is not a plain function; define it with def at module level"
        )
    name = function.__name__
    if name == "<lambda>" or function.__qualname__ != name:
        raise ShippingError(
            f"objective {function.__qualname__!r} must be defined with def at the top level of "
            "its module (not a lambda, a nested function or a method), so trials can import it"
        )
    # The function's own globals say where it lives (sys.modules may hold another __main__).
    scope = function.__globals__
    real_name = str(scope.get("__name__") or function.__module__)
    module_file = scope.get("__file__")
    files: dict[str, str] = {}
    if not module_file or not str(module_file).endswith(".py") or not Path(module_file).is_file():
        module_name = INTERACTIVE_MODULE
        files[f"{module_name}.py"] = _interactive_module(function)
    elif real_name == "__main__":
        script = Path(module_file)
        module_name = script_module_name(script)
        text, imported = _script_module(function, script)
        files[f"{module_name}.py"] = text
        for path, source in _local_modules(imported, script).items():
            files.setdefault(path, source)
    else:
        module_name = real_name
        module = sys.modules.get(real_name)
        if module is not None:
            files.update(_module_files(module))
        else:
            files["/".join(real_name.split(".")) + ".py"] = _read(Path(module_file))
    for extra in modules:
        extra_module = _as_module(extra)
        for path, text in _module_files(extra_module).items():
            files.setdefault(path, text)
    code = ShippedCode(module=module_name, function=name, files=files)
    if code.size > MAX_SHIPPED_BYTES:
        raise ShippingError(
            f"the shipped source is {code.size // 1024} KiB; a ConfigMap holds at most 1 MiB. "
            "Ship fewer modules, or put the code into the trial image"
        )
    return code


def _as_module(value: Any) -> types.ModuleType:
    if isinstance(value, types.ModuleType):
        return value
    if isinstance(value, str):
        import importlib

        try:
            return importlib.import_module(value)
        except ImportError as error:
            raise ShippingError(f"modules: cannot import {value!r}: {error}") from None
    raise ShippingError(f"modules: {value!r} is neither a module nor a module name")


def _module_files(module: types.ModuleType, leave_out: Path | None = None) -> dict[str, str]:
    """A module's file at its package path; for a package, every ``.py`` under it
    (but ``leave_out``)."""
    file = getattr(module, "__file__", None)
    if not file or not Path(file).is_file() or not file.endswith(".py"):
        raise ShippingError(
            f"module {module.__name__!r} has no Python source file to ship "
            "(a built-in or compiled module); install it in the trial image instead"
        )
    parts = module.__name__.split(".")
    source = Path(file)
    if hasattr(module, "__path__"):  # a package: everything below its folder
        root = source.parent
        prefix = "/".join(parts)
        return {
            f"{prefix}/{path.relative_to(root).as_posix()}": _read(path)
            for path in sorted(root.rglob("*.py"))
            if "__pycache__" not in path.parts and path.resolve() != leave_out
        }
    return {"/".join(parts) + ".py": _read(source)}


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ShippingError(f"cannot read {path}: {error}") from None


# ------------------------------------------------------ notebooks and REPLs


def _interactive_module(function: Callable[..., Any]) -> str:
    """A module for a function with no source file: the imports and constants it
    uses, the functions and classes of the session it calls, then itself."""
    lines: list[str] = []
    done: set[str] = set()
    bodies: list[str] = []

    def add(obj: Any) -> None:
        try:
            source = _dedent(inspect.getsource(obj))
        except (OSError, TypeError) as error:
            raise ShippingError(
                f"cannot find the source of {getattr(obj, '__qualname__', obj)!r}: {error}; "
                "put the objective in a .py file"
            ) from None
        # Classes have no __globals__; in a session they live in __main__ like the function.
        scope = getattr(obj, "__globals__", function.__globals__)
        for name in sorted(_global_names(source)):
            if name in done or name not in scope:
                continue  # unknown names fail at import, with Python's own message
            done.add(name)
            statement = _define(name, scope[name])
            if statement is None:
                add(scope[name])  # a function or class of the session: ship its source too
            else:
                lines.append(statement)
        bodies.append(source)

    done.add(function.__name__)  # a recursive objective names itself
    add(function)
    header = [
        f'"""Shipped by kubetune from an interactive session: {function.__name__}."""',
        "",
    ]
    return "\n".join(header + sorted(set(lines)) + ["", ""] + [b.rstrip() + "\n\n" for b in bodies])


def _dedent(source: str) -> str:
    import textwrap

    return textwrap.dedent(source)


def _global_names(source: str) -> set[str]:
    """Names a function's source reads that it does not bind itself."""
    loaded, bound = _names(ast.parse(source))
    return loaded - bound


def _names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """The names ``tree`` reads and does not bind (builtins left out), and those it binds."""
    loaded: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            if node.name != "*":
                bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return {n for n in loaded - bound if not hasattr(builtins, n)}, bound


def _define(name: str, value: Any) -> str | None:
    """A statement that recreates ``name`` in the shipped module, or None when the
    value is a function or class of the session whose source must be shipped."""
    if isinstance(value, types.ModuleType):
        if value.__name__ == name:
            return f"import {name}"
        return f"import {value.__name__} as {name}"
    module = getattr(value, "__module__", None)
    if (inspect.isfunction(value) or inspect.isclass(value)) and module == "__main__":
        return None
    if module and module != "__main__" and hasattr(value, "__qualname__"):
        qualname = value.__qualname__
        if "." not in qualname:
            return (
                f"from {module} import {qualname}"
                if qualname == name
                else f"from {module} import {qualname} as {name}"
            )
    literal = repr(value)
    try:
        if ast.literal_eval(literal) == value:
            return f"{name} = {literal}"
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    raise ShippingError(
        f"the objective uses {name!r} ({type(value).__name__}), which cannot be shipped from an "
        "interactive session; put the objective in a .py file, or create the value inside it"
    )


# ------------------------------------------------------------------ scripts


def ship_script(script: Path, module: str, function: str, identity: str) -> ShippedCode:
    """An Optuna script shipped whole as module ``module`` (``kubetune run script.py
    --cluster``: the trial runner stops it at its ``study.optimize``), with the modules
    and packages beside it that it imports, and those they import in turn."""
    text = _read(script)
    files = {f"{module}.py": text}
    folder = script.resolve().parent
    pending, seen = sorted(_imported_names(text)), set()
    while pending:  # modules beside the script, as python script.py finds them
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        beside = folder / f"{name}.py"
        if beside.is_file() and beside.resolve() != script.resolve():
            files.setdefault(f"{name}.py", _read(beside))
            pending.extend(_imported_names(files[f"{name}.py"]))
        elif (folder / name / "__init__.py").is_file():
            for path in sorted((folder / name).rglob("*.py")):
                if "__pycache__" not in path.parts:
                    files.setdefault(path.relative_to(folder).as_posix(), _read(path))
    code = ShippedCode(module=module, function=function, files=files, identity=identity)
    if code.size > MAX_SHIPPED_BYTES:
        raise ShippingError(
            f"{script.name} and the modules beside it that it imports are "
            f"{code.size // 1024} KiB; a ConfigMap holds at most 1 MiB. Put the code into "
            "the trial image instead"
        )
    return code


def script_module_name(script: Path) -> str:
    """``kubetune_<stem>`` for a script ``<stem>.py``."""
    stem = "".join(c if c.isalnum() or c == "_" else "_" for c in script.stem)
    return SCRIPT_MODULE_PREFIX + stem


#: Calls that start a study: a top-level statement making one is never shipped for
#: what it does to a name (``study.optimize(...)``, ``client.tune(...)``).
_STUDY_CALLS = frozenset({"tune", "optimize"})


@dataclasses.dataclass
class _Statement:
    node: ast.stmt
    binds: set[str]
    mutates: set[str]
    reads: set[str]
    always: bool = False


def _script_module(function: Callable[..., Any], script: Path) -> tuple[str, set[str]]:
    """The module shipped for ``function`` defined in ``script`` (run as ``__main__``):
    the script's top-level statements the function needs, transitively, in order.

    Returns the module's text and the top-level names of the modules it imports.
    """
    source = _read(script)
    try:
        tree = ast.parse(source, str(script))
    except SyntaxError as error:
        raise ShippingError(f"cannot parse {script}: {error}") from None
    package = function.__globals__.get("__package__") or None
    statements: list[_Statement] = []
    guarded: set[str] = set()  # names bound only under if __name__ == "__main__"
    for index, node in enumerate(tree.body):
        if index == 0 and _is_docstring(node):
            continue
        if _is_main_guard(node):
            guarded |= _bound_names(node)
            continue
        statements.append(_describe(node))
    needed = {function.__name__}
    chosen: set[int] = set()
    changed = True
    while changed:
        changed = False
        for index, statement in enumerate(statements):
            if index in chosen:
                continue
            if statement.always or statement.binds & needed or statement.mutates & needed:
                chosen.add(index)
                needed |= statement.reads
                changed = True
    bound = set().union(*(statements[i].binds for i in chosen)) if chosen else set()
    missing = sorted((needed & guarded) - bound)
    if missing:
        raise ShippingError(
            f"{function.__name__} uses {', '.join(map(repr, missing))}, which {script.name} "
            'sets only under if __name__ == "__main__": trials import the function without '
            "running that block; set it at the top level or inside the function"
        )
    lines = source.splitlines(keepends=True)
    spans = [_span(s.node) for s in statements]
    parts: list[str] = []
    imported: set[str] = set()
    previous_end: int | None = None
    for index in sorted(chosen):
        node = statements[index].node
        start, end = spans[index]
        if previous_end is not None and start > previous_end + 1:  # keep a gap a gap
            defines = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            parts.append("\n\n" if defines else "\n")
        previous_end = end
        shares_a_line = any(
            other != index and not (spans[other][1] < start or spans[other][0] > end)
            for other in range(len(statements))
        )
        relative = isinstance(node, ast.ImportFrom) and node.level > 0
        if relative:
            node = _absolute_import(node, package, script)
        if relative or shares_a_line:
            parts.append(ast.unparse(node) + "\n")
        else:
            parts.append("".join(lines[start - 1 : end]).rstrip("\n") + "\n")
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
            imported.add(node.module.split(".")[0])
    header = (
        f'"""Shipped by kubetune: {function.__name__} from {script.name} and the lines it '
        'uses; the rest of the script is left out."""\n'
    )
    return header + "".join(parts), imported


def _describe(node: ast.stmt) -> _Statement:
    loaded, bound = _names(node)
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return _Statement(node, {node.name}, set(), loaded - {node.name})
    if isinstance(node, ast.Import | ast.ImportFrom):
        star = any(alias.name == "*" for alias in node.names)
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        return _Statement(node, bound, set(), set(), always=star or future)
    starts_study = any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in _STUDY_CALLS
        for n in ast.walk(node)
    )
    mutates: set[str] = set()
    if not starts_study:
        # x[k] = v, x.a = v, x += v, x.update(...), np.random.seed(0): what they change,
        # at the top level or in a loop, an if, a with, a try
        targets: list[ast.expr] = []
        for inner in ast.walk(node):
            if isinstance(inner, ast.Assign):
                targets += inner.targets
            elif isinstance(inner, ast.AugAssign | ast.AnnAssign):
                targets.append(inner.target)
            elif isinstance(inner, ast.Expr) and isinstance(inner.value, ast.Call):
                targets.append(inner.value.func)
        for target in targets:
            root = _root_name(target)
            if root is not None and not isinstance(target, ast.Name):
                mutates.add(root)
    return _Statement(node, bound, mutates, loaded | mutates)


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _bound_names(node: ast.stmt) -> set[str]:
    return _names(node)[1]


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either way round)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


def _span(node: ast.stmt) -> tuple[int, int]:
    """First and last line of a statement, decorators included."""
    decorators = getattr(node, "decorator_list", [])
    start = min([node.lineno] + [d.lineno for d in decorators])
    return start, node.end_lineno or node.lineno


def _absolute_import(node: ast.ImportFrom, package: str | None, script: Path) -> ast.ImportFrom:
    """``from .helpers import x`` in a script run as ``python -m pkg.tune``, made absolute."""
    import importlib.util

    relative = "." * node.level + (node.module or "")
    if not package:
        raise ShippingError(
            f"{script.name} imports {relative!r} relatively but was not run as part of a "
            "package (python -m pkg.script)"
        )
    absolute = importlib.util.resolve_name(relative, package)
    return ast.ImportFrom(module=absolute, names=node.names, level=0)


def _local_modules(names: Iterable[str], script: Path) -> dict[str, str]:
    """The files of the modules (and packages) named in ``names`` that live beside the
    script rather than in an installed environment, and of the local modules those
    import in turn."""
    folder = script.resolve().parent
    files: dict[str, str] = {}
    pending = list(names)
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if module is None or not file or not str(file).endswith(".py"):
            continue
        path = Path(file).resolve()
        if path == script.resolve() or not path.is_relative_to(folder):
            continue
        if {"site-packages", "dist-packages"} & set(path.parts):
            continue
        # A script run as python -m pkg.tune is in its package: it ships as its slice only.
        for key, text in _module_files(module, leave_out=script.resolve()).items():
            if key not in files:
                files[key] = text
                pending.extend(_imported_names(text))
    return files


def _imported_names(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names
