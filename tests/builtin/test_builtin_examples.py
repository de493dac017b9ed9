"""The example Studies of built-in models pass every check a worker makes
before importing the model's library."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubetune.study.spec import load_study
from kubetune_trial.builtin.data import load_table, split
from kubetune_trial.builtin.objective import check_stepwise, resolve_metric
from kubetune_trial.builtin.space import effective_space

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("builtin-*.yaml"))


def test_there_is_an_example_per_model() -> None:
    models = {load_study(path).spec.trial.builtin.model for path in EXAMPLES}  # type: ignore[union-attr]
    assert models == {"lightgbm", "xgboost", "lightning"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_passes_the_checks(path: Path) -> None:
    spec = load_study(path).spec
    builtin = spec.trial.builtin
    assert builtin is not None
    resolve_metric(spec)
    if builtin.tuner == "stepwise":
        check_stepwise(spec)
    else:
        assert effective_space(spec)
    table = load_table(builtin.data, builtin.task)
    assert split(table, builtin.validation, builtin.seed)
