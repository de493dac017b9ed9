"""One exception root: a user's ``except kubetune.errors.KubetuneError`` catches every
error the kubetune package raises on purpose (a bad spec, an unreachable storage,
a failed local run, a refused conversion...)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import kubetune
from kubetune.errors import KubetuneError


def test_every_kubetune_exception_derives_from_kubetune_error() -> None:
    outside = []
    for module_info in pkgutil.walk_packages(kubetune.__path__, "kubetune."):
        if module_info.name.endswith(".__main__"):
            continue  # ``python -m``'s entry: importing it runs the command
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and value.__module__ == module.__name__
                and not issubclass(value, KubetuneError)
            ):
                outside.append(f"{module.__name__}.{name}")
    assert outside == []
