"""The kubectl-like commands against the emulated API server, with the operator running."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.studies import study_document
from kubetune.cli import app
from typer.testing import CliRunner, Result

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

IMAGE = "ghcr.io/kubetune/trial:test"


def spec(function: str, **budget: Any) -> dict[str, Any]:
    return {
        "objective": {"direction": "minimize"},
        "sampler": {"name": "random", "seed": 0},
        "budget": {"maxTrials": 4, "parallelism": 1, **budget},
        "trial": {"python": f"kt_test_objectives:{function}", "image": IMAGE, "trialsPerPod": 20},
    }


def test_commands_scripts_rely_on(cluster: Any, kubeconfig: Path, tmp_path: Path) -> None:
    cluster.start()
    runner = CliRunner()

    def kubetune(*args: Any) -> Result:
        return runner.invoke(app, [str(a) for a in args], env={"KUBECONFIG": str(kubeconfig)})

    study_file = tmp_path / "cli.yaml"
    study_file.write_text(yaml.safe_dump(study_document("cli", spec("quadratic"))))
    broken_file = tmp_path / "broken.yaml"
    broken_file.write_text(
        yaml.safe_dump(study_document("broken", spec("raises", maxFailedTrials=0)))
    )
    warm = tmp_path / "warm.json"
    warm.write_text('{"x": 2.0}')

    # The failing study first, not waited for: it fails while the other one runs.
    assert kubetune("submit", broken_file).exit_code == 0
    result = kubetune("submit", study_file, "--enqueue", warm, "--wait", "--timeout", 90)
    assert result.exit_code == 0, result.output
    assert "study.kubetune.io/cli created" in result.stdout
    assert "Succeeded" in result.stdout
    failed = kubetune("watch", "broken", "--timeout", 90)
    assert failed.exit_code == 1, failed.output
    assert "Failed" in failed.stdout and "TooManyFailedTrials" in failed.stdout

    got = kubetune("get", "cli", "-o", "json")
    assert got.exit_code == 0
    assert json.loads(got.stdout)["status"]["phase"] == "Succeeded"
    assert "managedFields" not in json.loads(got.stdout)["metadata"]
    table = kubetune("get", "cli").stdout
    assert "cli" in table and "Succeeded" in table and "4/4" in table
    listed = kubetune("list", "-o", "yaml")
    assert sorted(s["metadata"]["name"] for s in yaml.safe_load(listed.stdout)) == ["broken", "cli"]
    assert "broken" in kubetune("list", "-A").stdout

    described = kubetune("describe", "cli")

    assert described.exit_code == 0, described.output
    for text in ("Best trial:", "#0", "x = 2.0", "Conditions:", "MaxTrialsReached", "NewBestTrial"):
        assert text in described.stdout, text

    best_file = tmp_path / "best_params.json"
    best = kubetune("best", "cli", "-o", "json", "--file", best_file)
    assert best.exit_code == 0
    assert json.loads(best.stdout) == {"x": 2.0} == json.loads(best_file.read_text())
    assert "x = 2.0" in kubetune("best", "cli").stdout
    assert kubetune("best", "broken").exit_code == 4  # no trial completed

    trials = kubetune("trials", "cli", "-o", "json")
    records = json.loads(trials.stdout)
    assert [r["number"] for r in records] == [0, 1, 2, 3]
    assert records[0]["params"] == {"x": 2.0} and records[0]["pod"].startswith("cli-trial-")
    limited = kubetune("trials", "cli", "--state", "complete", "--limit", 2, "-o", "yaml")
    assert [r["number"] for r in yaml.safe_load(limited.stdout)] == [2, 3]
    assert "COMPLETE" in kubetune("trials", "cli").stdout
    failing = json.loads(kubetune("trials", "broken", "-o", "json").stdout)
    assert "boom" in failing[0]["fail_reason"]
    assert kubetune("trials", "cli", "--state", "bogus").exit_code == 2

    assert kubetune("watch", "cli").exit_code == 0
    figure = tmp_path / "history.html"
    plotted = kubetune("plot", "cli", "--kind", "history", "-o", figure)
    assert plotted.exit_code == 0, plotted.output
    assert "plotly" in figure.read_text()

    assert "enqueued 1 parameter set(s)" in kubetune("enqueue", "cli", "--set", "x=3.5").stdout
    again = kubetune("enqueue", "cli", best_file)
    assert "enqueued 0" in again.stdout and "1 already tried or queued" in again.stdout

    changed = tmp_path / "changed.yaml"
    changed.write_text(
        yaml.safe_dump(study_document("cli", {**spec("quadratic"), "sampler": {"name": "tpe"}}))
    )
    refused = kubetune("submit", changed)
    assert refused.exit_code == 5 and "sampler" in refused.stderr

    assert kubetune("logs", "cli").exit_code == 4  # its pods succeeded and are gone
    missing = kubetune("get", "missing")
    assert missing.exit_code == 4
    assert 'study "missing" not found in namespace "default"' in missing.stderr

    assert "study.kubetune.io/cli suspended" in kubetune("suspend", "cli").stdout
    assert json.loads(kubetune("get", "cli", "-o", "json").stdout)["spec"]["suspend"] is True
    assert kubetune("watch", "cli", "--timeout", 1).exit_code == 6
    assert "study.kubetune.io/cli resumed" in kubetune("resume", "cli").stdout
    assert "study.kubetune.io/cli deleted" in kubetune("delete", "cli").stdout
    assert kubetune("delete", "nope").exit_code == 4
