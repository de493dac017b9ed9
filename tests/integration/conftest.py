"""Helpers for tests that run real worker processes against a real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from kubetune.engine import bridge
from kubetune.engine.storage import open_storage
from kubetune.study.spec import StudySpec, validate_spec

SUPPORT = Path(__file__).resolve().parent / "support"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner_env(worker_env: dict[str, str]) -> dict[str, str]:
    env = dict(worker_env)
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), env["PYTHONPATH"]])
    return env


@pytest.fixture
def make_study(storage_url: str) -> Callable[..., optuna.Study]:
    """Create a study in the test's database from a spec mapping."""

    def make(spec: dict[str, Any], name: str = "s") -> optuna.Study:
        parsed: StudySpec = validate_spec(spec)
        storage = open_storage(storage_url)
        return bridge.prepare_study(storage, name, parsed)

    return make
