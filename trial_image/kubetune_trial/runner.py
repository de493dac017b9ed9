"""The trial runner: the only code that runs objectives.

One worker process loops: claim a trial under the study's claim lock (so the
budget is never overrun, whatever the number of workers), suggest the spec's
parameters, run the objective, and tell Optuna how it ended. Every trial ends
COMPLETE, PRUNED or FAIL, and a FAIL carries its reason in the user attribute
``kubetune.fail_reason``.

Example:
    >>> from kubetune.engine.worker import WorkerConfig
    >>> run_worker(WorkerConfig(study_name="demo", worker_name="w0"), url)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import threading
import time
import traceback
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from kubetune.engine import bridge, checkpoints
from kubetune.engine.budget import TERMINATOR_PREFIX, StopReason, stop_reason
from kubetune.engine.claims import budget_state, claim_lock, create_running_trial
from kubetune.engine.ledger import TrialLedger
from kubetune.engine.recovery import (
    FAIL_REASON_ATTR,
    WORKER_ATTR,
    fail_lost_trials,
    give_up_trial,
)
from kubetune.engine.stopping import terminator_verdict
from kubetune.engine.storage import open_storage, scrub
from kubetune.engine.trial_ends import announce_trial_end
from kubetune.engine.worker import WorkerConfig
from kubetune.study.spec import StudySpec, load_study
from optuna.study._tell import _tell_with_warning
from optuna.trial import TrialState

from kubetune_trial.objectives import (
    AfterTrial,
    Objective,
    ObjectiveFailed,
    failure_reason,
    load_objective,
    script_callbacks,
)
from kubetune_trial.tracking import Tracker, make_tracker

_logger = logging.getLogger("kubetune.trial")


class WorkerStopped(BaseException):
    """The worker was asked to stop (SIGTERM from Kubernetes, Ctrl-C, suspend).

    A BaseException, so an objective's ``except Exception`` does not swallow it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


class StopSignals:
    """Turns SIGTERM and SIGINT into :class:`WorkerStopped`, except inside
    :meth:`deferred` blocks (claiming, telling), which finish first."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        if self._depth:
            self._pending = signum
        else:
            raise WorkerStopped(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, self._pending = self._pending, None
                raise WorkerStopped(signum)


@dataclass
class WorkerSummary:
    """What one worker did, for its log and exit code."""

    trials: dict[str, int] = field(default_factory=lambda: {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0})
    stop: StopReason | None = None
    stopped_by: str | None = None
    ended: str | None = None
    """Why the study is over, when its supervisor said so (it claims no more trials)."""

    @property
    def total(self) -> int:
        return sum(self.trials.values())


class Worker:
    """Runs trials of one study until its budget (or ``config.max_trials``) is spent."""

    def __init__(self, config: WorkerConfig, storage_url: str) -> None:
        self.config = config
        self.storage_url = storage_url
        self.signals = StopSignals()
        storage = open_storage(storage_url)
        study_id = self._study_id(storage)
        spec = bridge.stored_spec(storage, study_id)
        if spec is None:
            raise ObjectiveFailed(
                f"study {config.study_name!r} was not created by kubetune (no spec stored in it)"
            )
        self.spec: StudySpec = spec
        #: The stored spec's JSON as last read: parsed again only when it changes.
        self._spec_json: str | None = None
        self.study = optuna.load_study(
            study_name=config.study_name,
            storage=storage,
            sampler=bridge.build_sampler(spec, config.worker_index),
            pruner=bridge.build_pruner(spec),
        )
        self.objective: Objective = load_objective(spec, config.study_name)
        self.tracker: Tracker | None = make_tracker(spec, config.study_name)
        #: The objective's script's study.optimize callbacks (see script_callbacks).
        self.after_trial: AfterTrial | None = script_callbacks(spec, config.study_name)
        self.ledger = TrialLedger(spec.objective.study_directions)
        self.lock = claim_lock(storage_url, study_id, self.study._storage)
        self._deadline: float | None = None
        #: Why the study was asked to stop (study.stop() in the script), if it was.
        self._stop_requested: str | None = None
        #: The trial claimed and not yet told: handed back if the worker is stopped.
        self._current: optuna.Trial | None = None

    def _study_id(self, storage: optuna.storages.BaseStorage) -> int:
        name = self.config.study_name
        try:
            return storage.get_study_id_from_name(name)
        except KeyError:
            if self.config.spec_file is None:
                raise ObjectiveFailed(f"study {name!r} does not exist in the storage") from None
        study = load_study(self.config.spec_file)
        return bridge.prepare_study(storage, name, study.spec)._study_id

    def run(self) -> WorkerSummary:
        summary = WorkerSummary()
        self.signals.install()
        try:
            while self.config.max_trials is None or summary.total < self.config.max_trials:
                trial = self._claim(summary)
                if trial is None:
                    break
                state = self._run_trial(trial)
                summary.trials[state.name] += 1
        except WorkerStopped as stopped:
            summary.stopped_by = str(stopped)
            if self._current is not None:
                self._hand_back(self._current, stopped)
        finally:
            self.lock.close()
        return summary

    def _hand_back(self, trial: optuna.Trial, stopped: WorkerStopped) -> None:
        """Fail the trial this worker was running, with why, marked as stopped (not
        failed: see :data:`~kubetune.engine.recovery.STOPPED_ATTR`), and queue it again;
        unless the study is over (:func:`~kubetune.engine.bridge.mark_ended`): then it
        fails with the study's reason, as the supervisor fails the others, and does not
        run again (a trial claimed after the supervisor listed the running ones)."""
        with self.signals.deferred():
            storage = self.study._storage
            frozen = storage.get_trial(trial._trial_id)
            ended = bridge.stored_ended(storage, self.study._study_id)
            if ended is not None:
                fail_lost_trials(self.study, [frozen], ended, retries=0, stopped=True)
                self._current = None
                return
            name = self.config.worker_name
            why = bridge.stopping_reason(storage, self.study._study_id, name)
            # The supervisor's reason as its own hand-back would give it, else the signal.
            reason = why or f"worker {name} was stopped by {stopped}"
            fail_lost_trials(
                self.study,
                [frozen],
                reason,
                retries=self.spec.trial.retries,
                requeue=True,
                # Stopped, not failed (suspend, or the SIGTERM before a preemption or a
                # node drain): with checkpoints the trial goes on where it stopped.
                resume=self.spec.trial.checkpoints is not None,
            )
        self._current = None

    def _claim(self, summary: WorkerSummary) -> optuna.Trial | None:
        """A new trial, or None when the budget is spent; atomic across workers."""
        with self.signals.deferred():
            claimed = self.lock.claim(
                lambda: self._create_within_budget(summary),
                before=lambda: self._budget_allows(summary),
            )
            if claimed is None:
                return None
            trial = self._current = (
                claimed if isinstance(claimed, optuna.Trial) else self._trial(claimed)
            )
            if self.lock.lost and self._over_budget():
                # Another worker may have claimed while the lock was gone; one of the two
                # trials is too many. Giving this one up costs no budget (it never ran).
                give_up_trial(
                    self.study._storage,
                    trial._trial_id,
                    "claimed while the database restarted, after the budget was spent "
                    "by another worker; it did not run",
                )
                self._current = None
                return self._claim(summary)
            return trial

    def _budget_allows(self, summary: WorkerSummary) -> bool:
        """Before the claim lock is taken (on PostgreSQL, in the claim's transaction): the
        worker's ledger catches up with the trials that ended or started since its last
        claim, which the decision under the lock reads (failures, goal). ``study.ask()``
        makes the same read."""
        self.ledger.update(self.study.get_trials(deepcopy=False))
        return True

    def _create_within_budget(self, summary: WorkerSummary) -> optuna.Trial | int | None:
        """Under the claim lock (on PostgreSQL, in the claim's one transaction, which may
        be made again): in one statement, the trials counted against the budget now, the
        first waiting one, the stored spec and deadline (edits to the budget or the
        timeout count from the next claim) and whether the study ended (its supervisor
        is stopping the workers); then every reason to stop, and a trial if
        one more fits — the first waiting one (a retry), else a new one — recorded as
        this worker's. What ``study.ask()`` does, but for the re-read of every unfinished
        trial, which the ledger did outside the lock.

        Returns the trial's id, for :meth:`_trial` to make the ``optuna.Trial`` after the
        lock is released; with the grid sampler, the ``optuna.Trial`` itself (its
        ``before_trial`` picks a grid point no other trial holds: under the lock)."""
        storage = self.study._storage
        state = budget_state(
            storage,
            self.study._study_id,
            (bridge.SPEC_ATTR, bridge.DEADLINE_ATTR, bridge.STOP_ATTR, bridge.ENDED_ATTR),
            lock_study_row=True,  # for create_running_trial
        )
        self._follow_stored(state.study_attrs)
        ended_json = state.study_attrs.get(bridge.ENDED_ATTR)
        summary.ended = None if ended_json is None else json.loads(ended_json)
        if summary.ended is not None:  # its supervisor is stopping the workers
            return None
        spending = dataclasses.replace(self.ledger.spending, trials=state.counted)
        summary.stop = stop_reason(
            self.spec,
            spending,
            now=time.time(),
            deadline=self._deadline,
            stop_requested=self._stop_requested,
        )
        if summary.stop is not None:
            return None
        waiting = state.first_waiting
        if waiting is not None and storage.set_trial_state_values(waiting, TrialState.RUNNING):
            # A retry keeps what its first attempt recorded, this attribute included.
            storage.set_trial_user_attr(waiting, WORKER_ATTR, self.config.worker_name)
            trial_id = waiting
        else:
            trial_id = create_running_trial(
                storage, self.study._study_id, WORKER_ATTR, self.config.worker_name
            )
        return self._trial(trial_id) if self.spec.sampler.name == "grid" else trial_id

    def _follow_stored(self, study_attrs: dict[str, str]) -> None:
        """Take up the spec and deadline stored in the study (raw JSON, parsed when it
        changed): edited budgets and timeouts reach running workers this way."""
        spec_json = study_attrs.get(bridge.SPEC_ATTR)
        if spec_json is not None and spec_json != self._spec_json:
            self.spec = StudySpec.model_validate(json.loads(spec_json))
            self._spec_json = spec_json
        deadline_json = study_attrs.get(bridge.DEADLINE_ATTR)
        self._deadline = None if deadline_json is None else json.loads(deadline_json)
        stop_json = study_attrs.get(bridge.STOP_ATTR)
        self._stop_requested = None if stop_json is None else json.loads(stop_json)

    def _trial(self, trial_id: int) -> optuna.Trial:
        """The ``optuna.Trial`` of a claimed trial, as ``study.ask()`` makes it (the
        sampler's ``before_trial``; relative sampling waits for the first suggest)."""
        self.study._thread_local.cached_all_trials = None
        return optuna.Trial(self.study, trial_id)

    def _tell(
        self,
        trial: optuna.Trial,
        state: TrialState,
        values: Sequence[float] | None,
        reason: str | None,
        attempt: int,
    ) -> None:
        """How the trial ended, in one transaction (see :meth:`run`'s ``lock.write``): its
        failure reason, the tell, and the announcement that wakes the operator's status
        at once instead of at its next look."""
        if reason is not None:
            # Bounded keeping its first line: what every view of the trial shows.
            trial.set_user_attr(FAIL_REASON_ATTR, failure_reason(*_split(reason)))
        # What study.optimize calls: study.tell would then read the whole trial back once
        # more (six statements) to return it, which nobody here reads. A second attempt
        # finds the trial finished if the first one's commit got through.
        _tell_with_warning(
            study=self.study,
            trial=trial,
            value_or_values=values if state == TrialState.COMPLETE else None,
            state=state,
            skip_if_finished=attempt > 0,
            suppress_warning=True,
        )
        announce_trial_end(self.study._storage, self.study.study_name)

    def _over_budget(self) -> bool:
        self.ledger.update(self.study.get_trials(deepcopy=False))
        return self.ledger.spending.trials > self.spec.budget.max_trials

    def _run_trial(self, trial: optuna.Trial) -> TrialState:
        started = time.monotonic()
        reason: str | None = None
        values: Sequence[float] | None = None
        state = TrialState.FAIL
        try:
            bridge.suggest(trial, self.spec)
            result = self.objective(trial)
            values, reason = _check_values(result, len(self.spec.objective.study_directions))
            state = TrialState.COMPLETE if reason is None else TrialState.FAIL
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except ObjectiveFailed as error:
            reason = str(error)
        except Exception as error:
            reason = _exception_reason(error)
            # The whole traceback goes to the worker's log (the pod log, the local
            # worker-N.log); the trial keeps its end. Scrubbed: it may quote the URL.
            _logger.error(
                "trial %d: the objective raised\n%s",
                trial.number,
                scrub("".join(traceback.format_exception(error)).rstrip(), self.storage_url),
            )
        if reason is not None:
            # Scrubbed once, for the trial and for the log: an objective's error may
            # quote the storage URL.
            reason = scrub(reason, self.storage_url)
        with self.signals.deferred():
            self.lock.write(lambda attempt: self._tell(trial, state, values, reason, attempt))
            self._current = None
        self._discard_checkpoint(trial)
        self._track(trial)
        if self.after_trial is not None:
            self.after_trial(self.study, self.study._storage.get_trial(trial._trial_id))
        _log_trial(trial, state, values, reason, time.monotonic() - started)
        self._ask_terminator()
        return state

    def _ask_terminator(self) -> None:
        """Under ``stopWhen.terminator``, after each trial: ask Optuna's Terminator (here,
        where torch is: see :mod:`kubetune.engine.stopping`) and stop the study when it
        says so. A Terminator that fails costs a warning, never the trial (it has ended)."""
        try:
            verdict = terminator_verdict(self.study, self.spec)
        except Exception as error:
            _logger.warning(
                "stopWhen.terminator could not decide: %s: %s", type(error).__name__, error
            )
            return
        if verdict is not None:
            bridge.request_stop(
                self.study._storage, self.study._study_id, TERMINATOR_PREFIX + verdict
            )

    def _discard_checkpoint(self, trial: optuna.Trial) -> None:
        """An ended trial's checkpoint is of no more use: removed, with those left by
        trials a supervisor ended. A failure to remove costs a warning, never the trial
        (it has ended)."""
        settings = self.spec.trial.checkpoints
        if settings is None:
            return
        try:
            frozen = self.study._storage.get_trial(trial._trial_id)
            checkpoints.discard(settings, self.study.study_name, frozen)
            trials = self.study.get_trials(deepcopy=False)
            checkpoints.sweep(settings, self.study.study_name, trials)
        except OSError as error:
            _logger.warning("trial %d: its checkpoint was not removed: %s", trial.number, error)

    def _track(self, trial: optuna.Trial) -> None:
        """Send the ended trial to the spec's tracking (MLflow, W&B). A tracking server
        that fails costs a warning in the log, never the trial (it has ended)."""
        if self.tracker is None:
            return
        try:
            self.tracker(self.study, self.study._storage.get_trial(trial._trial_id))
        except Exception as error:
            _logger.warning(
                "trial %d: not sent to tracking: %s",
                trial.number,
                scrub(f"{type(error).__name__}: {error}", self.storage_url),
            )


def _check_values(result: Any, expected: int) -> tuple[Sequence[float] | None, str | None]:
    """The objective's return as a list of floats, or the reason it is not acceptable."""
    items = list(result) if isinstance(result, list | tuple) else [result]
    if len(items) != expected:
        return (
            None,
            f"objective returned {len(items)} value(s); the study has {expected} direction(s)",
        )
    values: list[float] = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            return None, f"objective returned {item!r}, which is not a number"
        if math.isnan(number):
            return None, "objective returned NaN"
        if math.isinf(number):
            return None, f"objective returned {number}"
        values.append(number)
    return values, None


def _exception_reason(error: BaseException) -> str:
    """``Type: message`` on the first line, then the end of the traceback."""
    message = next((line for line in str(error).splitlines() if line.strip()), "")
    headline = f"{type(error).__name__}: {message}" if message else type(error).__name__
    # From the user's code down: the runner's own frames above it say nothing.
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None and _is_runner_frame(tb):
        tb = tb.tb_next
    details = "".join(traceback.format_exception(type(error), error, tb)).rstrip()
    return failure_reason(headline, details, label="traceback ends with:")


_RUNNER_FOLDER = os.path.dirname(os.path.abspath(__file__))


def _is_runner_frame(tb: types.TracebackType) -> bool:
    return os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == _RUNNER_FOLDER


def _split(reason: str) -> tuple[str, str]:
    """A reason's first line and the rest."""
    headline, _, rest = reason.strip().partition("\n")
    return headline, rest


def _log_trial(
    trial: optuna.Trial,
    state: TrialState,
    values: Sequence[float] | None,
    reason: str | None,
    seconds: float,
) -> None:
    if state == TrialState.COMPLETE and values is not None:
        outcome = "value " + ", ".join(f"{v:.6g}" for v in values)
    elif state == TrialState.PRUNED:
        outcome = "pruned"
    else:
        outcome = f"failed: {(reason or '').splitlines()[0] if reason else 'unknown'}"
    _logger.info("trial %d %s in %.2fs with %s", trial.number, outcome, seconds, trial.params)
