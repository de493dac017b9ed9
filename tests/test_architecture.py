"""Layering and hygiene that reviews would otherwise have to catch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    return str(BIN / name) if (BIN / name).exists() else (shutil.which(name) or name)


def test_import_layers_hold() -> None:
    """pyproject.toml's import-linter contracts: kubetune's layers (cli above client,
    convert and visualization, above local and cluster, above the engine, above the
    Study), Rich and Typer only in the CLI, Kopf only in the operator, the operator
    and the trial runner on the Study and the engine only, and independent."""
    result = subprocess.run(
        [_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = subprocess.run([_tool("ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nothing_is_importable_as_operator() -> None:
    """A top-level ``operator`` package would shadow the standard library."""
    import operator

    assert operator.__file__ is None or "site-packages" not in operator.__file__
    assert not (REPO / "operator" / "__init__.py").exists()
    assert hasattr(operator, "itemgetter")


def test_trial_runner_starts_without_heavy_imports() -> None:
    """The runner's start-up must not pay for libraries it does not use."""
    code = (
        "import sys, kubetune_trial.runner, kubetune_trial.cli;"
        "heavy = {'torch', 'lightning', 'lightgbm', 'xgboost', 'kopf', 'kubernetes', 'rich',"
        " 'typer', 'sklearn', 'pandas'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _import_cycles(graph: object, modules: set[str]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):  # type: ignore[attr-defined]
            if imported not in modules:
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles() -> None:
    """No module imports, directly or through others, a module that imports it back
    (run-time imports, function-level ones included; type-checking imports excluded)."""
    import grimp

    packages = ("kubetune", "kubetune_operator", "kubetune_trial")
    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True)
    ours = {m for m in graph.modules if m.split(".")[0] in packages}
    assert _import_cycles(graph, ours) == []


def test_cycle_finder_finds_a_cycle() -> None:
    """The finder above is not vacuous: it reports a two-module cycle."""

    class Graph:
        edges = {"a": {"b"}, "b": {"c", "a"}, "c": set()}

        def find_modules_directly_imported_by(self, module: str) -> set[str]:
            return self.edges[module]

    assert _import_cycles(Graph(), {"a", "b", "c"}) == [["a", "b"]]


def test_every_package_exports_what_its_all_names() -> None:
    """Each layer's ``__all__`` (lazy re-exports) resolves: a name moved to another
    module fails here, not in a user's import."""
    import importlib

    packages = [
        "kubetune",
        "kubetune.study",
        "kubetune.engine",
        "kubetune.local",
        "kubetune.cluster",
        "kubetune.client",
        "kubetune.convert",
        "kubetune.visualization",
        "kubetune.cli",
    ]
    missing = []
    for name in packages:
        package = importlib.import_module(name)
        for exported in package.__all__:
            try:
                getattr(package, exported)
            except (AttributeError, ImportError) as error:
                missing.append(f"{name}.{exported}: {error}")
    assert missing == []
