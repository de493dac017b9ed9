"""A built-in LightGBM or XGBoost trial checkpoints every ``everyRounds`` rounds by itself, and a
trial whose worker was killed goes on from its last checkpoint in another worker: it
boosts the rounds after it only, reports one unbroken curve, and ends with the value an
uninterrupted run reaches."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from builtin_helpers import builtin_spec
from conftest import StartedWorker
from kubetune.engine.checkpoints import RESUMED_FROM_ATTR
from kubetune.engine.recovery import fail_lost_trials
from optuna.trial import TrialState

ROUNDS, EVERY = 800, 10
#: Fractions of 1: no bagging nor feature sampling, so the boosting is deterministic.
PARAMS = {
    "lightgbm": {
        "learning_rate": 0.01,
        "num_leaves": 8,
        "min_child_samples": 10,
        "feature_fraction": 1.0,
        "bagging_fraction": 1.0,
        "bagging_freq": 1,
        "lambda_l1": 1e-3,
        "lambda_l2": 1e-3,
    },
    "xgboost": {
        "learning_rate": 0.01,
        "max_depth": 3,
        "min_child_weight": 1.0,
        "subsample": 1.0,
        "colsample_bytree": 1.0,
        "lambda": 1e-3,
        "alpha": 1e-3,
        "gamma": 1e-3,
    },
}


def spec(model: str, checkpoints: Path) -> dict[str, Any]:
    study = builtin_spec(
        {
            "model": model,
            "data": {"dataset": "sklearn:breast_cancer"},
            "maxEpochs": ROUNDS,
            "params": {"nthread" if model == "xgboost" else "num_threads": 1},
        },
        objective={"direction": "minimize", "metric": "logloss"},
        pruner={"name": "none"},
        budget={"maxTrials": 1},
    )
    study["trial"]["checkpoints"] = {"path": str(checkpoints), "everyRounds": EVERY}
    return study


def another_worker(first: StartedWorker, worker_env: dict[str, str], cwd: Path) -> StartedWorker:
    """A second worker process on the first one's study."""
    env = {**worker_env, "KUBETUNE_STUDY_NAME": first.name, "KUBETUNE_WORKER_NAME": "w1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "kubetune_trial"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return StartedWorker(process, first.name, first.storage_url)


@pytest.mark.parametrize("model", ["lightgbm", "xgboost"])
def test_a_booster_trial_resumes_from_its_checkpoint(
    model: str,
    start_builtin: Callable[..., StartedWorker],
    worker_env: dict[str, str],
    storage_url: str,
    tmp_path: Path,
) -> None:
    checkpoints = tmp_path / "checkpoints"
    first = start_builtin(spec(model, checkpoints), enqueue=[PARAMS[model]])
    deadline = time.monotonic() + 60
    while not any(p.is_file() for p in checkpoints.rglob("*")):
        assert first.process.poll() is None and time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.02)
    first.process.kill()  # as a node going away takes a pod: no chance to hand back
    first.wait()
    study = optuna.load_study(study_name=first.name, storage=storage_url)
    (lost,) = study.get_trials(states=(TrialState.RUNNING,))
    fail_lost_trials(study, [lost], "worker w0 was lost", retries=0, resume=True)

    second = another_worker(first, worker_env, tmp_path).wait()
    assert second.returncode == 0, second.output
    resumed = next(t for t in second.study.trials if t.user_attrs.get(RESUMED_FROM_ATTR) == 0)
    assert resumed.state == TrialState.COMPLETE, second.output
    # Boosting went on after the checkpointed rounds: none of them ran again.
    line = next(ln for ln in second.output.splitlines() if "resuming from its checkpoint" in ln)
    restart_round = int(line.rsplit(" ", 1)[1])
    assert restart_round > 0 and restart_round % EVERY == 0, line
    assert sorted(resumed.intermediate_values) == list(range(ROUNDS))
    assert not any(p.is_file() for p in checkpoints.rglob("*")), "the checkpoint was not removed"

    whole = start_builtin(spec(model, tmp_path / "other"), enqueue=[PARAMS[model]]).wait()
    assert whole.returncode == 0, whole.output
    assert resumed.value == pytest.approx(whole.study.best_value, rel=1e-9)
