"""The examples a user copies run as shipped (a few trials each)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
from kubetune_cli import kubetune
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize(
    ("example", "study_name", "trials"),
    [
        ("quickstart.yaml", "lgbm-breast-cancer", 6),
        ("command.yaml", "mlp-digits", 4),
        ("define_by_run.yaml", "quadratic", 4),
        ("checkpoints.yaml", "checkpointed-sgd", 4),
    ],
)
def test_example_runs_locally(
    example: str, study_name: str, trials: int, storage_url: str, tmp_path: Path
) -> None:
    result = kubetune(
        dict(os.environ),
        REPO,
        "run",
        f"examples/{example}",
        "--storage",
        storage_url,
        "--trials",
        str(trials),
        "--output",
        str(tmp_path / "best_params.json"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    assert len(study.trials) == trials
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    best = json.loads((tmp_path / "best_params.json").read_text(encoding="utf-8"))
    assert best == study.best_params
    if example != "define_by_run.yaml":  # these report per step: the pruner sees them
        assert all(t.intermediate_values for t in study.trials)
