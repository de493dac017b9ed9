"""Helpers for the built-in objective tests (fixtures are in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna


@dataclass
class WorkerRun:
    """What one worker process did to one study."""

    returncode: int
    output: str
    study: optuna.Study

    def states(self) -> list[str]:
        return [t.state.name for t in self.study.get_trials(deepcopy=False)]


def builtin_spec(builtin: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A spec mapping for a built-in objective, small enough for a test."""
    return {"budget": {"maxTrials": 3}, "trial": {"builtin": builtin}, **spec}
