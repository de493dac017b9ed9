"""The Lightning MLP built-in objective, through the trial runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from builtin_helpers import builtin_spec


@pytest.mark.slow(seconds=20)
def test_lightning_holdout_prunes_and_saves_kfold_completes(start_builtin, tmp_path: Path) -> None:
    holdout = builtin_spec(
        {
            "model": "lightning",
            "data": {"dataset": "sklearn:breast_cancer"},
            "maxEpochs": 4,
            "params": {"batch_size": 64, "n_layers": 1},
            "saveModel": {"path": str(tmp_path / "mlp")},
        },
        objective={"direction": "minimize", "metric": "logloss"},
        pruner={"name": "median", "args": {"n_startup_trials": 1, "n_warmup_steps": 0}},
        sampler={"name": "tpe", "seed": 0},
        budget={"maxTrials": 2},
    )
    kfold = builtin_spec(
        {
            "model": "lightning",
            "task": "regression",
            "data": {"dataset": "sklearn:diabetes"},
            "validation": {"kind": "kfold", "folds": 2},
            "maxEpochs": 3,
        },
        searchSpace={"hidden_size": {"type": "int", "low": 8, "high": 16}},
        objective={"direction": "minimize", "metric": "mae"},
        budget={"maxTrials": 1},
    )
    # Both workers at once: each spends most of its time importing Lightning.
    # Trial 1's learning rate is 1000x smaller: it barely moves from chance, so the
    # median pruner stops it within its first epochs.
    holdout_worker = start_builtin(holdout, enqueue=[{"lr": 0.05}, {"lr": 0.00005}])
    kfold_worker = start_builtin(kfold)
    run = holdout_worker.wait()
    assert run.returncode == 0, run.output
    first, second = run.study.get_trials()
    assert [first.state.name, second.state.name] == ["COMPLETE", "PRUNED"], run.output
    assert sorted(first.intermediate_values) == [0, 1, 2, 3]
    assert 1 <= len(second.intermediate_values) < 4
    assert first.value < 0.3

    # The checkpoint loads with TabularMLP.load_from_checkpoint (docs/builtin.md);
    # torch alone is enough to check what it holds.
    import torch

    checkpoint = torch.load(tmp_path / "mlp" / "model.ckpt", map_location="cpu")
    assert checkpoint["hyper_parameters"]["task"] == "classification"
    assert checkpoint["hyper_parameters"]["lr"] == 0.05
    assert "mean" in checkpoint["state_dict"]

    run = kfold_worker.wait()
    assert run.returncode == 0, run.output
    (trial,) = run.study.get_trials()
    assert trial.state.name == "COMPLETE"
    assert 8 <= trial.params["hidden_size"] <= 16  # narrowed by spec.searchSpace
    assert "dropout" in trial.params  # the rest of the default space is still tuned
    assert sorted(trial.intermediate_values) == [0, 1, 2]  # fold 0, pruned per epoch
    assert 20 < trial.value < 200
