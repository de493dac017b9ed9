"""A CSV with a text column: the saved model names the CSV's columns, and best.json
holds the mapping from text to codes, so new rows can be encoded as in training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from builtin_helpers import builtin_spec

CITIES = ["Paris", "Oslo", "Lima", "Rome"]
#: The label is decided by the city alone, so a model that learned it predicts new rows exactly.
POSITIVE = {"Paris", "Lima"}


def _rows(count: int, offset: int = 0) -> list[dict[str, object]]:
    return [
        {
            "city": CITIES[(i + offset) % len(CITIES)],
            "floor area": 40 + (i * 7) % 50,
            "label": "yes" if CITIES[(i + offset) % len(CITIES)] in POSITIVE else "no",
        }
        for i in range(count)
    ]


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["city", "floor area", "label"])
        writer.writeheader()
        writer.writerows(rows)


def _encode(rows: list[dict[str, object]], best: dict) -> np.ndarray:
    """New rows encoded the way best.json says: features in its order, text by its mapping."""
    categories = best["categories"]
    return np.array(
        [
            [
                categories[name].index(row[name]) if name in categories else float(row[name])
                for name in best["features"]
            ]
            for row in rows
        ],
        dtype=float,
    )


@pytest.mark.parametrize("model", ["lightgbm", "xgboost"])
def test_text_columns_are_saved_with_the_model(run_builtin, tmp_path: Path, model: str) -> None:
    data = tmp_path / "homes.csv"
    _write_csv(data, _rows(80))
    models = tmp_path / "models"
    fixed = (
        {"num_leaves": 8, "min_child_samples": 2, "learning_rate": 0.3, "num_threads": 1}
        if model == "lightgbm"
        else {
            "max_depth": 4,
            "learning_rate": 0.3,
            "min_child_weight": 0.1,
            "subsample": 1.0,
            "colsample_bytree": 1.0,
            "gamma": 1e-8,
            "nthread": 1,
        }
    )
    spec = builtin_spec(
        {
            "model": model,
            "data": {"path": str(data), "target": "label"},
            "maxEpochs": 30,
            "params": fixed,
            "saveModel": {"path": str(models)},
        },
        objective={"direction": "maximize", "metric": "accuracy"},
        pruner={"name": "none"},
        budget={"maxTrials": 1},
    )
    run = run_builtin(spec)
    assert run.returncode == 0, run.output

    best = json.loads((models / "best.json").read_text())
    assert best["features"] == ["city", "floor area"]
    assert best["categories"] == {"city": sorted(CITIES)}
    assert best["classes"] == ["no", "yes"]

    if model == "lightgbm":
        import lightgbm

        text = (models / "model.txt").read_text()
        assert "feature_names=city floor_area" in text
        assert "Column_0" not in text
        predict = lightgbm.Booster(model_file=str(models / "model.txt")).predict
    else:
        import xgboost

        saved = json.loads((models / "model.json").read_text())
        assert saved["learner"]["feature_names"] == ["city", "floor_area"]
        booster = xgboost.Booster(model_file=str(models / "model.json"))

        def predict(rows: np.ndarray) -> np.ndarray:
            return booster.predict(xgboost.DMatrix(rows, feature_names=["city", "floor_area"]))

    new_rows = _rows(12, offset=1)
    predicted = predict(_encode(new_rows, best)) >= 0.5
    expected = [best["classes"].index(row["label"]) == 1 for row in new_rows]
    assert list(predicted) == expected
