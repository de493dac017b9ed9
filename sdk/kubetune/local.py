"""Local mode: run a Study file on this machine, with worker processes instead of pods.

``kubetune run study.yaml`` starts ``parallelism`` processes of the trial
runner (``python -m kubetune_trial``, the same code a trial pod runs) against
one storage, the embedded PostgreSQL by default, and supervises them the way
the operator supervises pods: a worker that dies gets its running trial
failed with the reason and retried as the spec allows, and is replaced.

Example:
    >>> from kubetune.spec import load_study
    >>> result = LocalRun(load_study("examples/quickstart.yaml"), url).run()  # doctest: +SKIP
    >>> result.best_params                                                   # doctest: +SKIP
    {'learning_rate': 0.08, 'num_leaves': 31}
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune import bridge
from kubetune.budget import StopReason, describe, stop_reason
from kubetune.ledger import TrialLedger
from kubetune.recovery import FAIL_REASON_ATTR, WORKER_ATTR, fail_lost_trials
from kubetune.spec import Study, StudySpec, TrialCounts
from kubetune.storage import open_storage, scrub
from kubetune.study_source import check_objective_code
from kubetune.worker import (
    EXIT_CONFIG_ERROR,
    EXIT_OK,
    EXIT_STORAGE_ERROR,
    STORAGE_URL_ENV,
    WorkerConfig,
)

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

#: How often the supervisor looks at the workers and the storage.
POLL_SECONDS = 0.5
#: Seconds workers get to finish telling their trial after SIGTERM, before SIGKILL.
STOP_GRACE = 10.0
#: Consecutive workers dying before they finish a trial, after which the run gives up.
MAX_CRASHES_WITHOUT_PROGRESS = 3
#: How long ``kubetune run`` tries to reach the storage at the start: a wrong URL or a
#: database that is down gets an answer in seconds. (Once running, a lost
#: connection is retried for much longer: see ``storage.RECONNECT_SECONDS``.)
FIRST_CONNECT_SECONDS = 5.0


class LocalRunError(RuntimeError):
    """The run could not go on; the message says why (and holds no password)."""


@dataclasses.dataclass(frozen=True)
class Progress:
    """What the supervisor reports while the study runs."""

    counts: TrialCounts
    max_trials: int
    best_number: int | None
    best_values: list[float] | None


@dataclasses.dataclass
class LocalResult:
    """How a local run ended."""

    study_name: str
    counts: TrialCounts
    stop: StopReason | None
    stop_message: str
    interrupted: bool
    best_trials: list[dict[str, Any]]
    requeued: list[int] = dataclasses.field(default_factory=list)
    failures: list[tuple[str, list[int]]] = dataclasses.field(default_factory=list)
    """Why trials failed in this run, most frequent first: a reason (the first line of
    the first trial's; reasons differing only in numbers count as one) and the numbers
    of the trials that failed so."""

    @property
    def failed(self) -> bool:
        return self.stop is not None and self.stop.is_failure

    @property
    def best_params(self) -> dict[str, Any] | list[dict[str, Any]] | None:
        """What ``best_params.json`` holds: the best trial's params, or for a
        multi-objective study the Pareto front (values and params)."""
        if not self.best_trials:
            return None
        if len(self.best_trials) == 1 and self.best_trials[0].get("value") is not None:
            return dict(self.best_trials[0]["params"])
        return [{"values": t["values"], "params": t["params"]} for t in self.best_trials]


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
    """

    def __init__(
        self,
        study: Study,
        storage_url: str,
        *,
        trials: int | None = None,
        parallelism: int | None = None,
        fresh: bool = False,
        log_dir: Path | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_message: Callable[[str], None] | None = None,
    ) -> None:
        self.document = study
        self.url = storage_url
        self.study_name = study.spec.storage.study_name or study.metadata.name
        self.trials = trials
        self.parallelism = parallelism or study.spec.budget.parallelism
        self.fresh = fresh
        self.log_dir = log_dir or Path.cwd() / ".kubetune" / "logs" / self.study_name
        self.on_progress = on_progress or (lambda _progress: None)
        self.on_message = on_message or (lambda _message: None)
        self.host = socket.gethostname()
        self.run_id = f"{self.host}:{os.getpid()}"
        self._workers: list[_WorkerProcess] = []
        self._next_index = 0
        self._crashes_without_progress = 0
        self._trials_at_start = 0
        self._failures: dict[str, tuple[str, list[int]]] = {}  # key -> (example, numbers)

    # -------------------------------------------------------------- setup

    def _prepare(self) -> tuple[optuna.Study, StudySpec]:
        import optuna

        storage = open_storage(self.url, retry_seconds=FIRST_CONNECT_SECONDS)
        if self.fresh:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=self.study_name, storage=storage)
                self.on_message(f"deleted the earlier study {self.study_name!r}")
        spec = self.document.spec
        budget = spec.budget.model_copy(update={"parallelism": self.parallelism})
        if self.trials is not None:
            spent = 0
            with contextlib.suppress(KeyError):
                existing = optuna.load_study(study_name=self.study_name, storage=storage)
                trials = existing.get_trials(deepcopy=False)
                spent = TrialLedger.of(trials, spec.objective.study_directions).spending.trials
            budget = budget.model_copy(update={"max_trials": spent + self.trials})
        spec = spec.model_copy(update={"budget": budget})
        timeout = spec.budget.timeout_seconds
        deadline = time.time() + timeout if timeout else None
        study = bridge.prepare_study(storage, self.study_name, spec, deadline=deadline)
        check_objective_code(study, self.document)
        self._recover_abandoned(study, spec)
        self._trials_at_start = len(study.get_trials(deepcopy=False))
        self._ledger = TrialLedger(spec.objective.study_directions)
        self._ledger.update(study.get_trials(deepcopy=False))  # earlier runs' failures are old news
        return study, spec

    def _tally(self, study: optuna.Study) -> TrialLedger:
        """The ledger, brought up to date with the storage; a trial failing for a
        reason not seen before in this run is announced."""
        for trial in self._ledger.update(study.get_trials(deepcopy=False)):
            if trial.state.name != "FAIL":
                continue
            reason = failure_summary(trial)
            key = _NUMBER.sub("#", reason)
            if key not in self._failures:
                self.on_message(f"trial {trial.number} failed: {reason}")
                self._failures[key] = (reason, [])
            self._failures[key][1].append(trial.number)
        return self._ledger

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
            numbers = fail_lost_trials(
                study,
                abandoned,
                "its local run ended before the trial did",
                retries=spec.trial.retries,
                requeue=True,
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
            )
        done = self._tally(study).counts.finished
        self._workers.append(_WorkerProcess(index, name, process, log_path, done))

    def _reap(self, study: optuna.Study, spec: StudySpec) -> None:
        """Handle workers that exited: done, broken config, or died mid-trial."""
        for worker in list(self._workers):
            code = worker.process.poll()
            if code is None:
                continue
            self._workers.remove(worker)
            if code == EXIT_OK:
                continue
            last_words = _tail(worker.log_path)
            if code in (EXIT_CONFIG_ERROR, EXIT_STORAGE_ERROR):
                self._stop_workers(study, spec, reason="another worker could not run")
                raise LocalRunError(
                    scrub(last_words or f"worker exited with code {code}", self.url)
                )
            reason = f"worker process {worker.name} {_exit_description(code)}"
            lost = [
                t
                for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get(WORKER_ATTR) == worker.name
            ]
            failed = fail_lost_trials(study, lost, reason, retries=spec.trial.retries)
            self.on_message(
                f"{reason}; trial(s) {failed or 'none'} marked failed"
                + (" and retried" if failed and spec.trial.retries else "")
            )
            progressed = self._tally(study).counts.finished > (
                worker.trials_done_at_start + len(failed)
            )
            self._crashes_without_progress = 0 if progressed else self._crashes_without_progress + 1
            if self._crashes_without_progress >= MAX_CRASHES_WITHOUT_PROGRESS:
                self._stop_workers(study, spec, reason="workers keep dying")
                raise LocalRunError(
                    f"{MAX_CRASHES_WITHOUT_PROGRESS} workers in a row died without finishing a "
                    f"trial; the last: {reason}. Its log: {worker.log_path}\n"
                    + scrub(last_words, self.url)
                )

    def _stop_workers(self, study: optuna.Study, spec: StudySpec, *, reason: str) -> list[int]:
        """SIGTERM every worker, wait, SIGKILL stragglers; re-queue what they ran."""
        for worker in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for worker in self._workers:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.process.pid, signal.SIGKILL)
                worker.process.wait()
        names = {worker.name for worker in self._workers}
        self._workers.clear()
        lost = [
            t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(WORKER_ATTR) in names
        ]
        return fail_lost_trials(study, lost, reason, retries=spec.trial.retries, requeue=True)

    # ---------------------------------------------------------------- run

    def run(self) -> LocalResult:
        study, spec = self._prepare()
        deadline = bridge.stored_deadline(study._storage, study._study_id)
        interrupted = False
        requeued: list[int] = []
        try:
            if (
                stop_reason(spec, self._tally(study).spending, now=time.time(), deadline=deadline)
                is None
            ):
                for _ in range(self.parallelism):
                    self._start_worker(study)
            while self._workers:
                time.sleep(POLL_SECONDS)
                self._reap(study, spec)
                ledger = self._tally(study)
                self.on_progress(self._progress(spec, ledger))
                budget_left = (
                    stop_reason(spec, ledger.spending, now=time.time(), deadline=deadline) is None
                )
                while budget_left and len(self._workers) < self.parallelism:
                    self._start_worker(study)
        except KeyboardInterrupt:
            interrupted = True
            requeued = self._stop_workers(study, spec, reason="stopped by Ctrl-C")
        ledger = self._tally(study)
        self.on_progress(self._progress(spec, ledger))
        reason = stop_reason(spec, ledger.spending, now=time.time(), deadline=deadline)
        return LocalResult(
            study_name=self.study_name,
            counts=ledger.counts,
            stop=reason,
            stop_message=describe(reason, spec, ledger.spending) if reason else "",
            interrupted=interrupted,
            best_trials=best_summaries(ledger),
            failures=sorted(self._failures.values(), key=lambda item: -len(item[1])),
            requeued=requeued,
        )

    def _progress(self, spec: StudySpec, ledger: TrialLedger) -> Progress:
        best = best_summaries(ledger, limit=1)
        return Progress(
            counts=ledger.counts,
            max_trials=spec.budget.max_trials,
            best_number=best[0]["number"] if best else None,
            best_values=best[0]["values"] if best else None,
        )


#: Numbers in a reason (a value, a size, a line) do not make it another reason.
_NUMBER = re.compile(r"\d+(\.\d+)?")


def failure_summary(trial: FrozenTrial) -> str:
    """The first line of a failed trial's reason."""
    reason = str(trial.user_attrs.get(FAIL_REASON_ATTR) or "").strip()
    return reason.splitlines()[0] if reason else "no reason recorded"


def best_summaries(ledger: TrialLedger, limit: int = 10) -> list[dict[str, Any]]:
    """The best trial (one objective) or up to ``limit`` Pareto-optimal trials."""
    return [
        {
            "number": t.number,
            "value": t.values[0] if len(t.values) == 1 else None,
            "values": list(t.values),
            "params": dict(t.params),
        }
        for t in ledger.best[:limit]
    ]


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


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
