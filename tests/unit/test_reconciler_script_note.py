"""Issue 16.2: the operator says, in the Study's status and in one Event, that a worker's
import of the objective's module stopped at the script's own ``study.optimize`` (the
user attribute a worker sets on its first trial), so ``kubectl describe`` shows it.
Issue 16.4: a script's ``study.stop()`` (a callback's, in a pod's worker) ends the Study.

The reconciler ticks against the in-memory API server of test_reconciler_rules and a real
PostgreSQL; the test plays the pods' trial runners."""

from __future__ import annotations

from collections.abc import Callable

from kubetune.engine import bridge
from kubetune.engine.scripts import NOTE_ATTR
from test_reconciler_rules import Study, counts

NOTE = "train.py calls study.optimize at import; kubetune runs the trials instead"


def test_a_workers_script_note_is_a_condition_and_one_event(make: Callable[..., Study]) -> None:
    study = make(budget={"maxTrials": 4, "parallelism": 2}, trial={"python": "train:objective"})
    study.tick()
    assert study.condition("ScriptStudyIntercepted") == {}
    first, second = study.live_pods()
    noted = study.claim(first)
    noted.set_user_attr(NOTE_ATTR, NOTE)  # the worker's first trial, still running
    study.claim(second)
    study.tick()
    condition = study.condition("ScriptStudyIntercepted")
    assert (condition["status"], condition["reason"]) == ("True", "OptimizeAtImport")
    assert condition["message"] == NOTE
    assert study.events_of("OptimizeAtImport") == [NOTE]
    final = study.run_to_end()
    assert final["phase"] == "Succeeded"
    # Every pod's worker notes it on its first trial: still one Event, and the condition stays.
    assert study.events_of("OptimizeAtImport") == [NOTE]
    assert [c["message"] for c in final["conditions"] if c["reason"] == "OptimizeAtImport"] == [
        NOTE
    ]


def test_an_operator_started_again_does_not_say_it_twice(make: Callable[..., Study]) -> None:
    study = make(budget={"maxTrials": 2, "parallelism": 1})
    study.tick()
    (pod,) = study.live_pods()
    trial = study.claim(pod)
    trial.set_user_attr(NOTE_ATTR, NOTE)
    study.complete(trial)
    study.tick()
    assert study.events_of("OptimizeAtImport") == [NOTE]
    restarted = Study(study.fake, study.url, budget={"maxTrials": 2, "parallelism": 1})
    restarted.tick()
    assert restarted.events_of("OptimizeAtImport") == []
    assert restarted.condition("ScriptStudyIntercepted")["message"] == NOTE


def test_a_study_whose_objective_is_no_script_has_no_such_condition(
    make: Callable[..., Study],
) -> None:
    final = make(budget={"maxTrials": 2, "parallelism": 1}).run_to_end()
    assert all(c["type"] != "ScriptStudyIntercepted" for c in final["conditions"])


def test_a_study_stop_in_a_pod_ends_the_study_once_its_running_trials_finish(
    make: Callable[..., Study],
) -> None:
    study = make(budget={"maxTrials": 10, "parallelism": 2})
    study.tick()
    first, second = study.live_pods()
    done, running = study.claim(first), study.claim(second)
    study.complete(done)
    # The first pod's worker ran the script's callbacks after its trial: one called stop().
    stopped_by = "study.stop() was called by callback stop_early (in pod-a)"
    bridge.request_stop(study.optuna._storage, study.optuna._study_id, stopped_by)
    study.exit(first)
    assert study.tick() is False  # the other pod's trial runs on
    assert len(study.live_pods()) == 1, "no pod replaces the one that ended"
    assert study.status["phase"] == "Running"
    study.complete(running)
    study.exit(second)
    assert study.tick() is True
    final = study.status
    assert (final["phase"], final["message"]) == ("Succeeded", stopped_by)
    assert study.condition("Complete")["reason"] == "StudyStopped"
    assert counts(final) == {"complete": 2}
