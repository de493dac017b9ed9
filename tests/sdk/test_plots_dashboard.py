"""kubetune plot (HTML and PNG, opened and checked) and kubetune dashboard (serves HTTP)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

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

    figures = tmp_path / "figures"
    for kind in ("history", "importance", "parallel", "intermediate"):
        html = figures / f"{kind}.html"
        assert plot(single, kind, html) == 0, kind
        text = html.read_text()
        # The figure's data is in the file; plotly.js is not copied into each figure
        # (4.7 MB each): they share one plotly.min.js beside them, so they open offline.
        assert "Plotly.newPlot" in text and '"type":"' in text
        assert len(text) < 300_000 and '<script charset="utf-8" src="plotly.min.js">' in text
        if kind not in ("history", "intermediate"):
            continue  # matplotlib is slow; two kinds show the PNG path works
        png = tmp_path / f"{kind}.png"
        assert plot(single, kind, png) == 0, kind
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
    assert sorted(p.name for p in figures.iterdir() if p.suffix == ".js") == ["plotly.min.js"]
    assert (figures / "plotly.min.js").stat().st_size > 1_000_000
    # --plotlyjs cdn: a figure alone that loads plotly.js from the network; inline: one
    # self-contained file to send.
    assert plot(single, "history", tmp_path / "cdn" / "h.html", "--plotlyjs", "cdn") == 0
    cdn = (tmp_path / "cdn" / "h.html").read_text()
    assert 'src="https://cdn.plot.ly/' in cdn and len(cdn) < 300_000
    assert [p.name for p in (tmp_path / "cdn").iterdir()] == ["h.html"]
    assert plot(single, "history", tmp_path / "inline.html", "--plotlyjs", "inline") == 0
    inline = (tmp_path / "inline.html").read_text()
    assert len(inline) > 1_000_000 and 'src="plotly.min.js"' not in inline
    assert not (tmp_path / "plotly.min.js").exists()

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


#: LightGBM's usual search space: nine parameters, long names, log scales, a categorical.
NINE = {
    "learning_rate": optuna.distributions.FloatDistribution(1e-4, 0.3, log=True),
    "num_leaves": optuna.distributions.IntDistribution(8, 256),
    "max_depth": optuna.distributions.IntDistribution(3, 12),
    "min_child_samples": optuna.distributions.IntDistribution(5, 100),
    "feature_fraction": optuna.distributions.FloatDistribution(0.4, 1.0),
    "bagging_fraction": optuna.distributions.FloatDistribution(0.4, 1.0),
    "bagging_freq": optuna.distributions.IntDistribution(0, 7),
    "lambda_l1": optuna.distributions.FloatDistribution(1e-8, 10.0, log=True),
    "boosting_type": optuna.distributions.CategoricalDistribution(["gbdt", "dart", "goss"]),
}


def nine_parameters(storage: str | None, name: str = "nine") -> optuna.Study:
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0)
    )

    def objective(trial: optuna.Trial) -> float:
        values = {key: trial._suggest(key, dist) for key, dist in NINE.items()}
        return float(values["learning_rate"])

    study.optimize(objective, n_trials=20)
    return study


def text_outline(label: Any, renderer: Any) -> list[tuple[float, float]]:
    """The four corners, in pixels, of a slanted label's box (its window extent is the
    upright box around it, which neighbours' boxes may cross while the texts do not)."""
    import math

    # Turned about its alignment point: the box is the upright text's, turned there.
    assert label.get_rotation_mode() == "anchor"
    angle = label.get_rotation()
    label.set_rotation(0)
    box = label.get_window_extent(renderer)
    label.set_rotation(angle)
    x = {"left": box.x0, "center": (box.x0 + box.x1) / 2, "right": box.x1}[
        label.get_horizontalalignment()
    ]
    y = {"top": box.y1, "center": (box.y0 + box.y1) / 2}.get(label.get_verticalalignment(), box.y0)
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    corners = [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1)]
    return [
        (x + (cx - x) * cos - (cy - y) * sin, y + (cx - x) * sin + (cy - y) * cos)
        for cx, cy in corners
    ]


def convex_overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    """Whether two convex polygons overlap (no edge of either separates them)."""
    for polygon in (a, b):
        for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
            normal = (y1 - y2, x2 - x1)
            first = [normal[0] * x + normal[1] * y for x, y in a]
            second = [normal[0] * x + normal[1] * y for x, y in b]
            if max(first) <= min(second) or max(second) <= min(first):
                return False
    return True


def test_parallel_coordinates_of_nine_parameters_are_readable(
    storage_url: str, tmp_path: Path
) -> None:
    from PIL import Image

    nine_parameters(storage_url)
    two = optuna.create_study(study_name="two", storage=storage_url)
    two.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("y", 1, 3), n_trials=10)
    sizes = {}
    for name in ("nine", "two"):
        png = tmp_path / f"{name}.png"
        done = subprocess.run(
            [sys.executable, "-m", "kubetune.cli", "plot", name, "--storage", storage_url,
             "--kind", "parallel", "-o", str(png)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        with Image.open(png) as image:
            sizes[name] = image.size
    # Each axis gets its own room: the figure grows with the parameters.
    assert sizes["nine"][0] > 1.6 * sizes["two"][0], sizes

    # No parameter name runs into the next, and no axis' tick labels reach the next axis.
    from kubetune.visualization.plots import draw_figure

    ax = draw_figure(nine_parameters(None, "in-memory"), "parallel", html=False)
    figure = ax.figure
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    names = [label for label in ax.get_xticklabels() if label.get_text()]
    assert len(names) == 10  # the objective and nine parameters
    assert all(label.get_rotation() > 0 for label in names)  # slanted, not flat
    outlines = [text_outline(label, renderer) for label in names]
    for (name, left), (other, right) in itertools.pairwise(zip(names, outlines, strict=True)):
        assert not convex_overlap(left, right), (name.get_text(), other.get_text())
    axes = [a for a in figure.axes if a is not ax and a.get_label() != "<colorbar>"]
    spines = [a.spines["right"].get_window_extent(renderer).x0 for a in axes]
    for twin, next_spine in zip(axes, spines[1:], strict=False):
        labels = [t for t in twin.get_yticklabels() if t.get_text() and t.get_visible()]
        right_edge = max(t.get_window_extent(renderer).x1 for t in labels)
        assert right_edge < next_spine, (twin, right_edge, next_spine)
    import matplotlib.pyplot as plt

    plt.close(figure)


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
