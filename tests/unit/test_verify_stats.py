"""The numbers verification shows: the t-interval (with and without SciPy) and the seeds."""

from __future__ import annotations

import builtins
import statistics
from typing import Any

import optuna
import pytest
from kubetune.engine.verify import REPEAT_ATTR, seed, t_interval


def test_the_interval_is_students_t_at_95_percent() -> None:
    values = [1.0, 1.2, 0.9, 1.1, 1.05]
    mean, low, high = t_interval(values)
    half = 2.776 * statistics.stdev(values) / len(values) ** 0.5  # t(0.975, 4)
    assert mean == pytest.approx(1.05)
    assert (low, high) == pytest.approx((mean - half, mean + half), rel=1e-3)
    assert t_interval([2.0]) == (2.0, None, None)  # one value: a mean, no interval


def test_without_scipy_the_table_gives_the_same_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [3.0, 2.5, 2.9, 3.4, 3.1, 2.7, 3.3]
    with_scipy = t_interval(values)
    real_import = builtins.__import__

    def no_scipy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("scipy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    assert t_interval(values) == pytest.approx(with_scipy, rel=1e-3)


def test_each_repeat_gets_its_own_seed_and_the_study_s_trials_share_one() -> None:
    own = optuna.trial.create_trial(value=1.0)
    repeats = [optuna.trial.create_trial(value=1.0, user_attrs={REPEAT_ATTR: k}) for k in (1, 2)]
    assert seed(own, base=7) == 7
    assert [seed(t, base=7) for t in repeats] == [8, 9]
