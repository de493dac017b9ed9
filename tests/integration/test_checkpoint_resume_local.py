"""Local mode: a worker killed mid-trial does not cost the trial its progress. Its trial
goes on from its last checkpoint in another worker, with the same parameters and the
values it reported, and counts once."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import optuna
import pytest
from kubetune.engine.budget import was_retried
from kubetune.engine.checkpoints import CHECKPOINT_ATTR, RESUMED_FROM_ATTR
from kubetune.engine.claims import budget_state
from kubetune.engine.ledger import TrialLedger
from kubetune.engine.recovery import FAIL_REASON_ATTR
from optuna.trial import TrialState
from runner_helpers import load
from test_local import SPEC, _wait_for, cli_env, run_cli, start_cli, write_study

pytestmark = pytest.mark.timeout(180)
__all__ = ["cli_env"]  # the fixture, imported from test_local

SUPPORT = Path(__file__).resolve().parent / "support"
sys.path.insert(0, str(SUPPORT))  # the objectives the workers run, run here uninterrupted

from kt_checkpoint_objectives import ROUNDS, rounds  # noqa: E402


def uninterrupted_value(params: dict[str, float]) -> float:
    """The objective run start to end in a plain Optuna study (no checkpoints there)."""
    study = optuna.create_study()
    study.enqueue_trial(params)
    study.optimize(rounds, n_trials=1)
    return study.best_value


#: The same rounds as a python objective (kubetune.checkpoint) and as a command (the
#: directory it is given).
OBJECTIVES = {
    "python": {"python": "kt_checkpoint_objectives:rounds"},
    "command": {
        "command": [sys.executable, str(SUPPORT / "kt_checkpoint_command.py"), "{checkpoint_dir}"]
    },
}


def reported(storage_url: str) -> set[int]:
    """The steps the running trial reported so far."""
    running = load(storage_url, "local").get_trials(states=(TrialState.RUNNING,))
    return set(running[0].intermediate_values) if running else set()


@pytest.mark.parametrize("kind", sorted(OBJECTIVES))
def test_a_killed_worker_s_trial_resumes_from_its_checkpoint(
    kind: str, cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    spec = dict(
        SPEC,
        objective={"direction": "minimize", "metric": "loss"},
        searchSpace={"x": {"type": "float", "low": 0, "high": 1}},
        trial={**OBJECTIVES[kind], "checkpoints": {"path": str(checkpoints)}},
        budget={"maxTrials": 1, "parallelism": 1},
    )
    rounds_log, paused = tmp_path / "rounds.log", tmp_path / "paused"
    env = {
        **cli_env,
        "KT_ROUNDS_LOG": str(rounds_log),
        "KT_PAUSE_AFTER": "4",
        "KT_PAUSED_MARKER": str(paused),
    }
    process = start_cli(
        env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    _wait_for(paused.exists)
    # Killed once the runner has read the round's report (a command's lines reach it a
    # moment after the program wrote them and its checkpoint).
    _wait_for(lambda: 4 in reported(storage_url))
    for pid in paused.read_text().split():  # the worker (and its command) at once
        os.kill(int(pid), signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stdout + stderr
    assert "resume from their checkpoints" in stdout, stdout

    # Rounds 0-4 ran before the kill and were checkpointed: none of them runs again.
    ran = rounds_log.read_text().split("\n")[:-1]
    assert ran == [f"0 {n}" for n in range(ROUNDS)], ran

    study = load(storage_url, "local")
    lost, resumed = sorted(study.trials, key=lambda t: t.number)
    assert lost.state == TrialState.FAIL and was_retried(lost)
    assert resumed.state == TrialState.COMPLETE
    assert resumed.user_attrs[RESUMED_FROM_ATTR] == lost.number
    assert resumed.params == lost.params
    # One unbroken curve for the pruner: the lost pod's reports and the new ones.
    assert sorted(resumed.intermediate_values) == list(range(ROUNDS))
    assert resumed.value == pytest.approx(uninterrupted_value(resumed.params))

    # Counted once against maxTrials, and not as a failure.
    assert budget_state(study._storage, study._study_id, ()).counted == 1
    counts = TrialLedger.of(study.trials, ["minimize"]).counts
    assert (counts.complete, counts.failed) == (1, 0)
    # The checkpoint went with the trial's end.
    assert (CHECKPOINT_ATTR in resumed.user_attrs) == (kind == "python")
    assert not any(p.is_file() for p in checkpoints.rglob("*"))


def test_a_worker_that_fails_by_itself_fails_its_trial_and_its_checkpoint_goes(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    spec = dict(
        SPEC,
        searchSpace={"x": {"type": "float", "low": 0, "high": 1}},
        trial={**OBJECTIVES["python"], "checkpoints": {"path": str(checkpoints)}},
        budget={"maxTrials": 1, "parallelism": 1},
    )
    env = {**cli_env, "KT_CRASH_AFTER": "2"}
    result = run_cli(
        env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (failed,) = load(storage_url, "local").trials  # failed, not resumed
    assert failed.state == TrialState.FAIL and not was_retried(failed)
    assert "exited with code 7" in failed.user_attrs[FAIL_REASON_ATTR]
    assert CHECKPOINT_ATTR in failed.user_attrs  # it had checkpointed...
    assert not any(p.is_file() for p in checkpoints.rglob("*"))  # ...and the run removed it
