"""One study's reconciliation: look at the storage and the pods, act, write the status.

Everything the operator knows is rebuilt each tick from three sources — the
Study object, the Optuna storage and the pods — so an operator killed at any
moment and started again picks up where it was, and duplicates nothing.

A tick, in order:

1. validate the spec (an invalid one fails the study with a condition naming the field);
2. find the storage and create or load the Optuna study (named from the
   namespace, name and uid; a budget edit is stored for the workers, a change
   to what defines the trials is refused);
3. read the trials, then the pods (in that order, so a pod that claims a trial
   meanwhile is seen alive); finished trials are folded into a
   :class:`~kubetune.engine.ledger.TrialLedger` once, so a tick's cost does not grow
   with the study; fail the running trials of pods that are gone,
   with the pod's reason, and retry them as the spec allows;
4. start pods up to ``parallelism`` while the budget lasts, or stop them when
   suspended, out of time, or past ``maxFailedTrials``;
5. write the status (only when it changed), the best-params ConfigMap and an
   Event for each new best trial.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubetune.engine import bridge, fork
from kubetune.engine.ledger import TrialLedger
from kubetune.engine.recovery import WORKER_ATTR, fail_lost_trials, lost_trials
from kubetune.engine.standing import Standing
from kubetune.engine.storage import StorageUnavailable, open_storage, scrub
from kubetune.engine.supervision import EndedWorker, Outcome, Situation, decide
from kubetune.engine.trials import best_params_document
from kubetune.engine.verify import prepare_verification, summarize, verify_study_name
from kubetune.engine.worker import EXIT_CONFIG_ERROR
from kubetune.study.spec import SpecError, StudySpec, validate_metadata, validate_spec

from kubetune_operator import gangs, kube
from kubetune_operator.config import OperatorConfig
from kubetune_operator.kube import KubeCalls
from kubetune_operator.labels import (
    BEST_PARAMS_KEY,
    COMPONENT_LABEL,
    GANG_LABEL,
    HANDLED_ANNOTATION,
    KUEUE_PRIORITY_CLASS_LABEL,
    MANAGED_BY_LABEL,
    STUDY_LABEL,
    STUDY_UID_LABEL,
    TRIAL_LABEL,
    best_params_configmap,
    optuna_study_name,
    storage_secret,
    study_selector,
)
from kubetune_operator.pods import (
    GangPlace,
    disruption,
    end_reason,
    exit_code,
    has_ended,
    is_live,
    owner_reference,
    queue_wait,
    taken_away,
    termination_message,
    trial_pod,
    trials_per_pod,
    waiting_problem,
)
from kubetune_operator.status import (
    SCRIPT_NOTE_REASON,
    condition_of,
    now_iso,
    set_condition,
    trial_status,
    with_script_note,
)
from kubetune_operator.tenants import Tenants, TenantUnavailable

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

#: Emits a Kubernetes Event on the Study: (type, reason, message).
EventSink = Callable[[str, str, str], None]

TERMINAL_PHASES = ("Succeeded", "Failed")
#: How long a tick waits for a study's storage to answer the first time.
STORAGE_FIRST_CONNECT_SECONDS = 5.0
#: Failed pods kept for ``kubectl logs`` while the study runs; older ones are deleted.
KEEP_FAILED_PODS = 5
#: While trials run, status.spend grows at every look; alone, it is written again at most
#: this often (a trial starting or ending writes it at once), so a running Study's status
#: and its watchers are not patched at every look for it. Budgets read the storage, not
#: this figure, and stop on time.
SPEND_REFRESH_SECONDS = 30.0


class StorageNotReady(Exception):
    """The study's storage cannot be used yet; the message is safe to show."""


@dataclass
class StudyReconciler:
    """Reconciles one Study; keeps its Optuna study open between ticks."""

    config: OperatorConfig
    emit: EventSink
    #: The Kubernetes calls (:mod:`kubetune_operator.kube`; a test passes its own).
    kube: KubeCalls = field(default=kube)
    #: Asked after observing, before acting: True once this replica must stop
    #: (paused in favour of another, or exiting), so a tick in flight acts on nothing.
    stopping: Callable[[], bool] = field(default=lambda: False)
    #: Each namespace's database and role (:mod:`kubetune_operator.tenants`), shared by
    #: every Study of the operator; None: Studies share the operator's database.
    tenants: Tenants | None = None
    _study: optuna.Study | None = None
    _ledger: TrialLedger | None = None
    #: The finished trials' curves, for ranking the running ones (folded with the ledger).
    _standing: Standing | None = None
    #: Set once the API server (Kueue's webhook) refused a priority-class change.
    _ranking_refused: bool = False
    _url: str | None = None
    _refused_change: str | None = field(default=None)
    _trial_account_ready: bool = False
    _observed: dict[str, Any] = field(default_factory=dict)
    #: The status the body showed at this tick's start.
    _seen_status: dict[str, Any] = field(default_factory=dict)
    #: (the body's status then, the status after our patch) until the body shows a change.
    _unconfirmed: tuple[dict[str, Any], dict[str, Any]] | None = None
    #: When status.spend was last computed afresh (time.monotonic()).
    _spend_refreshed: float = float("-inf")
    #: Set by a tick that left pods whose workers have nothing more to run and are
    #: exiting: their ends are not announced, so the next look should come soon.
    pods_exiting: bool = False

    # --------------------------------------------------------------- tick

    def tick(self, body: Mapping[str, Any]) -> bool:
        """Reconcile once. Returns True when the study is finished (nothing more to do)."""
        self.pods_exiting = False
        meta = body["metadata"]
        seen = dict(body.get("status") or {})
        if self._unconfirmed is not None and seen == self._unconfirmed[0]:
            # Our last status patch has not come back through the watch yet (a trial end
            # can wake a tick right after the last one): what we wrote is the status, or
            # this tick would act again on what the last one did (a second Event).
            self._observed = dict(self._unconfirmed[1])
        else:
            self._unconfirmed = None
            self._observed = seen
        self._seen_status = seen
        status = dict(self._observed)  # a working copy; _write compares with what was observed
        generation = meta.get("generation")
        try:
            validate_metadata(meta)
            spec = validate_spec(body.get("spec") or {})
            bridge.check_buildable(spec)
        except SpecError as error:
            self._fail_invalid(meta, status, error, generation)
            return True
        if (
            status.get("phase") in TERMINAL_PHASES
            and status.get("observedGeneration") == generation
        ):
            return True
        try:
            url, secret = self._storage(meta, spec, status)
            study, spec = self._optuna_study(meta, spec, status, url)
            return self._run(meta, spec, status, study, secret, generation)
        except (StorageNotReady, StorageUnavailable) as error:
            # Not reachable, or lost mid-tick for longer than the storage's reconnect
            # window (a database restart shorter than that goes unnoticed).
            self._write(
                meta,
                status,
                {
                    "phase": status.get("phase") or "Pending",
                    "conditions": set_condition(
                        status.get("conditions") or [],
                        "StorageReady",
                        "False",
                        "StorageUnavailable",
                        str(error),
                    ),
                },
            )
            return False
        except SpecError as error:
            self._fail_invalid(meta, status, error, generation)
            return True

    # ------------------------------------------------------------ storage

    def _storage(
        self, meta: Mapping[str, Any], spec: StudySpec, status: dict[str, Any]
    ) -> tuple[str, tuple[str, str]]:
        """The storage URL and the Secret (name, key) that gives it to the pods."""
        namespace, name = meta["namespace"], meta["name"]
        ref = spec.storage.secret_ref
        if ref is not None:
            url = self.kube.read_secret_value(namespace, ref.name, ref.key)
            if url is None:
                raise StorageNotReady(
                    f"spec.storage.secretRef: Secret {ref.name!r} with key {ref.key!r} "
                    f"not found in namespace {namespace!r}"
                )
            return url, (ref.name, ref.key)
        if spec.storage.url is not None:
            raise StorageNotReady(
                "spec.storage.url: a cluster study reads its database URL from a Secret; "
                "use spec.storage.secretRef"
            )
        if self.config.storage_url is None:
            raise StorageNotReady(
                "spec.storage: the study names no storage and the operator has no default "
                "(KUBETUNE_STORAGE_URL is not set)"
            )
        url = self._default_url(namespace, status, create=True)
        assert url is not None
        # The pods' URL may name a pooler; the operator's own connections stay direct.
        pod_url = self.tenants.pod_url(url) if self.tenants is not None else url
        secret_name = storage_secret(name)
        self.kube.ensure_secret(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": secret_name,
                    "labels": {STUDY_LABEL: name, MANAGED_BY_LABEL: "kubetune"},
                    "ownerReferences": [owner_reference(meta)],
                },
                "type": "Opaque",
                "stringData": {"url": pod_url},
            },
        )
        return url, (secret_name, "url")

    def _default_url(self, namespace: str, status: dict[str, Any], *, create: bool) -> str | None:
        """The URL of a Study that names no storage: its namespace's tenant (made when
        ``create``), or the shared database for a Study that started there before
        tenants were on (``status.database`` unset)."""
        database = status.get("database")
        legacy = status.get("studyName") and not database
        if self.tenants is None or legacy:
            if database:
                raise StorageNotReady(
                    f"status.database: the study is in the database {database!r} of its "
                    "namespace, but the operator's tenants are off (KUBETUNE_STORAGE_TENANTS)"
                )
            return self.config.storage_url
        if not create and not status.get("studyName"):
            return None
        try:
            tenant = self.tenants.tenant(namespace)
        except TenantUnavailable as error:
            raise StorageNotReady(str(error)) from None
        status["database"] = tenant.database
        return tenant.url

    def _optuna_study(
        self,
        meta: Mapping[str, Any],
        spec: StudySpec,
        status: dict[str, Any],
        url: str,
    ) -> tuple[optuna.Study, StudySpec]:
        """Create or load the Optuna study; returns it and the spec in force.

        Budget, suspend and pod settings follow the Study; the objective, search
        space, sampler and objective code stay as the study started.
        """
        import optuna

        name = _optuna_name(meta, spec, status)
        if self._study is None or self._url != url or self._study.study_name != name:
            storage = shared_storage(url)
            try:
                storage.get_study_id_from_name(name)
                self._study = optuna.load_study(study_name=name, storage=storage)
            except KeyError:
                timeout = spec.budget.timeout_seconds
                self._study = bridge.prepare_study(
                    storage, name, spec, deadline=time.time() + timeout if timeout else None
                )
                status["studyName"] = name
                status["startTime"] = now_iso()
            self._url = url
            self._ledger = TrialLedger([d.name.lower() for d in self._study.directions])
            self._standing = None
        study = self._study
        if spec.fork_from is not None and not status.get("parent"):
            # Every tick until the copy shows in the status: a tick that found no parent
            # yet keeps its study open, and must not start pods before the copy.
            status["parent"] = self._copy_from_parent(meta, spec, study)
        stored = bridge.stored_spec(study._storage, study._study_id) or spec
        in_force = spec.model_copy(
            update={
                "objective": stored.objective,
                "search_space": stored.search_space,
                "sampler": stored.sampler,
                "pruner": stored.pruner,
                "trial": spec.trial.model_copy(
                    update={
                        "python": stored.trial.python,
                        "command": stored.trial.command,
                        "builtin": stored.trial.builtin,
                    }
                ),
            }
        )
        changed = spec.changed_started_fields(stored)
        self._refused_change = (
            f"spec.{changed[0]}: the study has started; changing its {' and '.join(changed)} "
            "would make its trials incomparable. The change is ignored: create a new Study instead "
            f"(kubetune fork {meta['name']} --set FIELD=VALUE starts one from its finished "
            "trials that fit)"
            if changed
            else None
        )
        if in_force.to_dict() != stored.to_dict():
            bridge.store_spec(study._storage, study._study_id, in_force)
            if in_force.budget.timeout != stored.budget.timeout:
                started = status.get("startTime")
                timeout = in_force.budget.timeout_seconds
                deadline = _epoch(started) + timeout if timeout and started else None
                study._storage.set_study_system_attr(
                    study._study_id, bridge.DEADLINE_ATTR, deadline
                )
        status.setdefault("studyName", name)
        return study, in_force

    def _copy_from_parent(
        self, meta: Mapping[str, Any], spec: StudySpec, study: optuna.Study
    ) -> dict[str, Any]:
        """A fork's copy of its parent's trials, made before its first pod (once: a
        copy recorded in the study is not made again, even if the parent is gone)."""
        import optuna

        done = fork.parent_status(study)
        if done is None:
            assert spec.fork_from is not None
            namespace, parent_name = meta["namespace"], spec.fork_from.study
            parent = self.kube.find_study(namespace, parent_name)
            where = "spec.forkFrom.study"
            if parent is None:
                raise StorageNotReady(
                    f"{where}: Study {parent_name!r} not found in namespace {namespace!r}"
                )
            parent_status = dict(parent.get("status") or {})
            optuna_name = parent_status.get("studyName")
            if not optuna_name:
                raise StorageNotReady(f"{where}: Study {parent_name!r} has not started yet")
            parent_spec = validate_spec(parent.get("spec") or {})
            ref = parent_spec.storage.secret_ref
            url = (
                self.kube.read_secret_value(namespace, ref.name, ref.key)
                if ref is not None
                else self._default_url(namespace, parent_status, create=False)
            )
            if url is None:
                raise StorageNotReady(f"{where}: the storage of Study {parent_name!r} is not found")
            parent_study = optuna.load_study(study_name=optuna_name, storage=shared_storage(url))
            done = fork.copy_parent_trials(parent_study, study, spec, parent_name=parent_name)
        return done.to_dict()

    # ---------------------------------------------------------------- run

    def _run(
        self,
        meta: Mapping[str, Any],
        spec: StudySpec,
        status: dict[str, Any],
        study: optuna.Study,
        secret: tuple[str, str],
        generation: int | None,
    ) -> bool:
        """Observe the pods and the trials, let the supervision policy decide, act."""
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        ledger = self._tally(study)
        pods = [
            p
            for p in self.kube.list_pods(namespace, study_selector(name))
            if p["metadata"].get("labels", {}).get(STUDY_UID_LABEL) == uid
        ]
        # A multi-node trial's gang is one worker, its leader: the policy sees leaders only.
        gang_ends = self._keep_gangs_together(study, spec, namespace, pods, ledger.workers)
        stopped = {worker.name for worker in gang_ends}
        members = [p for p in pods if gangs.is_member(p) and is_live(p)]
        pods = [p for p in gangs.leaders(pods) if p["metadata"]["name"] not in stopped]
        live = [p for p in pods if is_live(p)]
        live_names = {p["metadata"]["name"] for p in live}

        verifying = condition_of(status.get("conditions") or [], "Verifying")
        if spec.verify is not None and verifying and verifying.get("status") == "True":
            # The budget is spent and the repeats run: the study's own trials are over.
            return self._verify(meta, spec, status, study, secret, pods, generation)
        if self._recover_lost_trials(study, spec, ledger, pods, live_names):
            ledger = self._tally(study)
        ended = gang_ends + self._ended_pods(namespace, pods, ledger)

        conditions = list(status.get("conditions") or [])
        conditions = set_condition(
            conditions, "StorageReady", "True", "StorageReachable", "the storage answers"
        )
        conditions = self._spec_change_conditions(conditions)
        conditions, noted = with_script_note(conditions, ledger.script_note)
        if noted:  # once: `kubectl describe` shows the Event, the status keeps the condition
            self.emit("Normal", SCRIPT_NOTE_REASON, str(ledger.script_note))

        busy = {str(t.user_attrs.get(WORKER_ATTR)) for t in ledger.running}
        # Held back by a queue (Kueue has not admitted them): waiting, not failing.
        queued = [
            p for p in live if queue_wait(p) is not None and p["metadata"]["name"] not in busy
        ]
        queued_names = {p["metadata"]["name"] for p in queued}
        # Done with their trialsPerPod and exiting: replaced now, when the trial-end
        # push wakes this look, rather than at the next look after their pods end.
        finishing = [
            p
            for p in live
            if p["metadata"]["name"] not in busy
            and (quota := trials_per_pod(p)) is not None
            and ledger.finished_by(p["metadata"]["name"]) >= quota
        ]
        decision = decide(
            Situation(
                spec=spec,
                spending=ledger.spending,
                now=time.time(),
                deadline=bridge.stored_deadline(study._storage, study._study_id),
                stop_requested=bridge.stored_stop(study._storage, study._study_id),
                live_workers=len(live),
                busy_workers=sum(1 for p in live if p["metadata"]["name"] in busy),
                queued_workers=len(queued),
                finishing_workers=len(finishing),
                running_trials=len(ledger.running),
                ended=ended,
                ends_without_progress=int(status.get("failedPodsWithoutTrials") or 0),
            ),
            max_ends_without_progress=self.config.max_failed_pods_without_trials,
        )
        if self.stopping():
            return False
        # Done with their trialsPerPod, or running with none left to claim: these exit
        # by themselves, and the study goes on (or ends) once they have. (A pod still
        # pending is not about to exit.)
        self.pods_exiting = bool(finishing) or (
            decision.stop is not None
            and not decision.finished
            and any(
                p["metadata"]["name"] not in busy and p.get("status", {}).get("phase") == "Running"
                for p in live
            )
        )
        update: dict[str, Any] = {
            "studyName": status.get("studyName"),
            # With studyName, in one patch: a Study whose status names a study but no
            # database started before tenants (see _default_url).
            "database": status.get("database"),
            "startTime": status.get("startTime"),
            "observedGeneration": generation,
            "failedPodsWithoutTrials": decision.ends_without_progress,
        }
        if status.get("parent"):
            update["parent"] = status["parent"]
        if decision.ends_study:
            # Before the pods hear of it: a worker stopped now fails its trial with the
            # study's reason and queues no copy (see bridge.mark_ended).
            bridge.mark_ended(study._storage, study._study_id, decision.ends_study)
        if decision.stop_workers:
            self._stop_pods(study, spec, live, decision.stop_workers, requeue=decision.requeue)
            live = []
        if decision.finished:
            ledger = self._tally(study)
            reason = decision.stop.value if decision.stop else "TrialPodsFailing"
            if (
                spec.verify is not None
                and decision.phase == "Succeeded"
                and ledger.counts.complete
                and _verification_asked(spec, status)
            ):
                # spec.verify: before Succeeded, the best trials' repeats (see _verify).
                for pod in live:
                    self.kube.delete_pod(namespace, pod["metadata"]["name"])
                status["conditions"] = set_condition(
                    conditions, "Verifying", "True", reason, decision.reason
                )
                update.update(self._trial_status(meta, status, spec, ledger))
                return self._verify(meta, spec, status, study, secret, [], generation, update)
            return self._finish(
                meta,
                status,
                update,
                conditions,
                spec,
                ledger,
                decision.phase,
                reason,
                decision.reason,
            )

        refused: kube.ApiRefused | None = None
        update["phase"] = decision.phase
        if decision.phase == "Suspended":
            conditions = set_condition(
                conditions, "Suspended", "True", "Suspended", "spec.suspend is true"
            )
        elif condition_of(conditions, "Suspended"):
            conditions = set_condition(conditions, "Suspended", "False", "Running", "running")
        if decision.start_workers:
            # An ended study going on (its budget raised, the Study re-created on the same
            # storage): the new pods must be able to claim.
            bridge.clear_ended(study._storage, study._study_id)
            refused = self._start_pods(meta, spec, study, decision.start_workers, secret)
        if decision.retire_queued_workers:
            # The newest first: the older ones keep their place in the queue.
            newest = sorted(
                queued, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True
            )
            for pod in newest[: decision.retire_queued_workers]:
                self.kube.delete_pod(namespace, pod["metadata"]["name"])
            retired = {p["metadata"]["name"] for p in newest[: decision.retire_queued_workers]}
            queued = [p for p in queued if p["metadata"]["name"] not in retired]
            live = [p for p in live if p["metadata"]["name"] not in retired]
        if decision.retire_idle_workers:
            going = busy | queued_names | {p["metadata"]["name"] for p in finishing}
            idle = [p for p in live if p["metadata"]["name"] not in going]
            for pod in idle[: decision.retire_idle_workers]:
                self.kube.delete_pod(namespace, pod["metadata"]["name"])
        self._label_pods_with_trials(namespace, live, ledger)
        self._rank_for_preemption(namespace, spec, live, members, ledger)

        conditions = self._queue_conditions(conditions, spec, queued, len(live))
        # A gang's other pods too: one that cannot start holds its whole trial.
        started = [p for p in live if p["metadata"]["name"] not in queued_names]
        conditions = self._pod_conditions(
            conditions, started + [p for p in members if queue_wait(p) is None], refused
        )
        update["conditions"] = conditions
        update.update(self._trial_status(meta, status, spec, ledger))
        self._delete_old_failed_pods(namespace, failed_pods_list(pods))
        self._write(meta, status, update)
        # Suspended with every pod gone: nothing changes until the spec does.
        return decision.phase == "Suspended" and not live and not ledger.running

    def _verify(
        self,
        meta: Mapping[str, Any],
        spec: StudySpec,
        status: dict[str, Any],
        study: optuna.Study,
        secret: tuple[str, str],
        pods: Sequence[Mapping[str, Any]],
        generation: int | None,
        entering: Mapping[str, Any] | None = None,
    ) -> bool:
        """spec.verify, once the budget is spent: the repeats of the best trials (a study
        of their own, ``<study>.verify``: see :mod:`kubetune.engine.verify`) run in
        trial pods as any trial, ``status.verified`` shows their means as they end, and
        the study succeeds with the winner on the verified mean in the best-params
        ConfigMap. The condition ``Verifying`` keeps why the budget ended meanwhile.
        ``entering``: the status the tick that spent the budget computed."""
        import optuna

        assert spec.verify is not None
        namespace = meta["namespace"]
        conditions = list(status.get("conditions") or [])
        verifying = condition_of(conditions, "Verifying") or {}
        if _verification_asked(spec, status):
            prepare_verification(study, spec, spec.verify.top, spec.verify.repeats)
        repeats = optuna.load_study(
            study_name=verify_study_name(study.study_name), storage=study._storage
        )
        repeats_spec = bridge.stored_spec(repeats._storage, repeats._study_id)
        assert repeats_spec is not None
        ledger = TrialLedger.of(repeats.get_trials(deepcopy=False), ["minimize"])
        live_names = {p["metadata"]["name"] for p in pods if is_live(p)}
        self._recover_lost_trials(repeats, repeats_spec, ledger, pods, live_names)
        broken = [
            e
            for e in self._ended_pods(namespace, pods, ledger)
            if e.outcome is not Outcome.DONE and not e.progressed
        ]
        unfinished = [t for t in repeats.get_trials(deepcopy=False) if not t.state.is_finished()]
        if broken and unfinished:
            # A repeat pod that cannot run one would fail the same way again: the study's
            # own result stands, with the repeats that ended.
            fail_lost_trials(repeats, unfinished, f"verification stopped: {broken[0].reason}")
            self.emit("Warning", "VerificationStopped", broken[0].reason[:1000])
            unfinished = []
        verified = summarize(study)
        assert verified is not None
        shown = verified.model_dump(mode="json", by_alias=True)
        update: dict[str, Any] = {
            **(entering or {}),
            "observedGeneration": generation,
            "verified": shown,
        }
        if unfinished:
            if len(live_names) < min(repeats_spec.budget.parallelism, len(unfinished)):
                wanted = min(repeats_spec.budget.parallelism, len(unfinished)) - len(live_names)
                self._start_pods(meta, repeats_spec, repeats, wanted, secret)
            ended = len(repeats.get_trials(deepcopy=False)) - len(unfinished)
            update["phase"] = "Running"
            update["conditions"] = set_condition(
                conditions,
                "Verifying",
                "True",
                str(verifying.get("reason") or "Verifying"),
                str(verifying.get("message") or ""),
            )
            update["message"] = (
                f"verifying: {ended} of {repeats_spec.budget.max_trials} repeats of the best "
                f"{spec.verify.top} trial(s) ended"
            )
            self._write(meta, status, update)
            return False
        conditions = set_condition(
            conditions, "Verifying", "False", "Verified", "every repeat ended"
        )
        message = str(verifying.get("message") or "")
        winner = next((t for t in verified.trials if t.number == verified.winner), None)
        if winner is not None and winner.mean is not None:
            interval = f" [{winner.low:.6g}, {winner.high:.6g}]" if winner.low is not None else ""
            message += (
                f"; verified winner: trial {winner.number}, mean {winner.mean:.6g}{interval} "
                f"over {winner.repeats} repeats"
            )
            self._write_best_params(meta, best_params_document([], shown))
        self._ledger = None  # the study's own ledger, read again in full for the status
        return self._finish(
            meta,
            status,
            update,
            conditions,
            spec,
            self._tally(study),
            "Succeeded",
            str(verifying.get("reason") or "Verified"),
            message,
        )

    def _spec_change_conditions(self, conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """SpecChangeRefused while a started field's edit is refused (one Event when it starts)."""
        if self._refused_change:
            if (condition_of(conditions, "SpecChangeRefused") or {}).get("status") != "True":
                self.emit("Warning", "SpecChangeRefused", self._refused_change)
            return set_condition(
                conditions,
                "SpecChangeRefused",
                "True",
                "StartedFieldsChanged",
                self._refused_change,
            )
        if condition_of(conditions, "SpecChangeRefused"):
            return set_condition(
                conditions, "SpecChangeRefused", "False", "NoChange", "no refused change"
            )
        return conditions

    def _queue_conditions(
        self,
        conditions: list[dict[str, Any]],
        spec: StudySpec,
        queued: Sequence[Mapping[str, Any]],
        live: int,
    ) -> list[dict[str, Any]]:
        """``Queued=True`` while trial pods wait for a queue's admission (with the
        queue's name and how many wait; one Event when the waiting starts), False once
        none does."""
        previous = condition_of(conditions, "Queued") or {}
        if queued:
            queue = spec.trial.queue_name
            where = f"in the Kueue LocalQueue {queue!r}" if queue else "behind scheduling gates"
            text = (
                f"{len(queued)} of {live} trial pod(s) wait {where} to be admitted; "
                f"{queued[0]['metadata']['name']}: {queue_wait(queued[0])}"
            )
            if previous.get("status") != "True":
                self.emit("Normal", "Queued", text[:1000])
            return set_condition(conditions, "Queued", "True", "WaitingForAdmission", text)
        if previous.get("status") == "True":
            return set_condition(
                conditions, "Queued", "False", "Admitted", "no trial pod waits in a queue"
            )
        return conditions

    # ------------------------------------------------------------ trials

    def _tally(self, study: optuna.Study) -> TrialLedger:
        """The study's ledger, brought up to date with the storage."""
        directions = [d.name.lower() for d in study.directions]
        if self._ledger is None:
            self._ledger = TrialLedger(directions)
            self._standing = None
        if self._standing is None:
            self._standing = Standing(directions)
        finished = self._ledger.update(study.get_trials(deepcopy=False))
        self._standing.add(finished)
        return self._ledger

    def _recover_lost_trials(
        self,
        study: optuna.Study,
        spec: StudySpec,
        ledger: TrialLedger,
        pods: Sequence[Mapping[str, Any]],
        live_names: set[str],
    ) -> bool:
        """Fail the running trials of pods that are gone, with the pod's reason. With
        ``spec.trial.checkpoints``, a trial whose pod the cluster took (evicted,
        preempted, deleted, its node gone; not OOMKilled, not an exit of its own) goes
        on from its checkpoint in a new pod instead."""
        lost = lost_trials(ledger.open, live_names)
        if not lost:
            return False
        by_name = {p["metadata"]["name"]: p for p in pods}
        keeps_checkpoints = spec.trial.checkpoints is not None
        by_reason: dict[tuple[str, bool], list[FrozenTrial]] = {}
        for trial in lost:
            worker = str(trial.user_attrs.get(WORKER_ATTR, ""))
            pod = by_name.get(worker)
            if pod is not None:
                reason = end_reason(pod)
            elif worker:
                reason = f"pod {worker} is gone (deleted while its trial was running)"
            else:
                reason = "its pod never reported in"
            resume = keeps_checkpoints and bool(worker) and (pod is None or taken_away(pod))
            by_reason.setdefault((reason, resume), []).append(trial)
        for (reason, resume), group in by_reason.items():
            numbers = fail_lost_trials(
                study, group, reason, retries=spec.trial.retries, resume=resume
            )
            if numbers and resume:
                message = f"trial(s) {numbers} go on from their checkpoints in a new pod: {reason}"
                self.emit("Normal", "TrialResumed", message[:1000])
            elif numbers:
                self.emit("Warning", "TrialFailed", f"trial(s) {numbers} failed: {reason}"[:1000])
        return True

    def _ended_pods(
        self, namespace: str, pods: Sequence[Mapping[str, Any]], ledger: TrialLedger
    ) -> tuple[EndedWorker, ...]:
        """The pods that ended since the last tick, as the policy sees workers. Succeeded
        pods are deleted; failed ones are kept (for their logs), marked as handled."""
        workers = ledger.workers
        ended: list[EndedWorker] = []
        for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
            meta = pod["metadata"]
            if not has_ended(pod) or (meta.get("annotations") or {}).get(HANDLED_ANNOTATION):
                continue
            pod_name = meta["name"]
            progressed = pod_name in workers
            if pod["status"].get("phase") == "Succeeded":
                self.kube.delete_pod(namespace, pod_name)
                ended.append(EndedWorker(pod_name, Outcome.DONE, "exited", progressed))
                continue
            handled = {HANDLED_ANNOTATION: "true"}
            self.kube.patch_pod_metadata(namespace, pod_name, annotations=handled)
            if disruption(pod) is not None:
                # Preempted to make room (Kueue, a higher PriorityClass): not a crash.
                self.emit("Normal", "TrialPodPreempted", end_reason(pod)[:1000])
                ended.append(EndedWorker(pod_name, Outcome.PREEMPTED, end_reason(pod), progressed))
                continue
            if exit_code(pod) == EXIT_CONFIG_ERROR:
                reason = termination_message(pod) or end_reason(pod)
                self.emit("Warning", "ObjectiveNotLoadable", reason[:1000])
                ended.append(EndedWorker(pod_name, Outcome.CANNOT_RUN, reason, progressed))
                continue
            if not progressed:
                self.emit("Warning", "TrialPodFailed", end_reason(pod)[:1000])
            ended.append(EndedWorker(pod_name, Outcome.CRASHED, end_reason(pod), progressed))
        return tuple(ended)

    # --------------------------------------------------------------- pods

    def _start_pods(
        self,
        meta: Mapping[str, Any],
        spec: StudySpec,
        study: optuna.Study,
        count: int,
        secret: tuple[str, str],
    ) -> kube.ApiRefused | None:
        """Create ``count`` workers: trial pods, or gangs of ``spec.trial.nodes`` pods
        (each gang all or nothing).

        Returns the API server's refusal when a pod could not be created (forbidden,
        invalid, over quota): the tick goes on and the status says why."""
        self._ensure_trial_service_account(meta, spec)
        namespace = meta["namespace"]
        for offset in range(count):
            places: list[GangPlace | None] = (
                list(gangs.new_gang(meta["name"], spec.trial.nodes))
                if spec.trial.nodes > 1
                else [None]
            )
            created: list[str] = []
            for place in places:
                pod = trial_pod(
                    meta,
                    spec,
                    self.config,
                    optuna_name=study.study_name,
                    secret=secret,
                    # Distinct per worker (seeds are offset by it); the clock keeps it
                    # unique across ticks without storing a counter.
                    worker_index=int(time.time() * 1000) % 2**31 + offset,
                    gang=place,
                )
                try:
                    self.kube.create_pod(namespace, pod)
                except kube.ApiRefused as refusal:
                    # The account may have been deleted since: look again next time.
                    self._trial_account_ready = False
                    for name in created:  # half a gang would wait for the rest forever
                        self.kube.delete_pod(namespace, name)
                    return refusal
                if place is not None:
                    created.append(place.pod_name)
        return None

    def _keep_gangs_together(
        self,
        study: optuna.Study,
        spec: StudySpec,
        namespace: str,
        pods: Sequence[Mapping[str, Any]],
        workers: Set[str],
    ) -> tuple[EndedWorker, ...]:
        """A gang a member of which failed or went stops whole, its trial failed with
        that member's reason (a crash of the gang, for the policy); members whose
        leader is gone are removed."""
        ended: list[EndedWorker] = []
        for leader, why in gangs.broken_gangs(pods, nodes=spec.trial.nodes):
            name = leader["metadata"]["name"]
            reason = f"{why} (a node of the {spec.trial.nodes}-pod trial on {name})"
            running = [
                t
                for t in study.get_trials(deepcopy=False)
                if t.state.name == "RUNNING" and t.user_attrs.get(WORKER_ATTR) == name
            ]
            numbers = fail_lost_trials(study, running, reason, retries=spec.trial.retries)
            self.emit(
                "Warning",
                "TrialGangFailed",
                (f"trial(s) {numbers} failed: " if numbers else "") + reason[:900],
            )
            self.kube.delete_pod(namespace, name)
            ended.append(EndedWorker(name, Outcome.CRASHED, reason, name in workers))
        for member in gangs.orphans(pods):
            self.kube.delete_pod(namespace, member["metadata"]["name"])
        return tuple(ended)

    def _ensure_trial_service_account(self, meta: Mapping[str, Any], spec: StudySpec) -> None:
        """The operator's trial ServiceAccount exists in the Study's namespace (made
        once, shared by the namespace's Studies; a Study naming its own is left alone)."""
        name = self.config.trial_service_account
        if (
            self._trial_account_ready
            or spec.trial.service_account_name
            or not name
            or not self.config.create_trial_service_account
        ):
            return
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": name,
                "labels": {MANAGED_BY_LABEL: "kubetune", COMPONENT_LABEL: "trial"},
                "annotations": dict(self.config.trial_service_account_annotations),
            },
            # Trial pods run user code: no API token.
            "automountServiceAccountToken": False,
        }
        if self.config.trial_image_pull_secrets:
            body["imagePullSecrets"] = [{"name": n} for n in self.config.trial_image_pull_secrets]
        self.kube.ensure_service_account(meta["namespace"], body)
        self._trial_account_ready = True

    def _stop_pods(
        self,
        study: optuna.Study,
        spec: StudySpec,
        live: Sequence[Mapping[str, Any]],
        reason: str,
        *,
        requeue: bool,
    ) -> None:
        """Delete pods; their running trials are failed with ``reason`` (and re-queued)."""
        if not live:
            return
        names = {p["metadata"]["name"] for p in live}
        running = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.state.name == "RUNNING" and t.user_attrs.get(WORKER_ATTR) in names
        ]
        fail_lost_trials(
            study,
            running,
            reason,
            # Not requeued, the study is over: no retry either (as a local run's stop).
            retries=spec.trial.retries if requeue else 0,
            requeue=requeue,
            resume=requeue and spec.trial.checkpoints is not None,
            stopped=True,  # by the study's end or suspension, not a fault of the trial
        )
        for pod in live:
            self.kube.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])
        if spec.trial.nodes > 1:  # their gangs go with them, not a tick later
            namespace = live[0]["metadata"]["namespace"]
            stopped = {(p["metadata"].get("labels") or {}).get(GANG_LABEL) for p in live}
            for pod in self.kube.list_pods(
                namespace, study_selector(live[0]["metadata"]["labels"][STUDY_LABEL])
            ):
                if gangs.is_member(pod) and pod["metadata"]["labels"].get(GANG_LABEL) in stopped:
                    self.kube.delete_pod(namespace, pod["metadata"]["name"])

    def _rank_for_preemption(
        self,
        namespace: str,
        spec: StudySpec,
        live: Sequence[Mapping[str, Any]],
        members: Sequence[Mapping[str, Any]],
        ledger: TrialLedger,
    ) -> None:
        """With ``weakTrialsPriorityClassName``: the pods of the running trials the pruner
        ranks in the weaker half get that WorkloadPriorityClass, the others keep the
        Study's, so a queue short of quota preempts the weakest trials first."""
        weak_class = spec.trial.weak_trials_priority_class_name
        if not weak_class or self._standing is None or self._ranking_refused:
            return
        weak = self._standing.weaker_half(ledger.running)
        trial_of = {str(t.user_attrs.get(WORKER_ATTR)): t.number for t in ledger.running}
        wanted: dict[str, str] = {}  # pod or gang -> class
        for pod in live:
            number = trial_of.get(pod["metadata"]["name"])
            if number is None:
                continue
            chosen = weak_class if number in weak else spec.trial.workload_priority_class_name
            wanted[pod["metadata"]["name"]] = str(chosen)
            gang = (pod["metadata"].get("labels") or {}).get(GANG_LABEL)
            if gang:  # a pod group's priority is its pods', all of them
                wanted[gang] = str(chosen)
        for pod in [*live, *members]:
            labels = pod["metadata"].get("labels") or {}
            chosen = wanted.get(pod["metadata"]["name"]) or wanted.get(labels.get(GANG_LABEL, ""))
            if not chosen or labels.get(KUEUE_PRIORITY_CLASS_LABEL) == chosen:
                continue
            try:
                self.kube.patch_pod_metadata(
                    namespace, pod["metadata"]["name"], labels={KUEUE_PRIORITY_CLASS_LABEL: chosen}
                )
            except Exception as error:
                if getattr(error, "status", None) not in (400, 403, 422):
                    raise
                # A Kueue that keeps a running workload's class fixed: say so once, stop.
                self._ranking_refused = True
                self.emit(
                    "Warning",
                    "PriorityChangeRefused",
                    f"spec.trial.weakTrialsPriorityClassName: the API server refused to change "
                    f"pod {pod['metadata']['name']}'s {KUEUE_PRIORITY_CLASS_LABEL} "
                    f"({kube.ApiRefused.of(error)}); the weaker trials are not marked"[:1000],
                )
                return

    def _label_pods_with_trials(
        self, namespace: str, live: Sequence[Mapping[str, Any]], ledger: TrialLedger
    ) -> None:
        """Label each pod with the number of the trial it runs now."""
        current = {str(t.user_attrs.get(WORKER_ATTR)): str(t.number) for t in ledger.running}
        for pod in live:
            name = pod["metadata"]["name"]
            label = current.get(name)
            if label and (pod["metadata"].get("labels") or {}).get(TRIAL_LABEL) != label:
                self.kube.patch_pod_metadata(namespace, name, labels={TRIAL_LABEL: label})

    def _delete_old_failed_pods(self, namespace: str, failed: Sequence[Mapping[str, Any]]) -> None:
        for pod in failed[:-KEEP_FAILED_PODS]:
            self.kube.delete_pod(namespace, pod["metadata"]["name"])

    def _pod_conditions(
        self,
        conditions: list[dict[str, Any]],
        live: Sequence[Mapping[str, Any]],
        refused: kube.ApiRefused | None = None,
    ) -> list[dict[str, Any]]:
        """``PodsReady=False`` with the reason when trial pods cannot be created
        (forbidden, invalid, over quota) or cannot start (no node has a free GPU, the
        image cannot be pulled...), and one Event each time that reason changes."""
        previous = condition_of(conditions, "PodsReady") or {}
        if refused is not None:
            text = f"the API server refused a trial pod ({refused.status}): {refused}"
            if previous.get("status") != "False" or previous.get("message") != text[:1000]:
                self.emit("Warning", "PodCreateRefused", text[:1000])
            return set_condition(conditions, "PodsReady", "False", "PodCreateRefused", text)
        problems = [(p["metadata"]["name"], waiting_problem(p)) for p in live]
        blocked = [(name, problem) for name, problem in problems if problem is not None]
        if blocked:
            pod_name, (reason, message) = blocked[0]
            text = f"{len(blocked)} trial pod(s) cannot start; {pod_name}: {message}"
            if previous.get("status") != "False" or previous.get("reason") != reason:
                self.emit("Warning", reason, text[:1000])
            return set_condition(conditions, "PodsReady", "False", reason, text)
        if live and previous.get("status") != "True":
            return set_condition(
                conditions, "PodsReady", "True", "PodsStarted", "trial pods are starting or running"
            )
        return conditions

    # ------------------------------------------------------------- status

    def _trial_status(
        self,
        meta: Mapping[str, Any],
        status: Mapping[str, Any],
        spec: StudySpec,
        ledger: TrialLedger,
        *,
        final: bool = False,
    ) -> dict[str, Any]:
        """Counts, spend and best trial(s); a new best gets an Event and the ConfigMap.
        ``final``: the status the study ends with (its spend exact)."""
        computed = trial_status(spec, ledger)
        now = time.monotonic()
        written = self._observed  # what the status holds, our last patch included
        if (
            not final
            and written.get("spend") is not None
            and computed["trials"] == written.get("trials")
            and now - self._spend_refreshed < SPEND_REFRESH_SECONDS
        ):
            computed["spend"] = written["spend"]
        else:
            self._spend_refreshed = now
        best = computed.get("bestTrial")
        front = computed.get("paretoFront")
        previous = status.get("bestTrial") if best is not None or front is None else None
        if best is not None and (previous or {}).get("number") != best["number"]:
            self.emit(
                "Normal",
                "NewBestTrial",
                f"trial {best['number']} is the best so far: value {best['value']:g}, "
                f"params {json.dumps(best['params'], ensure_ascii=False)}"[:1000],
            )
            self._write_best_params(meta, best_params_document([best]))
        if front is not None and front != status.get("paretoFront"):
            self._write_best_params(meta, best_params_document(front))
        return computed

    def _write_best_params(self, meta: Mapping[str, Any], params: Any) -> None:
        self.kube.apply_configmap(
            meta["namespace"],
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": best_params_configmap(meta["name"]),
                    "labels": {STUDY_LABEL: meta["name"], MANAGED_BY_LABEL: "kubetune"},
                    "ownerReferences": [owner_reference(meta)],
                },
                "data": {BEST_PARAMS_KEY: json.dumps(params, indent=2, ensure_ascii=False) + "\n"},
            },
        )

    def _finish(
        self,
        meta: Mapping[str, Any],
        status: dict[str, Any],
        update: dict[str, Any],
        conditions: list[dict[str, Any]],
        spec: StudySpec,
        ledger: TrialLedger,
        phase: str,
        reason: str,
        message: str,
    ) -> bool:
        """The study is done: final status, an Event, and no pod left behind."""
        for pod in self.kube.list_pods(meta["namespace"], study_selector(meta["name"])):
            self.kube.delete_pod(meta["namespace"], pod["metadata"]["name"])
        kind = "Complete" if phase == "Succeeded" else "Failed"
        conditions = set_condition(conditions, kind, "True", reason, message)
        conditions = set_condition(conditions, "Running", "False", reason, message)
        # Its pods are gone: none waits in a queue any more.
        conditions = self._queue_conditions(conditions, spec, [], 0)
        update.update(self._trial_status(meta, status, spec, ledger, final=True))
        update.update(
            phase=phase,
            message=message,
            conditions=conditions,
            completionTime=status.get("completionTime") or now_iso(),
        )
        if status.get("phase") != phase:
            self.emit("Normal" if phase == "Succeeded" else "Warning", reason, message[:1000])
        self._write(meta, status, update)
        return True

    def _fail_invalid(
        self,
        meta: Mapping[str, Any],
        status: dict[str, Any],
        error: SpecError,
        generation: int | None,
    ) -> None:
        """An invalid spec: phase Failed, a condition and an Event naming the field. No retry."""
        message = "; ".join(f"{path}: {reason}" for path, reason in error.problems)
        if status.get("phase") == "Failed" and status.get("message") == message:
            return
        self.emit("Warning", "InvalidSpec", message[:1000])
        conditions = set_condition(
            status.get("conditions") or [], "Failed", "True", "InvalidSpec", message
        )
        self._write(
            meta,
            status,
            {
                "phase": "Failed",
                "message": message,
                "conditions": conditions,
                "observedGeneration": generation,
            },
        )

    def _write(
        self, meta: Mapping[str, Any], status: Mapping[str, Any], update: Mapping[str, Any]
    ) -> None:
        """Patch the status subresource with what changed; nothing when nothing did."""
        patch = {
            key: merge_patch(self._observed.get(key), value)
            for key, value in update.items()
            if self._observed.get(key) != value
        }
        if not patch:
            return
        safe = json.loads(scrub(json.dumps(patch), self._url or ""))
        self.kube.patch_study_status(meta["namespace"], meta["name"], safe)
        self._observed = apply_merge_patch(self._observed, safe)
        self._unconfirmed = (self._seen_status, dict(self._observed))

    # ------------------------------------------------------------- delete

    def _existing_study(
        self, meta: Mapping[str, Any], spec: StudySpec, status: Mapping[str, Any]
    ) -> optuna.Study | None:
        """The Study's Optuna study if it exists, made or changed nothing (a Study
        deleted before it started must leave no Secret and no empty study behind)."""
        import optuna

        ref = spec.storage.secret_ref
        if ref is not None:
            url = self.kube.read_secret_value(meta["namespace"], ref.name, ref.key)
        elif spec.storage.url is None and self.config.storage_url is not None:
            try:
                url = self._default_url(meta["namespace"], dict(status), create=False)
            except StorageNotReady:
                url = None
        else:
            url = None
        name = _optuna_name(meta, spec, status)
        if url is None:
            return None
        try:
            storage = shared_storage(url)
            storage.get_study_id_from_name(name)
        except (StorageUnavailable, KeyError):
            return None
        self._url = url
        return optuna.load_study(study_name=name, storage=storage)

    def delete(
        self,
        meta: Mapping[str, Any],
        spec_data: Mapping[str, Any],
        status: Mapping[str, Any] | None = None,
    ) -> None:
        """The Study is being deleted: stop its pods (failing their trials), remove
        what the operator made, and drop the Optuna study if the spec says so."""
        namespace, name = meta["namespace"], meta["name"]
        pods = self.kube.list_pods(namespace, study_selector(name))
        try:
            spec = validate_spec(spec_data)
        except SpecError:
            spec = None
        if spec is not None and self._study is None:
            self._study = self._existing_study(meta, spec, status or {})
        if spec is not None and self._study is not None:
            bridge.mark_ended(self._study._storage, self._study._study_id, "the Study was deleted")
            self._stop_pods(
                self._study,
                spec,
                [p for p in pods if is_live(p)],
                "the Study was deleted",
                requeue=False,
            )
        for pod in pods:
            self.kube.delete_pod(namespace, pod["metadata"]["name"])
        self.kube.delete_object("ConfigMap", namespace, best_params_configmap(name))
        self.kube.delete_object("Secret", namespace, storage_secret(name))
        if spec is not None and self._study is not None and spec.storage.on_delete == "delete":
            import optuna

            optuna.delete_study(study_name=self._study.study_name, storage=self._study._storage)


_STORAGES: dict[str, optuna.storages.BaseStorage] = {}
_OPENING: dict[str, threading.Lock] = {}
_OPENING_LOCK = threading.Lock()


def _verification_asked(spec: StudySpec, status: Mapping[str, Any]) -> bool:
    """Whether spec.verify asks for a verification the status does not show yet (none
    ran, or it asked for other numbers: ``kubetune verify NAME`` patches a finished
    Study's spec.verify)."""
    assert spec.verify is not None
    verified = status.get("verified") or {}
    return (verified.get("top"), verified.get("repeats")) != (spec.verify.top, spec.verify.repeats)


def shared_storage(url: str) -> optuna.storages.BaseStorage:
    """One storage (one engine, one connection pool) per database for every Study.

    A storage per Study would hold a pool per Study: hundreds of Studies on one
    database would exhaust its connections while almost all of them sit idle.
    Optuna's RDB storage is safe to share between threads (a session per call).
    """
    with _OPENING_LOCK:
        opening = _OPENING.setdefault(url, threading.Lock())
    # One lock per database: the Studies of an unreachable database wait for each
    # other, not for it, and the Studies starting together open one pool, not one each.
    with opening:
        storage = _STORAGES.get(url)
        if storage is None:
            # A short first wait: a storage that does not answer becomes a condition
            # within seconds, and the next tick tries again.
            storage = open_storage(url, retry_seconds=STORAGE_FIRST_CONNECT_SECONDS)
            _STORAGES[url] = storage
        return storage


def _optuna_name(meta: Mapping[str, Any], spec: StudySpec, status: Mapping[str, Any]) -> str:
    """The Optuna study a Study runs: the one its status names, else the spec's
    ``storage.studyName``, else one made from its namespace, name and uid."""
    return (
        status.get("studyName")
        or spec.storage.study_name
        or optuna_study_name(meta["namespace"], meta["name"], meta["uid"])
    )


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with the JSON merge patch ``patch`` applied (null removes a key), as
    the API server applies it.

    >>> apply_merge_patch({"a": 1, "b": {"c": 2}}, {"a": None, "b": {"d": 3}})
    {'b': {'c': 2, 'd': 3}}
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``.

    Keys that ``new`` no longer has become null, so a merge patch replaces a mapping
    instead of adding to it (a new best trial's params are exactly its own).

    >>> merge_patch({"params": {"x": 1, "y": 2}}, {"params": {"z": 3}})
    {'params': {'x': None, 'y': None, 'z': 3}}
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if old.get(key, _MISSING) != value:
            patch[key] = merge_patch(old.get(key), value) if key in old else value
    return patch


_MISSING = object()


def failed_pods_list(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    failed = [p for p in pods if p.get("status", {}).get("phase") == "Failed"]
    return sorted(failed, key=lambda p: p["metadata"].get("creationTimestamp") or "")


def _epoch(timestamp: str) -> float:
    import datetime as dt

    return (
        dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")
        .replace(tzinfo=dt.timezone.utc)
        .timestamp()
    )
