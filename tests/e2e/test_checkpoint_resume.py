"""Issue 17.1 in the test cluster: a trial whose pod is evicted mid-trial goes on from
its last checkpoint in a new pod (the rounds before it are not run again), ends with
the value of an uninterrupted run, and counts once in the status and the storage."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from kubetune.engine.budget import was_retried
from kubetune.engine.checkpoints import RESUMED_FROM_ATTR
from kubetune.engine.claims import budget_state
from optuna.trial import TrialState
from scenario import assert_accounted, create, events, optuna_study, spec, wait_phase, wait_until

SUPPORT = Path(__file__).resolve().parents[1] / "integration" / "support"
sys.path.insert(0, str(SUPPORT))  # the objective the pods run, run here uninterrupted

from kt_checkpoint_objectives import ROUNDS, rounds  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def uninterrupted_value(params: dict[str, float]) -> float:
    study = optuna.create_study()
    study.enqueue_trial(params)
    study.optimize(rounds, n_trials=1)
    return study.best_value


def test_an_evicted_trial_resumes_from_its_checkpoint_in_a_new_pod(
    cluster: Any, kube: Any, storage_url: str, tmp_path: Path
) -> None:
    rounds_log, paused = tmp_path / "rounds.log", tmp_path / "paused"
    env = {"KT_ROUNDS_LOG": rounds_log, "KT_PAUSE_AFTER": 3, "KT_PAUSED_MARKER": paused}
    cluster.start()
    create(
        kube,
        "resume",
        spec(
            "rounds",
            searchSpace={"x": {"type": "float", "low": 0, "high": 1}},
            budget={"maxTrials": 2, "parallelism": 1},
            trial={
                "python": "kt_checkpoint_objectives:rounds",
                "checkpoints": {"path": str(tmp_path / "checkpoints")},
                "env": [{"name": k, "value": str(v)} for k, v in env.items()],
            },
        ),
    )
    wait_until(paused.exists)
    study = optuna_study(kube, storage_url, "resume")
    running = next(t for t in study.trials if t.state == TrialState.RUNNING)
    evicted_pod = running.user_attrs["kubetune.worker"]
    cluster.kubelet.evict_pod("default", evicted_pod)

    final = wait_phase(kube, "resume", "Succeeded")
    study = optuna_study(kube, storage_url, "resume")
    lost = next(t for t in study.trials if t.number == running.number)
    assert lost.state == TrialState.FAIL and was_retried(lost)
    assert lost.user_attrs["kubetune.fail_reason"].startswith(f"pod {evicted_pod} was evicted")
    resumed = next(t for t in study.trials if t.user_attrs.get(RESUMED_FROM_ATTR) == lost.number)
    assert resumed.state == TrialState.COMPLETE
    assert resumed.user_attrs["kubetune.worker"] != evicted_pod
    assert resumed.params == lost.params
    # Rounds 0-3 ran in the evicted pod and were checkpointed: the new pod ran 4-7 only.
    ran = [line for line in rounds_log.read_text().splitlines() if line.startswith("0 ")]
    assert ran == [f"0 {n}" for n in range(ROUNDS)], ran
    # The pruner sees one curve, the lost pod's reports and the new pod's.
    assert sorted(resumed.intermediate_values) == list(range(ROUNDS))
    assert resumed.value == pytest.approx(uninterrupted_value(resumed.params))

    # Counted once: 2 trials of maxTrials 2 in the status and the storage, no failure.
    assert_accounted(final, study, 2)
    assert (final["trials"]["complete"], final["trials"]["failed"]) == (2, 0), final
    assert budget_state(study._storage, study._study_id, ()).counted == 2
    assert [e for e in events(kube, reason="TrialResumed") if evicted_pod in e["message"]]
    assert not events(kube, reason="TrialFailed")
    assert not [p for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()]
