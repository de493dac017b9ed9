"""A spend budget in the cluster (emulated API server, fake kubelet, the real operator):
trial pods spend their requests while their trials run, status.spend shows it, and the
Study ends with BudgetSpent well before maxTrials; kubetune describe shows the spend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.studies import study_document
from kubetune.cli import app
from typer.testing import CliRunner, Result

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

IMAGE = "ghcr.io/kubetune/trial:test"


def test_a_cpu_budget_ends_a_cluster_study_and_describe_shows_the_spend(
    cluster: Any, kubeconfig: Path, tmp_path: Path
) -> None:
    cluster.start()
    runner = CliRunner()

    def kubetune(*args: Any) -> Result:
        return runner.invoke(app, [str(a) for a in args], env={"KUBECONFIG": str(kubeconfig)})

    # 0.1 CPU a trial of about a second: 0.0001 CPU-hours (0.36 CPU-seconds) last
    # about 3.6 trial-seconds, a few trials of maxTrials' 50.
    spec = {
        "objective": {"direction": "minimize"},
        "sampler": {"name": "random", "seed": 0},
        "budget": {"maxTrials": 50, "parallelism": 2, "maxCpuHours": 0.0001},
        "trial": {
            "python": "kt_test_objectives:sleeps",
            "image": IMAGE,
            "trialsPerPod": 50,
            "env": [{"name": "KT_SLEEP", "value": "1"}],
            "resources": {"requests": {"cpu": "100m"}},
        },
    }
    study_file = tmp_path / "spend.yaml"
    study_file.write_text(yaml.safe_dump(study_document("spend", spec)))
    result = kubetune("submit", study_file, "--wait", "--timeout", 120)
    assert result.exit_code == 0, result.output
    assert "Succeeded" in result.stdout
    # The progress line (printed once at the end, off a terminal) shows the spend.
    assert "CPU-h" in result.output and "· spent 0.0001" in result.output, result.output

    got = kubetune("get", "spend", "-o", "yaml")
    status = yaml.safe_load(got.stdout)["status"]
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert complete["reason"] == "BudgetSpent", status
    assert complete["message"].endswith("of 0.0001 CPU-hours")
    spend = status["spend"]
    assert spend["cpuHours"] >= 0.0001
    assert spend["cpuHours"] == pytest.approx(0.1 * spend["trialHours"], rel=1e-2)
    finished = sum(status["trials"].values())
    assert 2 <= finished < 20, status["trials"]
    described = kubetune("describe", "spend")
    assert described.exit_code == 0, described.output
    assert "maxCpuHours 0.0001" in described.stdout
    assert "Spent:" in described.stdout and "CPU-hours" in described.stdout
    assert "BudgetSpent" in described.stdout


def test_the_terminator_in_trial_pods_ends_a_cluster_study(
    cluster: Any, kubeconfig: Path, tmp_path: Path
) -> None:
    """The Terminator runs in the pods' workers (they have torch); the operator ends the
    Study on their request with TerminatorStopped. A minError far above any regret bound
    of this quadratic makes it stop as soon as it may: at minTrials."""
    cluster.start()
    runner = CliRunner()
    spec = {
        "objective": {"direction": "minimize"},
        "sampler": {"name": "random", "seed": 0},
        "budget": {
            "maxTrials": 40,
            "parallelism": 1,
            "stopWhen": {"terminator": {"minTrials": 5, "minError": 1000}},
        },
        "trial": {"python": "kt_test_objectives:quadratic", "image": IMAGE, "trialsPerPod": 40},
    }
    study_file = tmp_path / "terminated.yaml"
    study_file.write_text(yaml.safe_dump(study_document("terminated", spec)))
    env = {"KUBECONFIG": str(kubeconfig)}
    result = runner.invoke(app, ["submit", str(study_file), "--wait", "--timeout", "150"], env=env)
    assert result.exit_code == 0, result.output
    got = runner.invoke(app, ["get", "terminated", "-o", "yaml"], env=env)
    status = yaml.safe_load(got.stdout)["status"]
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert complete["reason"] == "TerminatorStopped", status
    assert complete["message"].startswith("the regret bound ")
    assert "below minError 1000 after 5 complete trials" in complete["message"]
    assert status["trials"]["complete"] == 5
