"""Run a real ``kopf run`` operator process against the emulated API server."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["KopfOperator", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class KopfOperator:
    """A ``python -m kopf run ...`` subprocess with KUBECONFIG pointing at the emulator.

    ``target`` is a module name (run with ``-m``) or a path to a ``.py`` file.
    ``namespaces=None`` runs cluster-wide (``-A``); otherwise ``--namespace`` for each.
    ``standalone=True`` (``--standalone``) disables peering. A liveness endpoint on a free
    port is enabled by default; :meth:`wait_ready` polls it. stdout+stderr go to
    ``log_path``; :meth:`log_text` reads it. ``env`` replaces the inherited environment
    (default: ``os.environ``); ``pythonpath`` entries are prepended to ``PYTHONPATH``.
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        kubeconfig: str | os.PathLike[str],
        log_path: str | os.PathLike[str],
        namespaces: Sequence[str] | None = None,
        standalone: bool = True,
        verbose: bool = True,
        liveness: bool = True,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        pythonpath: Sequence[str | os.PathLike[str]] = (),
        cwd: str | os.PathLike[str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.target = target
        self.kubeconfig = str(kubeconfig)
        self.log_path = Path(log_path)
        self.namespaces = list(namespaces) if namespaces is not None else None
        self.standalone = standalone
        self.verbose = verbose
        self.liveness_port = free_port() if liveness else None
        self.extra_args = list(extra_args)
        self.env = dict(os.environ if env is None else env)
        self.pythonpath = [str(p) for p in pythonpath]
        self.cwd = str(cwd) if cwd is not None else None
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def liveness_url(self) -> str | None:
        if self.liveness_port is None:
            return None
        return f"http://127.0.0.1:{self.liveness_port}/healthz"

    def command(self) -> list[str]:
        argv = [self.python, "-m", "kopf", "run"]
        if self.standalone:
            argv.append("--standalone")
        if self.namespaces is None:
            argv.append("--all-namespaces")
        else:
            argv.extend(f"--namespace={ns}" for ns in self.namespaces)
        if self.liveness_url:
            argv.append(f"--liveness={self.liveness_url}")
        if self.verbose:
            argv.append("--verbose")
        argv.extend(self.extra_args)
        target = str(self.target)
        if target.endswith(".py") or os.sep in target:
            argv.append(target)
        else:
            argv.extend(["-m", target])
        return argv

    def start(self) -> KopfOperator:
        if self.proc is not None:
            raise RuntimeError("the operator is already started")
        env = dict(self.env)
        env["KUBECONFIG"] = self.kubeconfig
        env["PYTHONUNBUFFERED"] = "1"
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(
                self.pythonpath + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                env=env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        """Wait until the log matches ``pattern`` (a regex); fail early if the process dies."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text())
            if match:
                return match
            self._check_alive(f"waiting for {regex.pattern!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{regex.pattern!r} not in the operator log after {timeout}s:"
                    f"\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def wait_ready(
        self, timeout: float = 30.0, condition: Callable[[], bool] | None = None
    ) -> KopfOperator:
        """Wait for the liveness endpoint to answer 200 and ``condition()`` to be true.

        A good condition is ``lambda: server.call(emulator.watch_count, 'studies') > 0``
        (see :meth:`EmulatorServer.wait_for_watch`): kopf is then really watching.
        """
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive("starting")
            ok = True
            if self.liveness_url:
                try:
                    with urllib.request.urlopen(self.liveness_url, timeout=1) as response:
                        ok = response.status == 200
                except (urllib.error.URLError, OSError):
                    ok = False
            if ok and condition is not None:
                ok = bool(condition())
            if ok:
                return self
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the operator is not ready after {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _check_alive(self, what: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"the operator exited with {self.proc.returncode} while {what}:\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL (to the whole process group) after ``timeout`` seconds."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL the operator's whole process group at once (a crash)."""
        if self.proc is None:
            return None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> KopfOperator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
