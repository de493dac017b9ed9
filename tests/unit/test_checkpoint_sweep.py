"""Checkpoints a worker never removed (its trial was failed for good or retried from
the start by a supervisor) are swept once nothing can resume from them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from kubetune.engine.checkpoints import (
    CHECKPOINT_ATTR,
    CHECKPOINT_OF_ATTR,
    directory_for,
    sweep,
)
from kubetune.study.spec import CheckpointSpec
from optuna.trial import FrozenTrial, TrialState, create_trial

NOW = dt.datetime(2026, 1, 1, 12, 0)


def trial(number: int, state: TrialState, ended_minutes_ago: float, **attrs: Any) -> FrozenTrial:
    made = create_trial(state=state, user_attrs=attrs, value=None)
    made.number = number
    made.datetime_complete = (
        NOW - dt.timedelta(minutes=ended_minutes_ago) if state.is_finished() else None
    )
    return made


def test_sweep_keeps_what_can_still_resume(tmp_path: Path) -> None:
    settings = CheckpointSpec(path=str(tmp_path))
    for name in ("a0", "a1", "a3"):
        (tmp_path / name).write_bytes(b"state")
    for run in (0, 1, 3):
        directory_for(settings, "s", run).mkdir(parents=True)
    trials = [
        trial(0, TrialState.FAIL, 20, **{CHECKPOINT_ATTR: "a0"}),  # failed for good
        trial(1, TrialState.FAIL, 20, **{CHECKPOINT_ATTR: "a1"}),  # lost, being resumed by 2
        trial(2, TrialState.WAITING, 0, **{CHECKPOINT_ATTR: "a1", CHECKPOINT_OF_ATTR: 1}),
        trial(3, TrialState.FAIL, 1, **{CHECKPOINT_ATTR: "a3"}),  # its copy may be on its way
    ]
    sweep(settings, "s", trials, now=NOW)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["a1", "a3"]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["trial-1", "trial-3"]
