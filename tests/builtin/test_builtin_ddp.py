"""A Lightning python objective with DDP on two CPU processes inside one trial,
pruned through the storage (examples/lightning-ddp.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow(seconds=45)
def test_ddp_trial_completes_and_a_ddp_trial_is_pruned(run_builtin) -> None:
    spec = yaml.safe_load((REPO / "examples" / "lightning-ddp.yaml").read_text())["spec"]
    spec["budget"] = {"maxTrials": 2}
    spec["pruner"] = {"name": "median", "args": {"n_startup_trials": 1, "n_warmup_steps": 0}}
    # Trial 1 learns 500x slower: its validation loss stays near chance, worse than
    # trial 0's at every epoch, so rank 0's pruner stops it and every rank stops.
    run = run_builtin(
        spec, enqueue=[{"lr": 0.05, "hidden_size": 32}, {"lr": 0.0001, "hidden_size": 8}]
    )
    assert run.returncode == 0, run.output
    first, second = run.study.get_trials()
    assert [first.state.name, second.state.name] == ["COMPLETE", "PRUNED"], run.output
    assert first.user_attrs["ddp.world_size"] == 2
    assert sorted(first.intermediate_values) == [0, 1, 2, 3, 4]
    assert first.value == first.intermediate_values[4]
    assert len(second.intermediate_values) < 5
    assert second.user_attrs["ddp.world_size"] == 2
