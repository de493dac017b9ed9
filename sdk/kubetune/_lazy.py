"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists its public names and the module each lives in; a name is imported
on first use. ``import kubetune.engine`` then stays cheap (it imports neither
Optuna nor SQLAlchemy) while ``kubetune.engine.open_storage`` still works, and the
modules that need one piece import only that piece.

Example:
    >>> __getattr__, __dir__ = exports(__name__, {"Client": "kubetune.client.client"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, serving ``names``
    (public name -> module holding it) lazily."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted([*vars(sys.modules[package]), *names])

    return __getattr__, __dir__
