"""Shipping an objective function's source to where trials run.

``client.tune(objective)`` cannot rely on the trial image having the user's
code, so it sends the source: the whole module that defines the function
(plus any modules or packages named in ``modules=[...]``), as files keyed by
their path. In a cluster they travel in a ConfigMap mounted into the trial
pods; locally they are written to a temporary folder on ``PYTHONPATH``.

A function defined in a script run as ``python tune.py`` ships as module
``tune`` (guard the ``tune()`` call with ``if __name__ == "__main__":``); one
defined in a notebook or a REPL ships as a small module made from its source,
the modules it uses and the simple constants it reads.

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

#: A ConfigMap holds at most 1 MiB; leave room for its metadata.
MAX_SHIPPED_BYTES = 900 * 1024
#: Module name for a function defined where there is no file (a notebook, a REPL).
INTERACTIVE_MODULE = "kubetune_objective"


class ShippingError(ValueError):
    """The function or a module cannot be shipped; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class ShippedCode:
    """Source files to put on the trial's ``PYTHONPATH``, and the function to call.

    ``files`` maps relative paths (``pkg/train.py``) to source text.
    """

    module: str
    function: str
    files: dict[str, str]

    @property
    def entry(self) -> str:
        """``module:function``, for ``spec.trial.python``."""
        return f"{self.module}:{self.function}"

    @property
    def digest(self) -> str:
        """sha256 of the entry and every file: the same code gives the same digest."""
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
        stem = Path(module_file).stem
        module_name = stem if stem.isidentifier() else INTERACTIVE_MODULE
        files[f"{module_name}.py"] = _read(Path(module_file))
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


def _module_files(module: types.ModuleType) -> dict[str, str]:
    """A module's file at its package path; for a package, every ``.py`` under it."""
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
            if "__pycache__" not in path.parts
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
    tree = ast.parse(source)
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
            bound.add((node.asname or node.name).split(".")[0])
    return {n for n in loaded - bound if not hasattr(builtins, n)}


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
