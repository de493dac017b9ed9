"""What a built-in objective checks before any trial, each problem naming its spec field."""

from __future__ import annotations

from pathlib import Path

import pytest
from builtin_helpers import builtin_spec
from kubetune.spec import validate_spec
from kubetune_trial.builtin import load_builtin
from kubetune_trial.objectives import ObjectiveNotLoadable


def _spec(builtin: dict, **spec) -> object:
    base = {"model": "lightgbm", "data": {"dataset": "sklearn:breast_cancer"}}
    return validate_spec(builtin_spec({**base, **builtin}, **spec))


def _refusal(spec: object) -> ObjectiveNotLoadable:
    with pytest.raises(ObjectiveNotLoadable) as caught:
        load_builtin(spec, "s")  # type: ignore[arg-type]
    return caught.value


def test_the_direction_must_agree_with_the_metric() -> None:
    error = _refusal(_spec({}, objective={"direction": "minimize", "metric": "auc"}))
    assert str(error) == (
        "spec.objective.direction: must be maximize for metric auc (higher is better); "
        "it is minimize"
    )
    error = _refusal(_spec({}, objective={"metric": "accuracy"}))
    assert error.field == "spec.objective.direction"
    assert "unset, which means minimize" in error.reason
    error = _refusal(_spec({"task": "regression"}, objective={"direction": "maximize"}))
    assert error.field == "spec.objective.direction"  # the default metric rmse is minimized


def test_the_metric_must_be_known_and_fit_the_task() -> None:
    error = _refusal(_spec({}, objective={"direction": "maximize", "metric": "precision"}))
    assert error.field == "spec.objective.metric"
    assert "auc, logloss, accuracy, f1, rmse, mae, r2" in error.reason
    error = _refusal(_spec({}, objective={"direction": "minimize", "metric": "rmse"}))
    assert error.field == "spec.objective.metric"
    assert "regression metric" in error.reason


def test_data_problems_name_the_data_field(tmp_path: Path) -> None:
    good = {"objective": {"direction": "minimize", "metric": "logloss"}}
    error = _refusal(_spec({"data": {"dataset": "sklearn:california_housing"}}, **good))
    assert error.field == "spec.trial.builtin.data.dataset"
    assert "sklearn:wine" in error.reason
    missing = tmp_path / "nope.csv"
    error = _refusal(_spec({"data": {"path": str(missing), "target": "y"}}, **good))
    assert error.field == "spec.trial.builtin.data.path"
    assert "does not exist" in error.reason
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\n5,6\n7,8\n")
    error = _refusal(_spec({"data": {"path": str(tmp_path / "t.csv"), "target": "y"}}, **good))
    assert error.field == "spec.trial.builtin.data.target"
    assert "['a', 'b']" in error.reason
    error = _refusal(
        _spec({"task": "classification", "data": {"dataset": "sklearn:diabetes"}}, **good)
    )
    assert error.field == "spec.trial.builtin.task"


def test_search_space_conflicts_and_unknown_mlp_names() -> None:
    error = _refusal(
        _spec(
            {"params": {"num_leaves": 31}},
            objective={"direction": "minimize", "metric": "logloss"},
            searchSpace={"num_leaves": {"type": "int", "low": 2, "high": 8}},
        )
    )
    assert error.field == "spec.trial.builtin.params.num_leaves"
    error = _refusal(
        _spec(
            {"model": "lightning"},
            objective={"direction": "minimize", "metric": "logloss"},
            searchSpace={"momentum": {"type": "float", "low": 0.5, "high": 0.9}},
        )
    )
    assert error.field == "spec.searchSpace.momentum"
    assert "hidden_size" in error.reason


def test_stepwise_needs_an_empty_search_space_and_a_lightgbm_metric() -> None:
    stepwise = {"tuner": "stepwise"}
    error = _refusal(
        _spec(
            stepwise,
            objective={"direction": "minimize", "metric": "logloss"},
            searchSpace={"num_leaves": {"type": "int", "low": 2, "high": 8}},
        )
    )
    assert error.field == "spec.searchSpace"
    error = _refusal(_spec(stepwise, objective={"direction": "maximize", "metric": "f1"}))
    assert error.field == "spec.objective.metric"
    assert "tuner: stepwise" in error.reason


def test_cuda_asked_on_a_machine_without_it() -> None:
    error = _refusal(
        _spec({"device": "cuda"}, objective={"direction": "minimize", "metric": "logloss"})
    )
    assert error.field == "spec.trial.builtin.device"


def test_the_worker_exits_3_before_any_trial(run_builtin) -> None:
    run = run_builtin(
        builtin_spec(
            {"model": "xgboost", "data": {"dataset": "sklearn:wine"}},
            objective={"direction": "minimize", "metric": "f1"},
        )
    )
    assert run.returncode == 3
    assert "spec.objective.direction: must be maximize for metric f1" in run.output
    assert run.states() == []
