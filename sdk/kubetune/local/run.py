"""Local mode: run a Study file on this machine, with worker processes instead of pods.

``kubetune run study.yaml`` starts ``parallelism`` processes of the trial
runner (``python -m kubetune_trial``, the same code a trial pod runs) against
one storage, the embedded PostgreSQL by default, and supervises them with the
operator's policy (:mod:`kubetune.engine.supervision`): a worker that dies gets its
running trial failed with the reason and retried as the spec allows, and is
replaced; workers that cannot run, or keep dying, end the run with their reason.

Example:
    >>> from kubetune.study.spec import load_study
    >>> result = LocalRun(load_study("examples/quickstart.yaml"), url).run()  # doctest: +SKIP
    >>> result.best_params                                                   # doctest: +SKIP
    {'learning_rate': 0.08, 'num_leaves': 31}
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.engine import bridge, checkpoints, fork
from kubetune.engine.budget import StopReason, describe, stop_reason, trial_limit, was_retried
from kubetune.engine.ledger import TrialLedger, failure_summary, reason_key
from kubetune.engine.lifeline import end_session, ends_with_parent
from kubetune.engine.recovery import FAIL_REASON_ATTR, STOPPED_ATTR, WORKER_ATTR, fail_lost_trials
from kubetune.engine.spend import Spend, spend_of
from kubetune.engine.storage import dispose, load_stored_study, open_storage, scrub
from kubetune.engine.supervision import (
    Decision,
    EndedWorker,
    Outcome,
    Situation,
    decide,
)
from kubetune.engine.trials import best_params_document, best_summaries
from kubetune.engine.verify import prepare_verification, summarize, verify_study_name
from kubetune.engine.worker import (
    EXIT_CONFIG_ERROR,
    EXIT_OK,
    EXIT_STORAGE_ERROR,
    STORAGE_URL_ENV,
    WorkerConfig,
)
from kubetune.errors import KubetuneError, NotFound, SpecChangeRefused
from kubetune.local.code import CODE_DIGEST_ATTR, check_objective_code, objective_code
from kubetune.local.signals import stopped_by
from kubetune.study.spec import Study, StudySpec, TrialCounts, VerifiedStatus

if TYPE_CHECKING:
    import optuna

#: How often the supervisor looks at the workers and the storage.
POLL_SECONDS = 0.5
#: Seconds workers get to finish telling their trial after SIGTERM, before SIGKILL.
STOP_GRACE = 10.0
#: How long ``kubetune run`` tries to reach the storage at the start: a wrong URL or a
#: database that is down gets an answer in seconds. (Once running, a lost
#: connection is retried for much longer: see ``storage.RECONNECT_SECONDS``.)
FIRST_CONNECT_SECONDS = 5.0
#: The study system attribute naming the Study file (its absolute path) a local
#: study was run from: another file with the same study name is refused.
SOURCE_ATTR = "kubetune.source"
#: Lines of a failed trial's reason shown below its first line (the live line, the
#: failed-trials table); the stored reason (``kubetune.fail_reason``) has more.
REASON_LINES = 4


class LocalRunError(KubetuneError, RuntimeError):
    """The run could not go on; the message says why (and holds no password)."""


@dataclasses.dataclass(frozen=True)
class Progress:
    """What the supervisor reports while the study runs."""

    counts: TrialCounts
    max_trials: int
    best_number: int | None
    best_values: list[float] | None
    spend: Spend | None = None
    """What the trials have spent so far (resource-hours, cost), as status.spend shows it."""
    done: int | None = None
    """The finished trials that count against ``max_trials`` (handed-back ones do not)."""
    new_bests: list[tuple[int, float]] | None = None
    """Each new best of a single-objective study, (trial number, value), oldest first."""
    front: int | None = None
    """A multi-objective study's Pareto front size (it has no one best)."""


@dataclasses.dataclass
class LocalResult:
    """How a local run ended."""

    study_name: str
    counts: TrialCounts
    stop: StopReason | None
    stop_message: str
    interrupted: bool
    best_trials: list[dict[str, Any]]
    stopped_by: str = "Ctrl-C"
    """What interrupted the run: Ctrl-C, SIGTERM or SIGHUP (see :mod:`kubetune.local.signals`)."""
    requeued: list[int] = dataclasses.field(default_factory=list)
    """Trials this run stopped (Ctrl-C) and queued to run again first; they are not
    counted as failed."""
    cut_off: list[int] = dataclasses.field(default_factory=list)
    """Trials this run's end stopped (a timeout, a spent budget, a stop rule): not
    failed (no fault of theirs), not queued."""
    failures: list[tuple[str, list[int]]] = dataclasses.field(default_factory=list)
    """Why trials failed in this run, most frequent first: a reason (the first trial's:
    its first line and its last lines; reasons whose first lines differ only in numbers
    count as one) and the numbers of the trials that failed so."""
    already_complete: bool = False
    """The study's budget was spent before this run: it ran no trial."""
    verified: VerifiedStatus | None = None
    """What spec.verify found once the budget was spent: the re-run best trials' means
    and the winner, which ``best_params`` then holds."""
    spend: Spend | None = None
    """What the study's trials spent, this run's and earlier ones' (see status.spend)."""

    @property
    def failed(self) -> bool:
        """The study failed: it stopped for a failure, or no trial of it completed
        while some failed."""
        return (self.stop is not None and self.stop.is_failure) or self.no_success

    @property
    def no_success(self) -> bool:
        """Trials failed and none completed: there are no best parameters."""
        return self.counts.complete == 0 and self.counts.failed > 0

    @property
    def best_params(self) -> dict[str, Any] | list[dict[str, Any]] | None:
        """What ``best_params.json`` holds: the best trial's params, or for a
        multi-objective study the Pareto front (values and params)."""
        verified = self.verified.model_dump() if self.verified is not None else None
        return best_params_document(self.best_trials, verified)


@dataclasses.dataclass
class _WorkerProcess:
    index: int
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    trials_done_at_start: int


class LocalRun:
    """Runs one Study with local worker processes until its budget is spent.

    ``trials`` runs that many more trials (the stored ``maxTrials`` is raised to
    what was spent plus ``trials``); ``parallelism`` overrides the spec's.

    ``source`` is the Study file: the study records it, and a study of the same
    name run from another file is refused (two projects' studies named alike must
    not share trials), unless the spec names its study on purpose
    (``spec.storage.studyName``) or ``fresh`` starts it over.
    """

    def __init__(
        self,
        study: Study,
        storage_url: str,
        *,
        trials: int | None = None,
        parallelism: int | None = None,
        fresh: bool = False,
        source: Path | None = None,
        log_dir: Path | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_message: Callable[[str], None] | None = None,
        on_verify_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.document = study
        self.source = source.resolve() if source is not None else None
        self.url = storage_url
        self.study_name = study.spec.storage.study_name or study.metadata.name
        self.trials = trials
        self.parallelism = parallelism or study.spec.budget.parallelism
        self.fresh = fresh
        self.log_dir = log_dir or Path.cwd() / ".kubetune" / "logs" / self.study_name
        self.on_progress = on_progress or (lambda _progress: None)
        self.on_message = on_message or (lambda _message: None)
        #: The repeats' progress once the study's budget is spent (spec.verify): a study
        #: of their own, with their own count (``on_progress`` keeps the study's last).
        self.on_verify_progress = on_verify_progress
        self.host = socket.gethostname()
        self.run_id = f"{self.host}:{os.getpid()}"
        self._workers: list[_WorkerProcess] = []
        self._next_index = 0
        self._last_words: dict[str, tuple[Path, str]] = {}  # a failed worker's log, its end
        self._trials_at_start = 0
        self._failures: dict[str, tuple[str, list[int]]] = {}  # key -> (example, numbers)
        self._stopped_now: list[int] = []  # those handed back during this run
        self._noted = False  # the note of a script's intercepted study.optimize, said once
        self._stopped_by = "Ctrl-C"  # what interrupted the run, if something did
        self._cut_off: list[int] = []  # running when the study ended: stopped, not failed

    # -------------------------------------------------------------- setup

    def _prepare(self) -> tuple[optuna.Study, StudySpec]:
        import optuna

        storage = open_storage(self.url, retry_seconds=FIRST_CONNECT_SECONDS)
        if self.fresh:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=self.study_name, storage=storage)
                self.on_message(f"deleted the earlier study {self.study_name!r}")
        spec = self.document.spec
        with contextlib.suppress(KeyError):
            existing = optuna.load_study(study_name=self.study_name, storage=storage)
            check_source(existing, self.document, self.source)
            # Before the spec is compared: a trial left running by a dead run is no
            # reason to keep a study none of whose trials finished.
            stored = bridge.stored_spec(storage, existing._study_id)
            self._recover_abandoned(existing, stored or spec)
            self._start_over_if_code_changed(existing)
        spec = spec.model_copy(
            update={"budget": spec.budget.model_copy(update={"parallelism": self.parallelism})}
        )
        timeout = spec.budget.timeout_seconds
        deadline = time.time() + timeout if timeout else None
        try:
            study = bridge.prepare_study(
                storage, self.study_name, spec, deadline=deadline, on_message=self.on_message
            )
        except bridge.StudyChanged as error:
            raise self._refused(error, storage) from None
        check_objective_code(study, self.document, self.source)
        if spec.fork_from is not None and fork.parent_status(study) is None:
            # Before any trial of the fork: its sampler starts from the parent's trials.
            self.on_message(fork.describe(fork.copy_from_same_storage(study, spec)))
        if self.trials is not None:
            trials = study.get_trials(deepcopy=False)
            spent = TrialLedger.of(trials, spec.objective.study_directions).spending.trials
            # Asked for N more: the stop rules and spend limits that ended it are past too.
            budget = spec.budget.model_copy(
                update={
                    "max_trials": spent + self.trials,
                    "stop_when": None,
                    "max_gpu_hours": None,
                    "max_cpu_hours": None,
                    "max_cost": None,
                }
            )
            spec = spec.model_copy(update={"budget": budget})
            bridge.store_spec(storage, study._study_id, spec)
            bridge.clear_stop(storage, study._study_id)  # asked for more: study.stop() is past
        if self.source is not None and not spec.storage.study_name:
            # A study named on purpose (spec.storage.studyName) is shared, not the
            # file's: the file that ran it before keeps it (a script `kubetune init`
            # wrote a Study file for).
            storage.set_study_system_attr(study._study_id, SOURCE_ATTR, str(self.source))
        self._trials_at_start = len(study.get_trials(deepcopy=False))
        self._ledger = TrialLedger(spec.objective.study_directions)
        self._tally(study, announce=False)  # earlier runs' failures are old news
        return study, spec

    def _start_over_if_code_changed(self, study: optuna.Study) -> None:
        """Delete a study none of whose trials finished (all failed: NaN, an exception)
        whose objective's code changed since: its failures were the old code's, and the
        fixed code starts it over, as a fixed Study file does (see
        :func:`kubetune.engine.bridge.prepare_study`)."""
        import optuna
        from optuna.trial import TrialState

        found = objective_code(self.document)
        recorded = study._storage.get_study_system_attrs(study._study_id).get(CODE_DIGEST_ATTR)
        if found is None or recorded is None or recorded == found[0]:
            return
        trials = study.get_trials(deepcopy=False)
        held = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        failed = sum(1 for t in trials if t.state == TrialState.FAIL)
        if not failed or any(t.state in held for t in trials):
            return
        optuna.delete_study(study_name=study.study_name, storage=study._storage)
        self.on_message(
            f"study {study.study_name!r} had no finished trial ({failed} failed) and "
            "its objective's code changed: started it over"
        )

    def _refused(
        self, error: bridge.StudyChanged, storage: optuna.storages.BaseStorage
    ) -> SpecChangeRefused:
        """The refusal of a changed started study, saying how to go on."""
        trials = len(storage.get_all_trials(storage.get_study_id_from_name(self.study_name)))
        if self.source is not None:
            start_over = (
                f"kubetune run {_shown(self.source)} --fresh (or kubetune delete "
                f"{_shown(self.source)} first)"
            )
        else:
            start_over = "delete the study (optuna.delete_study) or run it fresh"
        field, reason = error.problems[0]
        reason = reason.removesuffix(". Use a new name or delete the study first")
        message = (
            f"{field}: {reason}.\n"
            f"  To start over, deleting its {trials} trials: {start_over}.\n"
            "  To keep them and run the changed study beside them: give it a new name "
            "(metadata.name)."
        )
        if self.source is not None and "objective" not in error.fields:
            message += (
                "\n  To start a new study from its finished trials that fit the change: "
                f"kubetune fork {_shown(self.source)} --set FIELD=VALUE -o NEW.yaml, then "
                "kubetune run NEW.yaml."
            )
        return SpecChangeRefused(self.study_name, error.fields, message)

    def _tally(self, study: optuna.Study, *, announce: bool = True) -> TrialLedger:
        """The ledger, brought up to date with the storage; a trial failing for a
        reason not seen before in this run is announced, with its reason's last lines."""
        finished = self._ledger.update(study.get_trials(deepcopy=False))
        if not self._noted and self._ledger.script_note:
            # A worker's import stopped at the script's own study.optimize.
            self.on_message(self._ledger.script_note)
            self._noted = True
        for trial in finished:
            if trial.state.name != "FAIL":
                continue
            if STOPPED_ATTR in trial.user_attrs:
                if announce and was_retried(trial):  # handed back, not cut off at the end
                    self._stopped_now.append(trial.number)
                continue
            if not announce:
                continue
            key = reason_key(failure_summary(trial))
            if key not in self._failures:
                reason = shown_reason(trial)
                self.on_message(f"trial {trial.number} failed: {reason}")
                self._failures[key] = (reason, [])
            self._failures[key][1].append(trial.number)
        return self._ledger

    def _hand_back(
        self, study: optuna.Study, trials: list[Any], reason: str, retries: int
    ) -> list[int]:
        """Fail ``trials`` (still running) as stopped, not failed, and queue them to run
        again first (going on from their checkpoints when the study keeps them);
        returns their numbers."""
        resume = self._spec_keeps_checkpoints(study)
        return fail_lost_trials(study, trials, reason, retries=retries, requeue=True, resume=resume)

    @staticmethod
    def _spec_keeps_checkpoints(study: optuna.Study) -> bool:
        spec = bridge.stored_spec(study._storage, study._study_id)
        return spec is not None and spec.trial.checkpoints is not None

    def _recover_abandoned(self, study: optuna.Study, spec: StudySpec) -> None:
        """Fail and re-queue trials left running by an earlier local run on this
        host that is no longer alive (killed, machine restarted)."""
        from optuna.trial import TrialState

        abandoned = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = str(trial.user_attrs.get(WORKER_ATTR, ""))
            host, _, rest = worker.partition(":")
            pid = rest.partition(":")[0]
            if host == self.host and pid.isdigit() and not _pid_alive(int(pid)):
                abandoned.append(trial)
        if abandoned:
            numbers = self._hand_back(
                study, abandoned, "its local run ended before the trial did", spec.trial.retries
            )
            self.on_message(f"re-queued {len(numbers)} trial(s) left running by an earlier run")

    # ------------------------------------------------------------ workers

    def _start_worker(self, study: optuna.Study) -> None:
        index = self._next_index
        self._next_index += 1
        name = f"{self.run_id}:w{index}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"worker-{index}.log"
        # The seed offset also counts earlier trials, so a continued study does not
        # replay the random start of its first run.
        seed_index = index + self._trials_at_start
        config = WorkerConfig(study_name=self.study_name, worker_name=name, worker_index=seed_index)
        env = {**os.environ, **config.to_env(), STORAGE_URL_ENV: self.url}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "kubetune_trial"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C reaches the supervisor, which stops workers in order.
                start_new_session=True,
                # A supervisor killed outright (SIGKILL, the OOM killer) stops it all the same.
                preexec_fn=ends_with_parent(signal.SIGTERM),
            )
        done = self._tally(study).counts.finished
        self._workers.append(_WorkerProcess(index, name, process, log_path, done))

    def _reap(self, study: optuna.Study, spec: StudySpec) -> tuple[EndedWorker, ...]:
        """The workers that exited since the last look, as the policy sees them; the
        trials a crashed worker was running are failed with its reason (and retried)."""
        ended: list[EndedWorker] = []
        for worker in list(self._workers):
            code = worker.process.poll()
            if code is None:
                continue
            self._workers.remove(worker)
            if code == EXIT_OK:
                progressed = self._tally(study).counts.finished > worker.trials_done_at_start
                ended.append(EndedWorker(worker.name, Outcome.DONE, "exited", progressed))
                continue
            # A worker killed outright could not stop its command objective: nothing of
            # its session (the command's process group and what that started) goes on.
            end_session(worker.process.pid)
            last_words = _tail(worker.log_path)
            self._last_words[worker.name] = (worker.log_path, last_words)
            if code in (EXIT_CONFIG_ERROR, EXIT_STORAGE_ERROR):
                # Locally the database is the supervisor's own: a worker that cannot
                # reach it, like one that cannot load the objective, is not helped by
                # another worker.
                said = _given_up(last_words)
                reason = scrub(said or f"worker exited with code {code}", self.url) + (
                    f"\n  (the worker's log: {_shown(worker.log_path)})" if said else ""
                )
                ended.append(EndedWorker(worker.name, Outcome.CANNOT_RUN, reason, False))
                continue
            reason = f"worker process {worker.name} {_exit_description(code)}"
            lost = [
                t
                for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get(WORKER_ATTR) == worker.name
            ]
            # Killed from outside (a signal it did not get from us: the OOM killer
            # cannot be told apart here) rather than failing by itself: with
            # checkpoints its trial goes on from the last one in another worker.
            resume = code < 0 and spec.trial.checkpoints is not None
            failed = fail_lost_trials(
                study, lost, reason, retries=spec.trial.retries, resume=resume
            )
            self.on_message(
                f"{reason}; trial(s) {failed or 'none'} "
                + (
                    "resume from their checkpoints"
                    if resume
                    else "marked failed" + (" and retried" if failed and spec.trial.retries else "")
                )
            )
            progressed = self._tally(study).counts.finished > (
                worker.trials_done_at_start + len(failed)
            )
            outcome = Outcome.PREEMPTED if resume else Outcome.CRASHED
            ended.append(EndedWorker(worker.name, outcome, reason, progressed))
        return tuple(ended)

    def _failure(self, decision: Decision) -> LocalRunError:
        """The error that ends a run the policy failed, with the worker's own words."""
        broken = decision.broken_worker
        if broken is None or broken.outcome is Outcome.CANNOT_RUN:
            return LocalRunError(decision.reason)
        log_path, last_words = self._last_words.get(broken.name, (None, ""))
        return LocalRunError(
            f"{decision.reason}. Its log: {log_path}\n" + scrub(last_words, self.url)
        )

    def _stop_workers(
        self, study: optuna.Study, spec: StudySpec, *, reason: str, requeue: bool = True
    ) -> list[int]:
        """SIGTERM every worker, wait, SIGKILL stragglers; their trials are handed back
        to run again first (``requeue``) or failed with ``reason``."""
        names = {worker.name for worker in self._workers}

        def unfinished() -> list[optuna.trial.FrozenTrial]:
            return [
                t
                for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get(WORKER_ATTR) in names and not t.state.is_finished()
            ]

        failed: list[int] = []
        if not requeue:
            # Before the workers hear of it, as the operator fails trials before deleting
            # pods: a worker stopped by SIGTERM hands its trial back to run again, which a
            # study that is over must not get.
            failed = fail_lost_trials(study, unfinished(), reason, retries=0, stopped=True)
        else:
            # What the workers' own hand-back says, not only "stopped by SIGTERM".
            bridge.note_stopping(study._storage, study._study_id, self.run_id, reason)
        for worker in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for worker in self._workers:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                end_session(worker.process.pid)  # its group and its command's
                worker.process.wait()
        self._workers.clear()
        lost = unfinished()
        if not requeue:
            failed += fail_lost_trials(study, lost, reason, retries=0, stopped=True)
            self._cut_off += failed
            return failed
        return self._hand_back(study, lost, reason, spec.trial.retries)

    # ---------------------------------------------------------------- run

    def run(self) -> LocalResult:
        study, spec = self._prepare()
        deadline = bridge.stored_deadline(study._storage, study._study_id)
        interrupted = False
        ledger = self._tally(study)
        # The study as this run finds it: what the live line starts from (a best trial
        # already there is not a new one).
        self.on_progress(self._progress(spec, ledger))
        already_complete = (
            stop_reason(
                spec,
                ledger.spending,
                now=time.time(),
                deadline=deadline,
                stop_requested=bridge.stored_stop(study._storage, study._study_id),
            )
            is not None
        )
        ended: tuple[EndedWorker, ...] = ()
        in_a_row = 0
        try:
            while True:
                names = {worker.name for worker in self._workers}
                # Only this run's trials: one another run left running is not waited for.
                ours = [t for t in ledger.running if t.user_attrs.get(WORKER_ATTR) in names]
                stop_requested = bridge.stored_stop(study._storage, study._study_id)
                decision = decide(
                    Situation(
                        spec=spec,
                        spending=ledger.spending,
                        now=time.time(),
                        deadline=deadline,
                        stop_requested=stop_requested,
                        live_workers=len(self._workers),
                        busy_workers=len({t.user_attrs.get(WORKER_ATTR) for t in ours}),
                        running_trials=len(ours),
                        ended=ended,
                        ends_without_progress=in_a_row,
                    )
                )
                in_a_row = decision.ends_without_progress
                if decision.ends_study:
                    # Before the workers hear of it: one stopped now fails its trial with
                    # the study's reason and queues no copy (see bridge.mark_ended).
                    bridge.mark_ended(study._storage, study._study_id, decision.ends_study)
                if decision.stop_workers:
                    self._stop_workers(
                        study, spec, reason=decision.stop_workers, requeue=decision.requeue
                    )
                if decision.phase == "Failed" and decision.stop is None:
                    raise self._failure(decision)
                if decision.finished:
                    break
                if decision.phase == "Suspended":
                    self.on_message("spec.suspend is true: no trial runs until it is false")
                    break
                if decision.start_workers:
                    # An ended study asked to go on (run again, --trials N): workers claim.
                    bridge.clear_ended(study._storage, study._study_id)
                for _ in range(decision.start_workers):
                    self._start_worker(study)
                time.sleep(POLL_SECONDS)
                ended = self._reap(study, spec)
                ledger = self._tally(study)
                self.on_progress(self._progress(spec, ledger))
        except KeyboardInterrupt as interrupt:
            interrupted, self._stopped_by = True, stopped_by(interrupt)
            self._stop_workers(study, spec, reason=f"stopped by {self._stopped_by}")
        ledger = self._tally(study)
        if spec.trial.checkpoints is not None:
            # Every worker is gone: a checkpoint no waiting trial holds is of no more use.
            settings, trials = spec.trial.checkpoints, study.get_trials(deepcopy=False)
            checkpoints.sweep(settings, study.study_name, trials, grace=dt.timedelta(0))
        self.on_progress(self._progress(spec, ledger))
        stop_requested = bridge.stored_stop(study._storage, study._study_id)
        reason = stop_reason(
            spec,
            ledger.spending,
            now=time.time(),
            deadline=deadline,
            stop_requested=stop_requested,
        )
        message = describe(reason, spec, ledger.spending, stop_requested) if reason else ""
        counts = ledger.counts
        if counts.complete == 0 and counts.failed and not (reason and reason.is_failure):
            message = f"no trial completed ({counts.failed} failed): the study failed" + (
                f"; {message}" if message else ""
            )
        verified = None
        if spec.verify is not None and reason is not None and not reason.is_failure:
            verified = self._verify(spec)
        return LocalResult(
            verified=verified,
            study_name=self.study_name,
            counts=counts,
            stop=reason,
            stop_message=message,
            interrupted=interrupted,
            stopped_by=self._stopped_by,
            best_trials=best_summaries(ledger),
            failures=sorted(self._failures.values(), key=lambda item: -len(item[1])),
            requeued=sorted(self._stopped_now),
            cut_off=sorted(self._cut_off),
            already_complete=already_complete,
            spend=spend_of(spec, ledger.spending.trial_seconds),
        )

    def _verify(self, spec: StudySpec) -> VerifiedStatus | None:
        """spec.verify, once the budget is spent: the best trials' repeats, run by
        workers as trials are (see :func:`verify_local`)."""
        assert spec.verify is not None
        try:
            return verify_local(
                self.document,
                self.url,
                top=spec.verify.top,
                repeats=spec.verify.repeats,
                parallelism=self.parallelism,
                log_dir=self.log_dir.with_name(self.log_dir.name + ".verify"),
                source=self.source,
                on_message=self.on_message,
                on_progress=self.on_verify_progress,
            )
        except KeyboardInterrupt as interrupt:
            self.on_message(
                f"verification stopped by {stopped_by(interrupt)}: kubetune verify goes on with it"
            )
            return None

    def _progress(self, spec: StudySpec, ledger: TrialLedger) -> Progress:
        multi = spec.objective.is_multi_objective
        best = [] if multi else best_summaries(ledger, limit=1)
        spending = ledger.spending
        return Progress(
            counts=ledger.counts,
            max_trials=trial_limit(spec),
            best_number=best[0]["number"] if best else None,
            best_values=best[0]["values"] if best else None,
            spend=spend_of(spec, spending.trial_seconds),
            done=spending.settled,
            new_bests=None if multi else ledger.new_bests,
            front=len(ledger.best) if multi else None,
        )


class VerifyError(KubetuneError, ValueError):
    """The study cannot be verified (several objectives, no completed trial)."""


def verify_local(
    document: Study,
    url: str,
    *,
    top: int,
    repeats: int,
    parallelism: int | None = None,
    log_dir: Path | None = None,
    source: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> VerifiedStatus:
    """Run the ``repeats`` repeats of the ``top`` best trials of ``document``'s local
    study (those not run yet) with local workers, and return (and store in the study)
    each one's mean and interval and the winner.

    ``source``: the Study file, refused (SpecChangeRefused) when another file ran the
    study. Raises :class:`VerifyError` for a study that cannot be verified, and
    :class:`~kubetune.errors.NotFound` for one that has not run.
    """
    name = document.spec.storage.study_name or document.metadata.name
    say = on_message or (lambda _message: None)
    study = load_stored_study(url, name, hint="run it first: kubetune run")
    try:
        check_source(study, document, source.resolve() if source is not None else None)
        spec = bridge.stored_spec(study._storage, study._study_id) or document.spec
        try:
            repeats_spec, queued = prepare_verification(study, spec, top, repeats)
        except ValueError as error:
            raise VerifyError(str(error)) from None
        total = repeats_spec.budget.max_trials
        say(
            f"verifying the best {top} trial(s) of {name!r}: {repeats} repeats each with "
            f"other seeds ({queued} to run, {total - queued} ran before)"
        )
        if queued:
            repeats_document = Study(metadata=document.metadata, spec=repeats_spec)
            LocalRun(
                repeats_document,
                url,
                parallelism=parallelism or spec.budget.parallelism,
                log_dir=log_dir,
                on_progress=on_progress,
                on_message=on_message,
            ).run()
        verified = summarize(study)
        assert verified is not None  # prepare_verification made the repeats study
        return verified
    finally:
        dispose(study)


def check_source(study: optuna.Study, document: Study, source: Path | None) -> None:
    """Refuse ``study`` for the Study file ``source`` when another file ran it.

    Studies are named by ``metadata.name``, and one storage (the embedded
    PostgreSQL) holds every project's: two projects' ``sweep`` must not share
    trials. A spec that sets ``spec.storage.studyName`` shares its study on purpose.
    """
    if source is None or document.spec.storage.study_name:
        return
    recorded = study._storage.get_study_system_attrs(study._study_id).get(SOURCE_ATTR)
    if recorded is None or recorded == str(source):
        return
    name = study.study_name
    raise SpecChangeRefused(
        name,
        ["source"],
        f"study {name!r} in this storage was run from {recorded}, not from {source}; "
        "two Study files with one name would share trials.\n"
        "  To keep both: give this one a new name (metadata.name), or, to share the "
        f"study on purpose, set spec.storage.studyName: {name}.\n"
        f"  To delete the other file's {len(study.get_trials(deepcopy=False))} trials and "
        f"start over from this one: kubetune run {_shown(source)} --fresh.",
    )


def delete_local_study(document: Study, url: str, source: Path | None) -> int:
    """Delete the local study of the Study file ``source``; returns how many trials it had.

    Raises :class:`~kubetune.errors.NotFound` when there is none and
    :class:`~kubetune.errors.SpecChangeRefused` when another file ran it.
    """
    import optuna

    name = document.spec.storage.study_name or document.metadata.name
    storage = open_storage(url, retry_seconds=FIRST_CONNECT_SECONDS)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise NotFound("study", name, hint="nothing to delete") from None
    check_source(study, document, source.resolve() if source is not None else None)
    trials = len(study.get_trials(deepcopy=False))
    optuna.delete_study(study_name=name, storage=storage)
    with contextlib.suppress(KeyError):  # its verification repeats (spec.verify) go too
        optuna.delete_study(study_name=verify_study_name(name), storage=storage)
    return trials


def is_study_file(target: str) -> bool:
    """Whether ``target`` names a Study file or an Optuna script (rather than a Study by
    name, which holds no dot)."""
    return Path(target).is_file() or target.endswith((".yaml", ".yml", ".json", ".py"))


@contextlib.contextmanager
def local_optuna_study(path: Path, *, storage: str | None = None) -> Iterator[optuna.Study]:
    """The local study of the Study file ``path`` (see :func:`open_optuna_study`), or of
    the Optuna script ``path`` (``.py``: the study ``kubetune run script.py`` ran, found
    by running the script up to its ``study.optimize``).

    Raises :class:`~kubetune.errors.NotFound` when it has not run yet, and
    :class:`~kubetune.errors.SpecChangeRefused` when the study of that name was run
    from another file (it holds another project's trials).
    """
    from kubetune.local.embedded import local_storage
    from kubetune.study.spec import SpecError, load_study

    if not path.is_file():
        raise SpecError([(str(path), "no such file")])
    if path.suffix == ".py":
        from kubetune.local.script import study_of_script

        document, storage = study_of_script(path, storage)
    else:
        document = load_study(path)
    name = document.spec.storage.study_name or document.metadata.name
    with local_storage(storage, document) as url:
        study = load_stored_study(url, name, hint=f"run it first: kubetune run {path}")
        try:
            check_source(study, document, path.resolve())
            yield study
        finally:
            # Before the embedded server stops: it would cut these connections.
            dispose(study)


def shown_reason(trial: optuna.trial.FrozenTrial, lines: int = REASON_LINES) -> str:
    """A failed trial's reason as users see it: its first line (what went wrong), then
    the last ``lines`` lines of the rest (the end of the traceback or of stderr)."""
    headline = failure_summary(trial)
    rest = str(trial.user_attrs.get(FAIL_REASON_ATTR) or "").strip().splitlines()[1:]
    if rest and rest[-1].strip() and headline.endswith(rest[-1].strip()):
        rest.pop()  # a traceback's last line, already the first line: said once is enough
    return "\n".join([headline, *rest[-lines:]])


def _shown(path: Path) -> str:
    """``path`` as a user would type it here: relative to the working folder if inside it."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def write_best_params(result: LocalResult, path: Path) -> bool:
    """Write ``best_params.json`` (UTF-8) for a training script; False if no trial completed."""
    params = result.best_params
    if params is None:
        return False
    path.write_text(json.dumps(params, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_description(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


#: How the trial runner starts the line saying why it gave up (kubetune_trial.cli).
_GIVE_UP_PREFIX = "kubetune-trial: "


def _given_up(log_tail: str) -> str:
    """Why a worker gave up: its last ``kubetune-trial:`` line and what follows, without
    the traceback before it (that stays in the log); else the log's last lines."""
    lines = log_tail.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(_GIVE_UP_PREFIX):
            return "\n".join([lines[index].removeprefix(_GIVE_UP_PREFIX), *lines[index + 1 :]])
    return log_tail


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
