"""kubetune plot (HTML and PNG, opened and checked) and kubetune dashboard (serves HTTP)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from kubetune.cli import app
from typer.testing import CliRunner

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_file(tmp_path: Path, name: str, directions: list[str]) -> Path:
    objective = {"directions": directions} if len(directions) > 1 else {"direction": directions[0]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubetune.io/v1alpha1",
                "kind": "Study",
                "metadata": {"name": name},
                "spec": {"objective": objective, "trial": {"python": "tune_objectives:objective"}},
            }
        )
    )
    return path


def fill(storage_url: str) -> None:
    """A single-objective study with pruned trials, and a two-objective one."""
    study = optuna.create_study(study_name="plotted", storage=storage_url)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        y = trial.suggest_int("y", 1, 5)
        for step in range(4):
            trial.report(x * y + 1 / (step + 1), step)
            if trial.number > 4 and trial.should_prune():
                raise optuna.TrialPruned()
        return x * y

    study.optimize(objective, n_trials=12)
    pareto = optuna.create_study(
        study_name="pareto", storage=storage_url, directions=["minimize"] * 2
    )
    pareto.set_metric_names(["loss", "latency"])
    pareto.optimize(lambda t: (t.suggest_float("x", 0, 1), (1 - t.params["x"]) ** 2), n_trials=8)


def test_plots_are_written_and_open(storage_url: str, tmp_path: Path) -> None:
    from PIL import Image

    fill(storage_url)
    single = study_file(tmp_path, "plotted", ["minimize"])
    multi = study_file(tmp_path, "pareto", ["minimize", "minimize"])
    runner = CliRunner()

    def plot(study: Path, kind: str, output: Path, *more: str) -> int:
        result = runner.invoke(
            app,
            [
                "plot",
                str(study),
                "--kind",
                kind,
                "-o",
                str(output),
                "--storage",
                storage_url,
                *more,
            ],
        )
        return result.exit_code

    for kind in ("history", "importance", "parallel", "intermediate"):
        html = tmp_path / f"{kind}.html"
        assert plot(single, kind, html) == 0, kind
        text = html.read_text()
        # Self-contained: plotly.js and the figure's data are in the file.
        assert "Plotly.newPlot" in text and '"type":"' in text and len(text) > 100_000
        if kind not in ("history", "intermediate"):
            continue  # matplotlib is slow; two kinds show the PNG path works
        png = tmp_path / f"{kind}.png"
        assert plot(single, kind, png) == 0, kind
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
    assert plot(multi, "pareto", tmp_path / "pareto.html") == 0
    assert '"loss"' in (tmp_path / "pareto.html").read_text()
    assert plot(multi, "pareto", tmp_path / "pareto.svg") == 0
    assert (tmp_path / "pareto.svg").read_text().lstrip().startswith("<?xml")
    assert plot(multi, "history", tmp_path / "latency.png", "--objective", "1") == 0

    # What cannot be drawn is bad input (2), with the reason.
    result = runner.invoke(
        app, ["plot", str(single), "--kind", "pareto", "-o", "x.html", "--storage", storage_url]
    )
    assert result.exit_code == 2 and "multi-objective" in result.stderr
    assert plot(single, "history", tmp_path / "history.gif") == 2
    missing = study_file(tmp_path, "never-ran", ["minimize"])
    result = runner.invoke(app, ["plot", str(missing), "-o", "x.html", "--storage", storage_url])
    assert result.exit_code == 4 and "kubetune run" in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(60)
def test_dashboard_serves_the_study_on_loopback(storage_url: str, tmp_path: Path) -> None:
    fill(storage_url)
    port = free_port()
    env = {**os.environ, "KUBETUNE_STORAGE_URL": storage_url}  # not on the command line
    kubetune = Path(sys.executable).parent / "kubetune"
    process = subprocess.Popen(
        [str(kubetune), "dashboard", str(study_file(tmp_path, "plotted", ["minimize"])),
         "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    studies = json.loads(r.read())
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(process.communicate()[0]) from None
                time.sleep(0.2)
        names = [s["study_name"] for s in studies["study_summaries"]]
        assert "plotted" in names
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard", timeout=5) as r:
            assert r.status == 200 and "html" in r.headers["Content-Type"]
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C, even right after a page was sent
        output, _ = process.communicate(timeout=60)  # a loaded CI machine exits slowly
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}/dashboard/studies/" in output
    assert "dashboard stopped" in output
