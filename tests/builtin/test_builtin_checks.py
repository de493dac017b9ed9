"""What a built-in objective checks before any trial, each problem naming its spec field.

The rules that need only the spec are the core's (:mod:`kubetune.study.builtin_rules`):
the spec's validation refuses them, and a worker given a spec that skipped it
(one stored by an older kubetune) refuses them too. The rules that need the
data or the machine are the worker's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from builtin_helpers import builtin_spec
from kubetune.study.spec import SpecError, StudySpec, validate_spec
from kubetune_trial.builtin import load_builtin
from kubetune_trial.objectives import ObjectiveNotLoadable

LOGLOSS = {"objective": {"direction": "minimize", "metric": "logloss"}}


def _document(builtin: dict[str, Any], **spec: Any) -> dict[str, Any]:
    base = {"model": "lightgbm", "data": {"dataset": "sklearn:breast_cancer"}}
    return builtin_spec({**base, **builtin}, **spec)


def _spec(builtin: dict[str, Any], **spec: Any) -> StudySpec:
    return validate_spec(_document(builtin, **spec))


def _refused(builtin: dict[str, Any], **spec: Any) -> tuple[str, str]:
    """The (field, reason) the spec's validation gives."""
    with pytest.raises(SpecError) as caught:
        _spec(builtin, **spec)
    assert len(caught.value.problems) == 1
    return caught.value.problems[0]


def _refusal(spec: StudySpec) -> ObjectiveNotLoadable:
    with pytest.raises(ObjectiveNotLoadable) as caught:
        load_builtin(spec, "s")
    return caught.value


def test_the_direction_must_agree_with_the_metric() -> None:
    field, reason = _refused({}, objective={"direction": "minimize", "metric": "auc"})
    assert f"{field}: {reason}" == (
        "spec.objective.direction: must be maximize for metric auc (higher is better); "
        "it is minimize"
    )
    field, reason = _refused({}, objective={"metric": "accuracy"})
    assert field == "spec.objective.direction"
    assert "unset, which means minimize" in reason
    field, _ = _refused({"task": "regression"}, objective={"direction": "maximize"})
    assert field == "spec.objective.direction"  # the default metric rmse is minimized


def test_the_metric_must_be_known_and_fit_the_task() -> None:
    field, reason = _refused({}, objective={"direction": "maximize", "metric": "precision"})
    assert field == "spec.objective.metric"
    assert "auc, logloss, accuracy, f1, rmse, mae, r2" in reason
    field, reason = _refused({}, objective={"direction": "minimize", "metric": "rmse"})
    assert field == "spec.objective.metric"
    assert "regression metric" in reason


def test_data_sources_no_worker_could_read() -> None:
    field, reason = _refused({"data": {"dataset": "sklearn:california_housing"}}, **LOGLOSS)
    assert field == "spec.trial.builtin.data.dataset"
    assert "sklearn:wine" in reason
    field, _ = _refused({"data": {"dataset": "sklearn:wine", "target": "label"}}, **LOGLOSS)
    assert field == "spec.trial.builtin.data.target"
    field, reason = _refused({"data": {"path": "data/train.txt", "target": "y"}}, **LOGLOSS)
    assert field == "spec.trial.builtin.data.path"
    assert "neither .csv nor .parquet" in reason


def test_data_problems_name_the_data_field(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    error = _refusal(_spec({"data": {"path": str(missing), "target": "y"}}, **LOGLOSS))
    assert error.field == "spec.trial.builtin.data.path"
    assert "does not exist" in error.reason
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\n5,6\n7,8\n")
    error = _refusal(_spec({"data": {"path": str(tmp_path / "t.csv"), "target": "y"}}, **LOGLOSS))
    assert error.field == "spec.trial.builtin.data.target"
    assert "['a', 'b']" in error.reason
    error = _refusal(
        _spec({"task": "classification", "data": {"dataset": "sklearn:diabetes"}}, **LOGLOSS)
    )
    assert error.field == "spec.trial.builtin.task"


def test_a_missing_file_is_explained_for_where_the_worker_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    spec = _spec({"data": {"path": "data/train.csv", "target": "y"}}, **LOGLOSS)
    local = _refusal(spec).reason
    assert "does not exist on this machine" in local
    assert f"relative to {tmp_path}" in local
    assert "volume" not in local
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # as in every pod
    assert "is the volume mounted" in _refusal(spec).reason


def test_search_space_conflicts_unknown_mlp_names_and_wrong_kinds() -> None:
    field, _ = _refused(
        {"params": {"num_leaves": 31}},
        searchSpace={"num_leaves": {"type": "int", "low": 2, "high": 8}},
        **LOGLOSS,
    )
    assert field == "spec.trial.builtin.params.num_leaves"
    field, reason = _refused(
        {"model": "lightning"},
        searchSpace={"momentum": {"type": "float", "low": 0.5, "high": 0.9}},
        **LOGLOSS,
    )
    assert field == "spec.searchSpace.momentum"
    assert "hidden_size" in reason
    # LightGBM refuses num_leaves=31.0 ("should be of type int"): every trial would fail.
    field, reason = _refused(
        {}, searchSpace={"num_leaves": {"type": "float", "low": 8, "high": 64}}, **LOGLOSS
    )
    assert field == "spec.searchSpace.num_leaves"
    assert "takes an integer" in reason
    field, _ = _refused({"model": "xgboost", "params": {"max_depth": 4.5}}, **LOGLOSS)
    assert field == "spec.trial.builtin.params.max_depth"
    field, _ = _refused(
        {"model": "lightning"},
        searchSpace={"batch_size": {"type": "categorical", "choices": [32, "big"]}},
        **LOGLOSS,
    )
    assert field == "spec.searchSpace.batch_size"
    # What the models take is accepted.
    _spec(
        {"params": {"learning_rate": 1}},
        searchSpace={"max_bin": {"type": "int", "low": 63, "high": 255}},
        **LOGLOSS,
    )


def test_stepwise_needs_an_empty_search_space_one_worker_and_a_lightgbm_metric() -> None:
    stepwise = {"tuner": "stepwise"}
    field, _ = _refused(
        stepwise, searchSpace={"num_leaves": {"type": "int", "low": 2, "high": 8}}, **LOGLOSS
    )
    assert field == "spec.searchSpace"
    field, _ = _refused(stepwise, budget={"maxTrials": 3, "parallelism": 2}, **LOGLOSS)
    assert field == "spec.budget.parallelism"
    field, reason = _refused(stepwise, objective={"direction": "maximize", "metric": "f1"})
    assert field == "spec.objective.metric"
    assert "tuner: stepwise" in reason


def test_an_artifact_store_must_be_a_directory() -> None:
    field, _ = _refused({"saveModel": {"artifactStore": "s3://bucket/models"}}, **LOGLOSS)
    assert field == "spec.trial.builtin.saveModel.artifactStore"


def test_cuda_asked_on_a_machine_without_it() -> None:
    error = _refusal(_spec({"device": "cuda"}, **LOGLOSS))
    assert error.field == "spec.trial.builtin.device"


def test_the_worker_exits_3_before_any_trial_on_a_stored_spec_that_breaks_a_rule(
    run_builtin,
) -> None:
    good = builtin_spec(
        {"model": "xgboost", "data": {"dataset": "sklearn:wine"}},
        objective={"direction": "maximize", "metric": "f1"},
    )
    stored = validate_spec(good).to_dict()
    stored["objective"]["direction"] = "minimize"
    run = run_builtin(good, stored=stored)
    assert run.returncode == 3
    assert "spec.objective.direction: must be maximize for metric f1" in run.output
    assert run.states() == []


def test_a_grid_over_the_searchspace_alone_is_accepted_and_runs(run_builtin) -> None:
    grid = {
        "sampler": {"name": "grid"},
        "searchSpace": {"num_leaves": {"type": "int", "low": 4, "high": 8, "step": 4}},
        "budget": {"maxTrials": 2},
        **LOGLOSS,
    }
    field, _ = _refused({}, **grid)
    assert field == "spec.sampler.name"
    spec = _document(
        {"defaultSearchSpace": False, "maxEpochs": 3, "params": {"num_threads": 1}}, **grid
    )
    run = run_builtin(spec)
    assert run.returncode == 0, run.output
    assert run.states() == ["COMPLETE", "COMPLETE"]
