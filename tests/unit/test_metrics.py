"""Reading metrics from a program's output."""

from __future__ import annotations

import math

import pytest
from kubetune_trial.metrics import parse_line


@pytest.mark.parametrize(
    ("line", "values", "step"),
    [
        ("auc=0.93", {"auc": 0.93}, None),
        (
            "epoch=3 val_loss=0.412 val_auc=0.93\n",
            {"epoch": 3, "val_loss": 0.412, "val_auc": 0.93},
            3,
        ),
        ("step = 10, loss = 1e-3", {"step": 10, "loss": 0.001}, 10),
        ('{"step": 4, "val/acc": 0.5, "tag": "x", "ok": true}', {"step": 4, "val/acc": 0.5}, 4),
        ("rmse=-.5 r2=+1.5E2", {"rmse": -0.5, "r2": 150.0}, None),
        ("Epoch 1/10: loss=0.3", {"loss": 0.3}, None),
    ],
)
def test_metric_lines(line: str, values: dict[str, float], step: int | None) -> None:
    parsed = parse_line(line)
    assert parsed is not None
    assert parsed.values == values
    assert parsed.step == step


@pytest.mark.parametrize("line", ["", "training...", "lr=abc", "x=1.2.3", "{not json", "[1, 2]"])
def test_lines_without_metrics(line: str) -> None:
    assert parse_line(line) is None


def test_nan_and_infinity_are_read_as_such() -> None:
    parsed = parse_line("loss=nan acc=inf other=-Infinity")
    assert parsed is not None
    assert math.isnan(parsed.values["loss"])
    assert parsed.values["acc"] == math.inf
    assert parsed.values["other"] == -math.inf
