"""Spend budgets and stop rules (issue 18, points 1 and 2) under ``kubetune run``, as a
user runs the examples: real workers, a real PostgreSQL, the spend and the reason shown."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from kubetune.engine.budget import stop_reason
from kubetune.engine.ledger import TrialLedger
from kubetune.study.spec import validate_spec
from kubetune_cli import kubetune
from optuna.trial import TrialState

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]


def run(storage_url: str, path: Path, output: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}
    best_params = str(output / "best_params.json")
    return kubetune(env, REPO, "run", str(path), "--storage", storage_url, "--output", best_params)


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "examples" / name).read_text(encoding="utf-8"))


def trial_seconds(trials: list[optuna.trial.FrozenTrial]) -> float:
    return sum(
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.datetime_start and t.datetime_complete
    )


def test_spend_budget_example_stops_when_the_cpu_hours_are_spent(
    storage_url: str, tmp_path: Path
) -> None:
    result = run(storage_url, REPO / "examples" / "spend-budget.yaml", tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"BudgetSpent: spent 0\.005\d* of 0\.005 CPU-hours", output), output
    study = optuna.load_study(study_name="spend-budget", storage=storage_url)
    trials = study.get_trials(deepcopy=False)
    # Each trial runs about a second on 2 CPUs: the 18 CPU-seconds last about 9 trials.
    assert 5 <= len(trials) <= 14, len(trials)
    spent_cpu_hours = trial_seconds(trials) * 2 / 3600
    assert 0.005 <= spent_cpu_hours < 0.005 + 2 * 2.5 / 3600
    # The summary's spend is the trials' own run time x the requests, cost at the price.
    assert f"spent {spent_cpu_hours:.3g} CPU-h, cost {spent_cpu_hours * 0.04:.4g}" in output
    # Every trial ended with a state; one the budget's end stopped says so.
    for trial in trials:
        assert trial.state.is_finished()
        if trial.state == TrialState.FAIL:
            assert "BudgetSpent" in trial.user_attrs["kubetune.fail_reason"]
    # Run again: the budget stays spent, nothing runs.
    again = run(storage_url, REPO / "examples" / "spend-budget.yaml", tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to run" in again.stdout
    assert len(study.get_trials(deepcopy=False)) == len(trials)


def test_plateau_example_stops_well_before_max_trials(storage_url: str, tmp_path: Path) -> None:
    result = run(storage_url, REPO / "examples" / "stop-plateau.yaml", tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Plateau: no improvement larger than 0.001 in the last 15 trials" in output
    study = optuna.load_study(study_name="stop-plateau", storage=storage_url)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) < 150, len(trials)
    # The rule holds on the stored trials: the best 15 trials before the end is within
    # 0.001 of the best at the end, and no earlier window of 15 was flat.
    values = [t.value for t in trials if t.state == TrialState.COMPLETE]
    best_now, best_then = min(values), min(values[:-15])
    assert best_then - best_now <= 0.001
    spec = validate_spec(example("stop-plateau.yaml")["spec"])
    ledger = TrialLedger(["minimize"])
    for count in range(1, len(trials)):
        ledger.update(trials[:count])
        assert stop_reason(spec, ledger.spending, now=0, deadline=None) is None, count
    # Asked for 3 more, it runs them: the rule that ended it is set aside.
    more = kubetune(
        dict(os.environ),
        REPO,
        "run",
        "examples/stop-plateau.yaml",
        "--storage",
        storage_url,
        "--trials",
        "3",
        "--output",
        str(tmp_path / "more.json"),
    )
    assert more.returncode == 0, more.stdout + more.stderr
    assert "MaxTrialsReached" in more.stdout
    assert len(study.get_trials(deepcopy=False)) == len(trials) + 3


def test_a_plateau_rule_that_never_fires_leaves_max_trials_to_stop(
    storage_url: str, tmp_path: Path
) -> None:
    document = example("stop-plateau.yaml")
    document["metadata"]["name"] = "keeps-improving"
    # Trial n's value is -n: every trial improves on the last by 1, more than minDelta.
    document["spec"]["trial"]["python"] = "kubetune_test_keeps_improving:objective"
    document["spec"]["budget"]["maxTrials"] = 25
    document["spec"]["budget"]["stopWhen"]["plateau"] = {"trials": 3, "minDelta": 0.5}
    (tmp_path / "kubetune_test_keeps_improving.py").write_text(
        "def objective(trial):\n    return -float(trial.number)\n", encoding="utf-8"
    )
    path = tmp_path / "keeps-improving.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    env = {**os.environ, "COLUMNS": "250", "PYTHONPATH": str(tmp_path)}
    result = kubetune(env, tmp_path, "run", str(path), "--storage", storage_url)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "MaxTrialsReached: 25 of maxTrials 25 trials ran" in output
    assert "Plateau" not in output
    study = optuna.load_study(study_name="keeps-improving", storage=storage_url)
    assert len(study.trials) == 25


def test_terminator_example_stops_on_the_regret_bound(storage_url: str, tmp_path: Path) -> None:
    result = run(storage_url, REPO / "examples" / "stop-terminator.yaml", tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "TerminatorStopped: the regret bound" in output
    assert "cross-validation error" in output
    study = optuna.load_study(study_name="stop-terminator", storage=storage_url)
    trials = study.get_trials(deepcopy=False)
    assert 5 <= len(trials) < 60, len(trials)
    assert all(t.state == TrialState.COMPLETE for t in trials), [
        (t.number, t.state.name, t.user_attrs) for t in trials
    ]
