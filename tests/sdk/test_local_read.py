"""Reading a local study after ``kubetune run``: the CLI's read verbs on the Study file
(the embedded PostgreSQL started for the command), a study's name with ``--storage``
and no cluster, and the SDK from a plain script (issue 12, point 5)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from kubetune_cli import kubetune, python_script

pytestmark = pytest.mark.timeout(240)


def write_study(folder: Path, name: str = "quad", trials: int = 4) -> Path:
    """A small study whose trials are a one-line program: (x - 1)^2."""
    program = "import sys; print('loss=' + str((float(sys.argv[1]) - 1) ** 2))"
    document: dict[str, Any] = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name},
        "spec": {
            "objective": {"direction": "minimize", "metric": "loss"},
            "searchSpace": {
                "x": {"type": "float", "low": -5, "high": 5},
                "depth": {"type": "int", "low": 1, "high": 4},
            },
            "sampler": {"name": "tpe", "seed": 0},
            "budget": {"maxTrials": trials, "parallelism": 1},
            "trial": {"command": [sys.executable, "-c", program, "{x}"]},
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A user's shell with no cluster at all: no kubeconfig, a home of its own, and the
    embedded PostgreSQL's data in the test's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBETUNE_")}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env["HOME"] = str(tmp_path / "user")
    env["KUBECONFIG"] = str(tmp_path / "user" / "no-kubeconfig")
    env["KUBETUNE_HOME"] = str(tmp_path / "kubetune-home")
    env["COLUMNS"] = "200"
    (tmp_path / "user").mkdir()
    return env


def servers_on(data: Path) -> list[psutil.Process]:
    """postgres processes serving ``data`` (none should outlive a command)."""
    return [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and str(data) in " ".join(p.info["cmdline"] or [])
    ]


def test_cli_reads_the_local_study_that_run_made(user_env: dict[str, str], tmp_path: Path) -> None:
    study = write_study(tmp_path)
    run = kubetune(user_env, tmp_path, "run", str(study))
    assert run.returncode == 0, run.stdout + run.stderr
    # The embedded server's URL (a socket of that run) is not promised to the user.
    assert "postgresql" not in run.stdout and "host=" not in run.stdout
    assert "kubetune best" in run.stdout
    written = json.loads((tmp_path / "best_params.json").read_text(encoding="utf-8"))
    data = tmp_path / "kubetune-home" / "postgres"
    assert not servers_on(data)

    best = kubetune(user_env, tmp_path, "best", str(study), "-o", "json", "--file", "again.json")
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout) == written  # stdout is the JSON alone
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == written

    table = kubetune(user_env, tmp_path, "best", str(study))
    assert table.returncode == 0, table.stderr
    assert "Best trial" in table.stdout and "x = " in table.stdout

    trials = kubetune(user_env, tmp_path, "trials", str(study), "-o", "json")
    assert trials.returncode == 0, trials.stderr
    rows = json.loads(trials.stdout)
    assert [r["number"] for r in rows] == [0, 1, 2, 3]
    assert all(r["state"] == "COMPLETE" for r in rows)
    best_row = min(rows, key=lambda r: r["values"][0])
    assert best_row["params"] == written

    png = tmp_path / "figures" / "history.png"
    plot = kubetune(user_env, tmp_path, "plot", str(study), "--kind", "history", "-o", str(png))
    assert plot.returncode == 0, plot.stderr
    assert png.stat().st_size > 1000

    # A file whose study never ran is not found (4), and says how to run it.
    never = kubetune(user_env, tmp_path, "trials", str(write_study(tmp_path, "never")))
    assert never.returncode == 4, never.stderr
    assert "kubetune run" in never.stderr and "quad" in never.stderr

    deleted = kubetune(user_env, tmp_path, "delete", str(study))
    assert deleted.returncode == 0, deleted.stderr
    gone = kubetune(user_env, tmp_path, "best", str(study))
    assert gone.returncode == 4, gone.stderr
    assert not servers_on(data)


def test_a_name_with_storage_needs_no_cluster(
    user_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    study = write_study(tmp_path)
    run = kubetune(user_env, tmp_path, "run", str(study), "--storage", storage_url)
    assert run.returncode == 0, run.stdout + run.stderr
    written = json.loads((tmp_path / "best_params.json").read_text(encoding="utf-8"))

    best = kubetune(user_env, tmp_path, "best", "quad", "--storage", storage_url, "-o", "json")
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout) == written
    trials = kubetune(user_env, tmp_path, "trials", "quad", "--storage", storage_url, "-o", "json")
    assert trials.returncode == 0, trials.stderr
    assert len(json.loads(trials.stdout)) == 4
    html = tmp_path / "history.html"
    plot = kubetune(user_env, tmp_path, "plot", "quad", "--storage", storage_url, "-o", str(html))
    assert plot.returncode == 0, plot.stderr

    # A name the storage does not hold: not found, naming what it holds.
    missing = kubetune(user_env, tmp_path, "trials", "qaud", "--storage", storage_url)
    assert missing.returncode == 4, missing.stderr
    assert "qaud" in missing.stderr and "quad" in missing.stderr

    deleted = kubetune(user_env, tmp_path, "delete", "quad", "--storage", storage_url)
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted (4 trials)" in deleted.stdout
    gone = kubetune(user_env, tmp_path, "best", "quad", "--storage", storage_url)
    assert gone.returncode == 4, gone.stderr
    again = kubetune(user_env, tmp_path, "delete", "quad", "--storage", storage_url)
    assert again.returncode == 4 and "quad" in again.stderr, again.stderr


def test_sdk_reads_the_local_study_from_a_plain_script(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    study = write_study(tmp_path)
    run = kubetune(user_env, tmp_path, "run", str(study))
    assert run.returncode == 0, run.stdout + run.stderr
    written = json.loads((tmp_path / "best_params.json").read_text(encoding="utf-8"))
    # As a user writes it: no __main__ guard, the client never closed.
    script = tmp_path / "read.py"
    script.write_text(
        textwrap.dedent(
            """
            import json

            import kubetune
            import optuna

            with kubetune.local_storage() as url:
                study = optuna.load_study(study_name="quad", storage=url)
                optuna_best = study.best_params
                count = len(study.trials)

            client = kubetune.Client()
            result = {
                "optuna": optuna_best,
                "trials": count,
                "client": client.best_params("quad.yaml"),
                "client_trials": [t.number for t in client.trials("quad.yaml")],
                "best_value": client.best_trial("quad.yaml").value,
            }
            print(json.dumps(result))
            """
        ),
        encoding="utf-8",
    )
    read = python_script(user_env, tmp_path, str(script))
    assert read.returncode == 0, read.stderr
    assert "Traceback" not in read.stderr and "Exception" not in read.stderr, read.stderr
    result = json.loads(read.stdout)
    assert result["optuna"] == written and result["client"] == written
    assert result["trials"] == 4 and result["client_trials"] == [0, 1, 2, 3]
    assert isinstance(result["best_value"], float)
    # The script started the server; it stopped when the script ended.
    assert not servers_on(tmp_path / "kubetune-home" / "postgres")
