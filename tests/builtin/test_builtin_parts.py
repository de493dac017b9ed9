"""The parts of the built-in objectives, without a worker: metrics, data,
search-space merging, device choice, and keeping the best model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from kubetune.study.spec import BuiltinData, SaveModel, Validation, validate_spec
from kubetune_trial.builtin import device
from kubetune_trial.builtin.data import load_table, split
from kubetune_trial.builtin.metrics import METRICS
from kubetune_trial.builtin.saving import ARTIFACT_ATTR, INFO_ARTIFACT_ATTR, ModelKeeper
from kubetune_trial.builtin.space import LIGHTGBM_SPACE, effective_space
from kubetune_trial.objectives import ObjectiveNotLoadable


def test_metrics_agree_with_scikit_learn_and_know_their_direction() -> None:
    y = np.array([0, 1, 1, 0])
    p = np.array([0.1, 0.8, 0.4, 0.3])
    assert METRICS["auc"].compute(y, p) == 1.0
    assert METRICS["accuracy"].compute(y, p) == 0.75
    assert METRICS["f1"].compute(y, p) == pytest.approx(2 / 3)
    assert METRICS["logloss"].compute(y, p) == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.7])))
    three = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    assert METRICS["accuracy"].compute(np.array([0, 1, 2]), three) == 1.0
    assert METRICS["rmse"].compute(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 1.0
    assert [m.direction for m in METRICS.values()] == [
        "maximize", "minimize", "maximize", "maximize", "minimize", "minimize", "maximize",
    ]  # fmt: skip


def test_csv_and_parquet_tables(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    table = pa.table(
        {
            "size": [1.0, 2.0, None, 4.0, 5.0, 6.0],
            "colour": ["red", "blue", "red", None, "blue", "red"],
            "flag": [True, False, True, True, False, False],
            "label": ["cat", "dog", "cat", "dog", "cat", "dog"],
        }
    )
    pyarrow.csv.write_csv(table, tmp_path / "t.csv")
    pyarrow.parquet.write_table(table, tmp_path / "t.parquet")
    for name in ("t.csv", "t.parquet"):
        data = BuiltinData(path=str(tmp_path / name), target="label")
        loaded = load_table(data, "classification")
        assert loaded.feature_names == ["size", "colour", "flag"]
        assert loaded.classes == ["cat", "dog"]
        assert loaded.target.tolist() == [0, 1, 0, 1, 0, 1]
        assert math.isnan(loaded.features[2, 0]) and math.isnan(loaded.features[3, 1])
        assert loaded.features[0, 1] == loaded.features[2, 1]  # "red" has one code
    # A target with missing values is refused.
    with pytest.raises(ObjectiveNotLoadable, match="missing values"):
        load_table(BuiltinData(path=str(tmp_path / "t.csv"), target="size"), "regression")


def test_splits_are_stratified_and_reproducible() -> None:
    table = load_table(BuiltinData(dataset="sklearn:breast_cancer"), "classification")
    ((_train, valid),) = split(table, Validation(test_size=0.25), seed=3)
    assert len(valid) == math.ceil(0.25 * len(table.target))
    assert abs(table.target[valid].mean() - table.target.mean()) < 0.02
    (again,) = split(table, Validation(test_size=0.25), seed=3)
    assert np.array_equal(again[1], valid)
    folds = split(table, Validation(kind="kfold", folds=4), seed=0)
    assert len(folds) == 4
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(569))


def _lgbm(search_space: dict | None = None, **builtin: object) -> object:
    return validate_spec(
        {
            "searchSpace": search_space or {},
            "trial": {
                "builtin": {"model": "lightgbm", "data": {"dataset": "sklearn:wine"}, **builtin}
            },
        }
    )


def test_the_search_space_merge_rule() -> None:
    assert effective_space(_lgbm()) == LIGHTGBM_SPACE
    narrowed = effective_space(
        _lgbm(
            {
                "num_leaves": {"type": "int", "low": 8, "high": 16},
                "max_bin": {"type": "categorical", "choices": [63, 255]},
            },
            params={"bagging_freq": 0, "bagging_fraction": 1.0},
        )
    )
    assert narrowed["num_leaves"].high == 16  # replaced by name
    assert narrowed["max_bin"].choices == [63, 255]  # added, passed to LightGBM
    assert "bagging_freq" not in narrowed and "bagging_fraction" not in narrowed  # fixed
    assert narrowed["learning_rate"] == LIGHTGBM_SPACE["learning_rate"]  # the rest stays
    only = effective_space(
        _lgbm({"num_leaves": {"type": "int", "low": 8, "high": 16}}, defaultSearchSpace=False)
    )
    assert list(only) == ["num_leaves"]


def test_device_decisions_with_and_without_a_gpu() -> None:
    cpu = device.Facts(cuda_devices=0, xgboost_cuda=False, lightgbm_gpu=False)
    gpu = device.Facts(cuda_devices=2, xgboost_cuda=True, lightgbm_gpu=True)
    assert device.decide("xgboost", "auto", cpu).params == {"device": "cpu"}
    assert device.decide("xgboost", "auto", gpu).params == {"device": "cuda"}
    assert device.decide("xgboost", "cpu", gpu).params == {"device": "cpu"}
    assert device.decide("lightgbm", "auto", gpu).params == {"device_type": "gpu"}
    assert device.decide("lightning", "auto", gpu).params == {"accelerator": "auto", "devices": 1}
    assert device.decide("lightning", "auto", cpu).params == {"accelerator": "cpu", "devices": 1}
    assert device.decide("lightning", "cuda", gpu).device == "cuda"
    with pytest.raises(ObjectiveNotLoadable, match="no CUDA device is visible"):
        device.decide("lightning", "cuda", cpu)
    no_gpu_build = device.Facts(cuda_devices=1, xgboost_cuda=False, lightgbm_gpu=False)
    assert device.decide("lightgbm", "auto", no_gpu_build).params == {"device_type": "cpu"}
    with pytest.raises(ObjectiveNotLoadable, match="installed xgboost has no GPU support"):
        device.decide("xgboost", "cuda", no_gpu_build)


def test_probe_sees_cuda_faked_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    import xgboost

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    facts = device.probe("lightning")
    assert facts.cuda_devices == 1
    assert device.decide("lightning", "auto", facts).device == "cuda"

    # The boosters look for the device files the NVIDIA device plugin mounts.
    monkeypatch.setattr(device, "_dev_entries", lambda: ["nvidia0", "nvidiactl", "nvidia-uvm"])
    monkeypatch.setattr(xgboost, "build_info", lambda: {"USE_CUDA": True})
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    facts = device.probe("xgboost")
    assert facts == device.Facts(cuda_devices=1, xgboost_cuda=True, lightgbm_gpu=False)
    assert device.decide("xgboost", "auto", facts).params == {"device": "cuda"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device.probe("xgboost").cuda_devices == 0


def _trial(study: optuna.Study, value: float) -> optuna.Trial:
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr("value", value)
    return trial


def test_a_directory_keeps_only_the_best_model(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    keeper = ModelKeeper(
        SaveModel(path=str(tmp_path / "m")), "s", maximize=True, model_file="model.txt"
    )
    written: list[float] = []

    def offer(value: float) -> bool:
        trial = _trial(study, value)
        saved = keeper.offer(
            trial, value, lambda p: (written.append(value), p.write_text(str(value))), {}
        )
        study.tell(trial, value)
        return saved

    assert [offer(v) for v in (0.5, 0.7, 0.6, 0.9, float("nan"))] == [
        True, True, False, True, False,
    ]  # fmt: skip
    assert written == [0.5, 0.7, 0.9]  # a trial that does not win writes nothing
    assert (tmp_path / "m" / "model.txt").read_text() == "0.9"
    best = json.loads((tmp_path / "m" / "best.json").read_text())
    assert best["trial"] == 3 and best["value"] == 0.9 and best["study"] == "s"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [".lock", "best.json", "model.txt"]
    with pytest.raises(ObjectiveNotLoadable, match="holds the model of study 's'"):
        ModelKeeper(SaveModel(path=str(tmp_path / "m")), "other", maximize=True, model_file="x")


def test_an_artifact_store_keeps_only_the_best_upload(tmp_path: Path) -> None:
    study = optuna.create_study(direction="minimize")
    store = tmp_path / "store"
    keeper = ModelKeeper(
        SaveModel(artifactStore=str(store)), "s", maximize=False, model_file="model.json"
    )
    results = []
    for value in (3.0, 2.0, 2.5, 1.0):
        trial = _trial(study, value)
        results.append(keeper.offer(trial, value, lambda p, v=value: p.write_text(str(v)), {}))
        study.tell(trial, value)
    assert results == [True, True, False, True]
    best = study.best_trial
    assert best.number == 3
    model, record = best.user_attrs[ARTIFACT_ATTR], best.user_attrs[INFO_ARTIFACT_ATTR]
    assert sorted(p.name for p in store.iterdir()) == sorted([model, record])
    assert (store / model).read_text() == "1.0"
    assert json.loads((store / record).read_text())["trial"] == 3
