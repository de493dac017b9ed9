"""A built-in LightGBM or XGBoost trial checkpoints every ``everyRounds`` rounds by itself, and a
trial whose worker was killed goes on from its last checkpoint in another worker: it
boosts the rounds after it only, reports one unbroken curve, and ends with the value an
uninterrupted run reaches."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from builtin_helpers import builtin_spec
from kubetune.engine.checkpoints import CHECKPOINT_ATTR, RESUMED_FROM_ATTR
from kubetune.engine.recovery import fail_lost_trials
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from runner_helpers import start_worker  # as the runner tests start one

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


def kill_and_resume(
    first: Any, checkpoints: Path, worker_env: dict[str, str]
) -> tuple[optuna.trial.FrozenTrial, int, str]:
    """Kill ``first`` (a worker from start_builtin) once its trial has checkpointed,
    resume the trial as a supervisor does, run it in another worker; the resumed trial,
    the round it went on from and the second worker's output."""
    study = optuna.load_study(study_name=first.name, storage=first.storage_url)
    deadline = time.monotonic() + 90
    # Committed, not only written: a checkpoint counts once the trial points at it (a
    # file seen before that may be the one a kill leaves behind, and resuming from
    # round 0 is then right).
    while not any(CHECKPOINT_ATTR in t.user_attrs for t in study.get_trials(deepcopy=False)):
        assert first.process.poll() is None and time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.02)
    first.process.kill()  # as a node going away takes a pod: no chance to hand back
    first.wait()
    (lost,) = study.get_trials(states=(TrialState.RUNNING,))
    fail_lost_trials(study, [lost], "worker w0 was lost", retries=0, resume=True)

    second = start_worker(worker_env, first.name, "w1")
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 0, output
    resumed = next(t for t in study.get_trials() if t.user_attrs.get(RESUMED_FROM_ATTR) == 0)
    assert resumed.state == TrialState.COMPLETE, output
    # It went on after the checkpointed rounds: none of them ran again.
    line = next(ln for ln in output.splitlines() if "resuming from its checkpoint" in ln)
    restart_round = int(line.rsplit(" ", 1)[1])
    assert restart_round > 0, line
    assert not any(p.is_file() for p in checkpoints.rglob("*")), "the checkpoint was not removed"
    return resumed, restart_round, output


@pytest.mark.parametrize("model", ["lightgbm", "xgboost"])
def test_a_booster_trial_resumes_from_its_checkpoint(
    model: str,
    start_builtin: Callable[..., Any],
    worker_env: dict[str, str],
    storage_url: str,
    tmp_path: Path,
) -> None:
    checkpoints = tmp_path / "checkpoints"
    first = start_builtin(spec(model, checkpoints), enqueue=[PARAMS[model]])
    resumed, restart_round, _ = kill_and_resume(first, checkpoints, worker_env)
    assert restart_round % EVERY == 0
    assert sorted(resumed.intermediate_values) == list(range(ROUNDS))

    whole = start_builtin(spec(model, tmp_path / "other"), enqueue=[PARAMS[model]]).wait()
    assert whole.returncode == 0, whole.output
    assert resumed.value == pytest.approx(whole.study.best_value, rel=1e-9)


@pytest.mark.slow(seconds=30)
def test_a_lightning_trial_resumes_from_its_checkpoint(
    start_builtin: Callable[..., Any], worker_env: dict[str, str], tmp_path: Path
) -> None:
    """The epochs before the checkpoint are not trained again and the curve is whole (the
    value is not compared: Lightning does not keep the data loader's shuffling state)."""
    epochs, every = 20, 2
    study = builtin_spec(
        {
            "model": "lightning",
            "data": {"dataset": "sklearn:breast_cancer"},
            "maxEpochs": epochs,
            "params": {"batch_size": 32, "n_layers": 1},
        },
        objective={"direction": "minimize", "metric": "logloss"},
        pruner={"name": "none"},
        budget={"maxTrials": 1},
    )
    checkpoints = tmp_path / "checkpoints"
    study["trial"]["checkpoints"] = {"path": str(checkpoints), "everyRounds": every}
    first = start_builtin(study)
    resumed, restart_epoch, output = kill_and_resume(first, checkpoints, worker_env)
    assert restart_epoch % every == 0
    # Saved after a whole epoch and its validation: Lightning goes on at the next epoch.
    assert "before the epoch ended" not in output, output
    assert sorted(resumed.intermediate_values) == list(range(epochs))
