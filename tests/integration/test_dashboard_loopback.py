"""README: "The dashboard runs optuna-dashboard in the ``kubetune`` process on
127.0.0.1, so the database password never appears on a command line"."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import psutil
import pytest
import yaml
from kubetune.engine.storage import open_storage
from test_local import ctrl_c_works

pytestmark = pytest.mark.timeout(120)


def test_dashboard_listens_only_on_loopback_and_keeps_the_password_off_command_lines(
    url_with_password: Callable[[str], str], tmp_path: Path
) -> None:
    password = "Dash-Pa55"
    url = url_with_password(password)
    optuna.create_study(study_name="shown", storage=open_storage(url)).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    study_file = tmp_path / "shown.yaml"
    study_file.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubetune.io/v1alpha1",
                "kind": "Study",
                "metadata": {"name": "shown"},
                "spec": {"trial": {"python": "kt_test_objectives:quadratic"}},
            }
        )
    )
    env = {**os.environ, "KUBETUNE_STORAGE_URL": url}  # as the README says: not an argument
    kubetune = [sys.executable, "-m", "kubetune.cli"]
    process = subprocess.Popen(
        [*kubetune, "dashboard", str(study_file), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ctrl_c_works,
    )
    try:
        dashboard = psutil.Process(process.pid)
        deadline = time.monotonic() + 60
        while True:
            listening = [
                c
                for p in [dashboard, *dashboard.children(recursive=True)]
                for c in p.net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            ]
            if listening or process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not listening:
            process.kill()
            raise AssertionError(f"the dashboard never listened: {process.communicate()[0]}")
        assert {(c.laddr.ip, c.laddr.port) for c in listening} == {("127.0.0.1", port)}
        commands = [" ".join(p.cmdline()) for p in dashboard.children(recursive=True)]
        assert not [c for c in commands if password in c], commands
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert password not in output
    assert f"http://127.0.0.1:{port}/dashboard/" in output
