"""The trial ledger gives the same answers as looking at every trial each time,
while trials start, finish out of order, are retried, and the study grows."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from kubetune.engine.budget import RETRIED_ATTR
from kubetune.engine.ledger import TrialLedger
from kubetune.engine.recovery import WORKER_ATTR
from optuna.trial import TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _step(study: optuna.Study, rng: random.Random, running: list[optuna.Trial]) -> None:
    """One random event: start a trial, or end a running one (any of them) somehow."""
    storage = study._storage
    if not running or rng.random() < 0.45:
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr(WORKER_ATTR, f"pod-{rng.randrange(5)}")
        running.append(trial)
        return
    trial = running.pop(rng.randrange(len(running)))
    roll = rng.random()
    n_objectives = len(study.directions)
    if roll < 0.6:
        # Few distinct values, so ties and equal points on the front happen.
        values = [float(rng.randrange(8)) for _ in range(n_objectives)]
        study.tell(trial, values if n_objectives > 1 else values[0])
    elif roll < 0.75:
        study.tell(trial, state=TrialState.PRUNED)
    elif roll < 0.9:
        study.tell(trial, state=TrialState.FAIL)
    else:
        storage.set_trial_user_attr(trial._trial_id, RETRIED_ATTR, True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params)


def _expected(study: optuna.Study) -> dict[str, object]:
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    counted = [
        t for t in trials if t.state != TrialState.WAITING and not t.user_attrs.get(RETRIED_ATTR)
    ]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if len(study.directions) == 1:
        best = [study.best_trial.number] if complete else []
        best_value = study.best_value if complete else None
    else:
        best = sorted(t.number for t in study.best_trials)
        best_value = None
    return {
        "running": states.count(TrialState.RUNNING),
        "waiting": states.count(TrialState.WAITING),
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "failed": states.count(TrialState.FAIL),
        "started": len(counted),
        "failures": sum(1 for t in counted if t.state == TrialState.FAIL),
        "best_value": best_value,
        "best": best,
        "workers": {t.user_attrs[WORKER_ATTR] for t in trials if WORKER_ATTR in t.user_attrs},
    }


def _answers(ledger: TrialLedger) -> dict[str, object]:
    counts, spent = ledger.counts, ledger.spending
    return {
        "running": counts.running,
        "waiting": counts.waiting,
        "complete": counts.complete,
        "pruned": counts.pruned,
        "failed": counts.failed,
        "started": spent.trials,
        "failures": spent.failures,
        "best_value": spent.best_value,
        "best": [t.number for t in ledger.best],
        "workers": ledger.workers,
    }


@pytest.mark.parametrize(
    "directions",
    [["minimize"], ["maximize"], ["minimize", "maximize"], ["maximize", "maximize", "minimize"]],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ledger_matches_a_full_recount_after_every_event(directions: list[str], seed: int) -> None:
    rng = random.Random(seed)
    study = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(seed))
    ledger = TrialLedger(directions)
    running: list[optuna.Trial] = []
    for _ in range(300):
        _step(study, rng, running)
        if rng.random() < 0.5:  # the operator looks now and then, not after every event
            continue
        ledger.update(study.get_trials(deepcopy=False))
        assert _answers(ledger) == _expected(study)
    ledger.update(study.get_trials(deepcopy=False))
    assert _answers(ledger) == _expected(study)
    single = len(directions) == 1
    if single:
        # The best trial among equals is the earliest, as Optuna's best_trial is.
        assert ledger.best[0].number == study.best_trial.number


def test_a_long_running_first_trial_does_not_hide_later_ones() -> None:
    study = optuna.create_study()
    ledger = TrialLedger(["minimize"])
    first = study.ask()
    for value in (3.0, 1.0, 2.0):
        study.tell(study.ask(), value)
        ledger.update(study.get_trials(deepcopy=False))
    assert ledger.counts.complete == 3 and ledger.counts.running == 1
    assert ledger.best[0].value == 1.0
    study.tell(first, 0.5)
    ledger.update(study.get_trials(deepcopy=False))
    assert ledger.counts.complete == 4 and ledger.counts.running == 0
    assert ledger.best[0].number == first.number


def test_non_finite_values_never_become_best() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=math.inf))
    study.add_trial(optuna.trial.create_trial(value=1.0))
    ledger = TrialLedger.of(study.get_trials(deepcopy=False), ["maximize"])
    assert ledger.spending.best_value == 1.0


def test_a_study_recreated_under_the_same_name_starts_the_totals_again() -> None:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="s", storage=storage)
    for value in (1.0, 2.0, 3.0):
        study.tell(study.ask(), value)
    ledger = TrialLedger(["minimize"])
    ledger.update(study.get_trials(deepcopy=False))
    optuna.delete_study(study_name="s", storage=storage)
    again = optuna.create_study(study_name="s", storage=storage)
    again.tell(again.ask(), 5.0)
    ledger.update(again.get_trials(deepcopy=False))
    assert ledger.counts.complete == 1
    assert ledger.spending.best_value == 5.0


def test_trials_stopped_on_purpose_are_counted_stopped_not_failed() -> None:
    """A suspend or Ctrl-C hands running trials back (FAIL in Optuna, queued again):
    the operator's status and kubetune run count them as stopped, not as failures."""
    from kubetune.engine.recovery import fail_lost_trials

    study = optuna.create_study()
    study.ask()
    study.ask()
    trials = study.get_trials(deepcopy=False)
    fail_lost_trials(study, [trials[0]], "the study was suspended", retries=0, requeue=True)
    fail_lost_trials(study, [trials[1]], "pod OOMKilled", retries=0)
    ledger = TrialLedger(["minimize"])
    ledger.update(study.get_trials(deepcopy=False))
    assert (ledger.counts.stopped, ledger.counts.failed, ledger.counts.waiting) == (1, 1, 1)
    assert ledger.spending.failures == 1  # the stopped trial costs no failure either
