"""The operator's reconcile rules, one Study at a time: the reconciler ticks against an
in-memory API server (``FakeKube``: pods, Secrets, ConfigMaps, the Study's status as merge
patches) and a real PostgreSQL; the test plays the kubelet (pod phases, exit codes,
evictions) and the trial runner (claiming trials in the storage, as a pod's worker does).

Each test asserts what a user would see: the Study's phase, its conditions (type, reason,
a message naming the field), its trial counts, its Events, the pods made and removed, the
trials' fail reasons in the storage.

These rules were e2e tests, each starting a ``kopf run`` operator, a fake kubelet and real
trial pods (seconds to tens of seconds each). The e2e suite keeps what only a running
operator shows, once: Kopf's wiring, finalizers and deletion, operator and API server and
database restarts, real pods running real trials across processes (pruning across pods,
a killed and an evicted pod, a deleted pod whose worker hands its trial back), peering,
Events posted through the API server, kubectl, RBAC.

Where each removed e2e test's assertions went. "unit" names a test of this module;
"e2e" one kept in tests/e2e, which still shows the path through a running operator.

test_study_scenarios.py
  test_killed_pod_trial_fails_with_reason_and_is_retried
      OOM reason, retry with the same params, the retry not counted against maxTrials,
      failed=1, a TrialFailed Event -> unit test_an_oom_killed_pods_trial_fails_with_the_
      reason_and_runs_again. A real pod killed mid-trial, its trial run again with the
      same params by another pod -> e2e test_evicted_and_deleted_pods_fail_their_trials_
      with_reasons (which now checks the params too).
  test_invalid_spec_fails_the_study_with_the_field_and_no_crash_loop
      -> unit test_an_invalid_spec_fails_the_study_naming_the_field_once[log-range];
      the operator going on with another study, one Event however long -> e2e
      test_bad_input.py::test_invalid_studies_fail_with_the_field_and_the_others_proceed.
  test_suspend_stops_pods_and_resume_carries_on
      -> unit test_suspend_stops_the_pods_requeues_their_trials_and_resume_carries_on.
  test_raising_parallelism_takes_effect
      -> unit test_raising_parallelism_starts_pods_and_lowering_max_trials_ends_sooner
      (the edited budget is stored for the workers); workers never claiming past
      maxTrials -> tests/integration/test_runner.py::test_parallel_workers_never_exceed_
      max_trials.
  test_deleting_a_study_removes_its_pods_and_keeps_its_data, its onDelete: delete half
      -> unit test_on_delete_delete_drops_the_optuna_study (the finalizer half stays e2e).
  test_two_studies_in_two_namespaces
      -> unit test_studies_of_one_name_in_two_namespaces_are_two_optuna_studies; a Study
      outside "default" through Kopf -> e2e test_cluster_path.py::test_a_study_in_a_new_
      namespace_gets_its_trial_service_account.
  test_unschedulable_gpu_pod_is_a_condition_and_an_event
      -> unit test_a_pod_that_cannot_start_is_a_condition_and_one_event[unschedulable-gpu],
      test_a_gpu_study_asks_for_a_gpu_limit (the fake kubelet's GPU scheduling itself:
      tests/harness_selftest).
  test_changing_the_search_space_of_a_started_study_is_refused
      -> unit test_a_started_studys_sampler_change_is_refused_and_it_goes_on.
  test_several_trials_per_pod
      -> unit test_several_trials_per_pod; a worker's quota -> tests/integration/
      test_runner.py::test_trials_per_worker_quota; real pods running several trials ->
      e2e test_bad_input.py::test_trials_that_print_no_metric_or_nan_fail_with_reasons,
      test_faults.py::test_twenty_studies_at_once.
  test_objective_that_does_not_import_fails_the_study
      -> unit test_an_objective_that_does_not_load_fails_the_study; the runner's exit code
      and message -> tests/integration/test_runner.py::test_python_objective_that_does_
      not_import_stops_before_any_trial; a real pod failing a study with a config error
      -> e2e test_bad_input.py::test_trials_that_print_no_metric_or_nan_fail_with_reasons
      ("no-program").
  test_storage_from_a_secret
      -> unit test_with_no_default_storage_the_study_waits_saying_so, test_a_storage_
      secret_reaches_pods_only_by_reference; real pods reading a secretRef's URL -> e2e
      test_bad_input.py::test_a_whole_cluster_study_never_shows_the_password and
      test_a_storage_that_does_not_answer_is_a_condition_and_recovers.
  test_multi_objective_study_reports_a_pareto_front
      -> unit test_a_multi_objective_study_reports_its_pareto_front; a worker's two
      values -> tests/integration/test_runner.py::test_multi_objective_python.
  test_too_many_failed_trials_fail_the_study
      -> unit test_too_many_failed_trials_fail_the_study.
  test_goal_and_timeout_end_the_study
      -> unit test_reaching_the_goal_ends_the_study, test_the_timeout_stops_the_pods_at_once.
test_bad_input.py
  test_names_too_long_for_kubernetes
      -> unit test_an_invalid_spec_fails_the_study_naming_the_field_once[long-name,
      long-label]. (The other invalid messages of test_invalid_studies_fail_with_the_field_
      and_the_others_proceed, kept, are here too: [bad-range, unknown-sampler-arg,
      huge-choices].)
test_readme_claims.py
  test_editing_the_timeout_of_a_running_study_ends_it
      -> unit test_editing_the_timeout_of_a_running_study_ends_it.
  test_editing_pod_settings_of_a_running_study_reaches_its_next_pods
      -> unit test_editing_pod_settings_reaches_the_next_pods.
  test_a_pod_that_cannot_pull_its_image_is_a_condition_and_an_event (it played the
  kubelet's part already)
      -> unit test_a_pod_that_cannot_start_is_a_condition_and_one_event[image-pull-back-off].
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import optuna
import pytest
from kubetune.engine import bridge
from kubetune.engine.worker import EXIT_CONFIG_ERROR, MAX_TRIALS_ENV, STORAGE_URL_ENV
from kubetune_operator.config import OperatorConfig
from kubetune_operator.reconciler import StudyReconciler, shared_storage
from optuna.trial import TrialState
from test_reconciler import FakeKube

BASE_SPEC: dict[str, Any] = {
    "objective": {"direction": "minimize"},
    "sampler": {"name": "random", "seed": 0},
    "budget": {"maxTrials": 4, "parallelism": 2},
    "trial": {"python": "examples.objectives.quadratic:objective"},
}


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in as ``kubectl patch --type merge`` does."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


class Study:
    """A Study as a user sees it (status, Events, pods), reconciled tick by tick.

    The test plays the kubelet and each pod's trial runner with :meth:`claim`,
    :meth:`exit`, :meth:`run_round`.
    """

    def __init__(
        self,
        fake: FakeKube,
        url: str | None,
        *,
        name: str = "demo",
        namespace: str = "team-a",
        config_url: str | None = "",
        **spec_changes: Any,
    ) -> None:
        self.fake = fake
        self.url = url
        self.meta = {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"}
        self.generation = 1
        # budget and trial are merged into the base spec's; the other parts replaced.
        self.spec = {
            **copy.deepcopy(BASE_SPEC),
            **{k: v for k, v in spec_changes.items() if k not in ("budget", "trial")},
        }
        self.spec = merged(
            self.spec, {k: v for k, v in spec_changes.items() if k in ("budget", "trial")}
        )
        self.events: list[tuple[str, str, str]] = []
        storage_url = url if config_url == "" else config_url
        self.reconciler = StudyReconciler(
            OperatorConfig(storage_url=storage_url, trial_service_account="kubetune-trial"),
            emit=lambda *event: self.events.append(event),
            kube=fake,
        )
        self._optuna: optuna.Study | None = None
        #: The trial each pod's worker runs now.
        self.running: dict[str, optuna.Trial] = {}

    # ------------------------------------------------------------ the user's view

    def tick(self) -> bool:
        body = {
            "metadata": {**self.meta, "generation": self.generation},
            "spec": copy.deepcopy(self.spec),
            "status": copy.deepcopy(self.fake.status),
        }
        return self.reconciler.tick(body)

    def edit(self, **changes: Any) -> None:
        """``kubectl patch`` of the spec: a new generation."""
        self.spec = merged(self.spec, changes)
        self.generation += 1

    @property
    def status(self) -> dict[str, Any]:
        return self.fake.status

    def condition(self, type_: str) -> dict[str, Any]:
        conditions = self.status.get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    def events_of(self, reason: str) -> list[str]:
        return [message for _, why, message in self.events if why == reason]

    def live_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.fake.pods.values()
            if p["status"].get("phase", "Pending") in ("Pending", "Running")
        ]

    @property
    def optuna(self) -> optuna.Study:
        if self._optuna is None:
            self._optuna = optuna.load_study(
                study_name=self.status["studyName"], storage=shared_storage(str(self.url))
            )
        return self._optuna

    # ------------------------------------------------ the kubelet and the runner

    def claim(self, pod: dict[str, Any]) -> optuna.Trial:
        """The pod's worker claims a trial (a queued one first, as Optuna's ask does)."""
        pod["status"] = {"phase": "Running"}
        trial = self.optuna.ask()
        trial.set_user_attr("kubetune.worker", pod["metadata"]["name"])
        trial.suggest_float("x", -10, 10)
        self.running[pod["metadata"]["name"]] = trial
        return trial

    def complete(self, trial: optuna.Trial, values: float | list[float] | None = None) -> None:
        x = trial.params["x"]
        self.optuna.tell(trial, (x - 2) ** 2 if values is None else values)
        self._told(trial)

    def _told(self, trial: optuna.Trial) -> None:
        self.running = {pod: t for pod, t in self.running.items() if t is not trial}

    def fail(self, trial: optuna.Trial, reason: str) -> None:
        trial.set_user_attr("kubetune.fail_reason", reason)
        self.optuna.tell(trial, state=TrialState.FAIL)
        self._told(trial)

    @staticmethod
    def exit(pod: dict[str, Any], code: int = 0, reason: str = "", message: str = "") -> None:
        terminated = {"exitCode": code, "reason": reason, "message": message}
        pod["status"] = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{"name": "trial", "state": {"terminated": terminated}}],
        }

    def run_round(self) -> None:
        """Each live pod runs one trial (the one it runs, or a new one) to COMPLETE and exits."""
        for pod in self.live_pods():
            trial = self.running.get(pod["metadata"]["name"]) or self.claim(pod)
            self.complete(trial)
            self.exit(pod)

    def run_to_end(self, rounds: int = 20) -> dict[str, Any]:
        for _ in range(rounds):
            if self.tick():
                return self.status
            self.run_round()
        raise AssertionError(f"not finished after {rounds} rounds: {self.status}")


@pytest.fixture
def fake() -> FakeKube:
    return FakeKube()


@pytest.fixture
def make(fake: FakeKube, storage_url: str) -> Callable[..., Study]:
    def made(**changes: Any) -> Study:
        return Study(fake, storage_url, **changes)

    return made


def counts(status: dict[str, Any]) -> dict[str, int]:
    return {state: n for state, n in status["trials"].items() if n}


# ----------------------------------------------------------------- trials lost with pods


def test_an_oom_killed_pods_trial_fails_with_the_reason_and_runs_again(
    make: Callable[..., Study],
) -> None:
    study = make(budget={"maxTrials": 2, "parallelism": 1}, trial={"retries": 1})
    study.tick()
    (pod,) = study.live_pods()
    name = pod["metadata"]["name"]
    lost = study.claim(pod)
    study.exit(pod, 137, "OOMKilled")
    study.tick()
    failed = study.optuna.trials[lost.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["kubetune.fail_reason"] == (
        f"pod {name} was OOMKilled (exit code 137); raise its memory limit"
    )
    assert study.status["trials"]["failed"] == 1
    assert [m for m in study.events_of("TrialFailed") if "OOMKilled" in m]
    (retry,) = [t for t in study.optuna.trials if t.state == TrialState.WAITING]
    assert retry.system_attrs["fixed_params"] == failed.params, "the same parameters again"
    assert len(study.live_pods()) == 1, "a pod to run the retry"
    final = study.run_to_end()
    assert final["phase"] == "Succeeded"
    complete = [t for t in study.optuna.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2, "the retry replaces the lost attempt in the budget"
    assert failed.params in [t.params for t in complete]
    assert counts(final) == {"complete": 2, "failed": 1}


def test_evicted_and_deleted_pods_fail_their_trials_with_reasons(
    make: Callable[..., Study], fake: FakeKube
) -> None:
    study = make(budget={"maxTrials": 3, "parallelism": 2}, trial={"retries": 2})
    study.tick()
    evicted, deleted = study.live_pods()
    first, second = evicted["metadata"]["name"], deleted["metadata"]["name"]
    study.claim(evicted)
    study.claim(deleted)
    evicted["status"] = {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The node was low on resource: memory. ",
    }
    del fake.pods[second]
    study.tick()
    reasons = {
        t.user_attrs["kubetune.worker"]: t.user_attrs["kubetune.fail_reason"]
        for t in study.optuna.trials
        if t.state == TrialState.FAIL
    }
    assert reasons == {
        first: f"pod {first} was evicted: The node was low on resource: memory.",
        second: f"pod {second} is gone (deleted while its trial was running)",
    }
    assert len([t for t in study.optuna.trials if t.state == TrialState.WAITING]) == 2
    assert len(study.events_of("TrialFailed")) == 2
    final = study.run_to_end()
    assert counts(final) == {"complete": 3, "failed": 2}


# ---------------------------------------------------------------------------- bad specs

LONG_NAME = "a-study-name-that-is-longer-than-a-kubernetes-label-value-allows-" + "x" * 20


@pytest.mark.parametrize(
    ("name", "changes", "expected"),
    [
        pytest.param(
            "demo",
            {"searchSpace": {"lr": {"type": "float", "low": 0, "high": 1, "log": True}}},
            "spec.searchSpace.lr.low: must be > 0 when log is true",
            id="log-range",
        ),
        pytest.param(
            "demo",
            {"searchSpace": {"x": {"type": "float", "low": 3, "high": 1}}},
            "spec.searchSpace.x.high: must be >= low (3.0)",
            id="bad-range",
        ),
        pytest.param(
            "demo",
            {"sampler": {"name": "tpe", "args": {"n_startup": 3}}},
            "spec.sampler.args.n_startup: TPESampler has no argument 'n_startup'",
            id="unknown-sampler-arg",
        ),
        pytest.param(
            "demo",
            {
                "searchSpace": {
                    "c": {"type": "categorical", "choices": [f"c{i}" for i in range(1001)]}
                }
            },
            "spec.searchSpace.c.choices: has 1001 choices; at most 1000 are allowed",
            id="huge-choices",
        ),
        pytest.param(
            LONG_NAME,
            {},
            f"metadata.name: must be at most 63 characters (got {len(LONG_NAME)})",
            id="long-name",
        ),
        pytest.param(
            "demo",
            {"trial": {"labels": {"team": "t" * 64}}},
            "spec.trial.labels: label team='tttt",
            id="long-label",
        ),
    ],
)
def test_an_invalid_spec_fails_the_study_naming_the_field_once(
    make: Callable[..., Study], fake: FakeKube, name: str, changes: dict[str, Any], expected: str
) -> None:
    study = make(name=name, **changes)
    for _ in range(3):
        assert study.tick() is True, "an invalid study rests: no retry loop"
    assert study.status["phase"] == "Failed"
    failed = study.condition("Failed")
    assert (failed["status"], failed["reason"]) == ("True", "InvalidSpec")
    assert expected in failed["message"]
    if name == LONG_NAME or "labels" in changes.get("trial", {}):
        assert "at most 63" in failed["message"]
    assert len(study.events_of("InvalidSpec")) == 1
    assert fake.pods == {} and fake.secrets == {}


def test_an_objective_that_does_not_load_fails_the_study(make: Callable[..., Study]) -> None:
    study = make(trial={"python": "nowhere:objective"})
    study.tick()
    broken, other = study.live_pods()
    message = "spec.trial.python: cannot import 'nowhere': No module named 'nowhere'"
    study.exit(broken, EXIT_CONFIG_ERROR, "Error", message)
    assert study.tick() is True
    assert study.status["phase"] == "Failed"
    failed = study.condition("Failed")
    assert failed["reason"] == "TrialPodsFailing"
    assert "spec.trial.python: cannot import 'nowhere'" in failed["message"]
    assert study.events_of("ObjectiveNotLoadable") == [message]
    assert study.live_pods() == []
    assert other["metadata"]["name"] not in study.fake.pods


# ------------------------------------------------------------------ how a study ends


def test_too_many_failed_trials_fail_the_study(make: Callable[..., Study]) -> None:
    study = make(
        budget={"maxTrials": 20, "parallelism": 1, "maxFailedTrials": 1},
        trial={"trialsPerPod": 5},
    )
    study.tick()
    (pod,) = study.live_pods()
    study.fail(study.claim(pod), "ValueError: boom: the objective broke")
    assert study.tick() is False, "one failure is allowed"
    study.fail(study.claim(pod), "ValueError: boom: the objective broke")
    assert study.tick() is True
    final = study.status
    assert final["phase"] == "Failed"
    failed = study.condition("Failed")
    assert failed["reason"] == "TooManyFailedTrials"
    assert failed["message"] == "2 trials failed, more than maxFailedTrials (1)"
    assert final["trials"]["failed"] == 2
    assert study.live_pods() == []


def test_reaching_the_goal_ends_the_study(make: Callable[..., Study]) -> None:
    study = make(
        objective={"direction": "minimize", "goal": 1000.0},
        budget={"maxTrials": 50, "parallelism": 1},
    )
    final = study.run_to_end()
    assert final["phase"] == "Succeeded"
    assert study.condition("Complete")["reason"] == "GoalReached"
    assert counts(final) == {"complete": 1}


def test_the_timeout_stops_the_pods_at_once(make: Callable[..., Study]) -> None:
    study = make(
        budget={"maxTrials": 50, "parallelism": 1, "timeout": "1s"},
        trial={"trialsPerPod": 50},
    )
    study.tick()
    (pod,) = study.live_pods()
    study.claim(pod)  # a long trial: running when the timeout comes
    assert study.tick() is False
    time.sleep(1.2)
    assert study.tick() is True
    final = study.status
    assert final["phase"] == "Succeeded"
    assert study.condition("Complete")["reason"] == "Timeout"
    # Cut off by the study's end: stopped, not failed (the trial did nothing wrong).
    assert counts(final) == {"stopped": 1}
    assert study.fake.pods == {}, "the timeout stops the pod at once"
    (trial,) = study.optuna.trials
    assert (trial.state, trial.user_attrs["kubetune.worker"]) == (
        TrialState.FAIL,
        pod["metadata"]["name"],
    )
    assert trial.user_attrs["kubetune.fail_reason"] == "the study stopped: Timeout"


def test_editing_the_timeout_of_a_running_study_ends_it(make: Callable[..., Study]) -> None:
    study = make(budget={"maxTrials": 5, "parallelism": 1}, trial={"trialsPerPod": 5})
    study.tick()
    (pod,) = study.live_pods()
    study.claim(pod)
    assert study.tick() is False
    assert study.status["phase"] == "Running"
    study.edit(budget={"timeout": "1s"})
    time.sleep(1.2)
    study.tick()
    final = study.status
    assert final["phase"] == "Succeeded"
    assert study.condition("Complete")["reason"] == "Timeout"
    assert final["trials"]["stopped"] == 1 and final["trials"]["failed"] == 0
    assert study.live_pods() == []


# ------------------------------------------------------------------------- edits


def test_suspend_stops_the_pods_requeues_their_trials_and_resume_carries_on(
    make: Callable[..., Study],
) -> None:
    study = make(budget={"maxTrials": 4, "parallelism": 2})
    study.tick()
    for pod in study.live_pods():
        study.claim(pod)
    study.edit(suspend=True)
    study.tick()
    assert study.status["phase"] == "Suspended"
    assert study.condition("Suspended")["status"] == "True"
    assert study.live_pods() == []
    stopped = [
        t
        for t in study.optuna.trials
        if t.state == TrialState.FAIL
        and t.user_attrs.get("kubetune.fail_reason") == "the study was suspended"
    ]
    assert len(stopped) == 2
    waiting = [t for t in study.optuna.trials if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["fixed_params"]["x"] for t in waiting) == sorted(
        t.params["x"] for t in stopped
    )
    assert study.tick() is True, "suspended with no pod: it rests"
    assert study.status["trials"]["stopped"] == 2 and study.status["trials"]["failed"] == 0
    assert study.fake.calls.count("create_pod") == 2

    study.edit(suspend=False)
    study.tick()
    assert study.status["phase"] == "Running"
    assert study.condition("Suspended")["status"] == "False"
    assert len(study.live_pods()) == 2
    final = study.run_to_end()
    assert final["phase"] == "Succeeded"
    assert final["trials"]["complete"] == 4
    complete_params = [t.params for t in study.optuna.trials if t.state == TrialState.COMPLETE]
    assert all(t.params in complete_params for t in stopped)


def test_raising_parallelism_starts_pods_and_lowering_max_trials_ends_sooner(
    make: Callable[..., Study],
) -> None:
    study = make(budget={"maxTrials": 8, "parallelism": 1})
    study.tick()
    (first,) = study.live_pods()
    study.claim(first)
    study.edit(budget={"parallelism": 3})
    study.tick()
    assert len(study.live_pods()) == 3
    study.edit(budget={"maxTrials": 5})
    study.tick()
    stored = bridge.stored_spec(study.optuna._storage, study.optuna._study_id)
    assert stored is not None and stored.budget.max_trials == 5, "the workers read it there"
    final = study.run_to_end()
    assert final["phase"] == "Succeeded"
    assert final["progress"] == "5/5"
    assert len(study.optuna.trials) == 5
    assert study.fake.calls.count("create_pod") == 5, "no pod beyond the budget"


def test_a_started_studys_sampler_change_is_refused_and_it_goes_on(
    make: Callable[..., Study],
) -> None:
    study = make(budget={"maxTrials": 3, "parallelism": 1})
    study.tick()
    (pod,) = study.live_pods()
    study.claim(pod)
    study.edit(sampler={"name": "tpe", "seed": 1})
    study.tick()
    study.tick()
    refused = study.condition("SpecChangeRefused")
    assert (refused["status"], refused["reason"]) == ("True", "StartedFieldsChanged")
    assert refused["message"].startswith("spec.sampler: the study has started")
    assert len(study.events_of("SpecChangeRefused")) == 1
    stored = bridge.stored_spec(study.optuna._storage, study.optuna._study_id)
    assert stored is not None and stored.sampler.name == "random", "the change is ignored"
    final = study.run_to_end()
    assert final["phase"] == "Succeeded"
    assert final["trials"]["complete"] == 3


def test_editing_pod_settings_reaches_the_next_pods(make: Callable[..., Study]) -> None:
    study = make(
        budget={"maxTrials": 2, "parallelism": 1},
        trial={"env": [{"name": "KT_SLEEP", "value": "3"}], "labels": {"team": "before"}},
    )
    study.tick()
    (first,) = study.live_pods()
    study.complete(study.claim(first))
    study.exit(first)
    study.edit(trial={"env": [{"name": "KT_SLEEP", "value": "0"}], "labels": {"team": "after"}})
    study.tick()
    (second,) = study.live_pods()

    def settings(pod: dict[str, Any]) -> tuple[str, str]:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        return pod["metadata"]["labels"]["team"], env["KT_SLEEP"]

    assert settings(first) == ("before", "3")
    assert settings(second) == ("after", "0")


def test_several_trials_per_pod(make: Callable[..., Study]) -> None:
    """Each pod runs trialsPerPod trials; one done with them is replaced at once (the
    trial-end push wakes that look), not at the next look after its pod has ended."""
    study = make(budget={"maxTrials": 6, "parallelism": 1}, trial={"trialsPerPod": 3})
    study.tick()
    (first,) = study.live_pods()
    env = {e["name"]: e.get("value") for e in first["spec"]["containers"][0]["env"]}
    assert env[MAX_TRIALS_ENV] == "3"

    def names() -> list[str]:
        return sorted(p["metadata"]["name"] for p in study.live_pods())

    for number in range(3):
        study.complete(study.claim(first))
        assert study.tick() is False
        if number < 2:
            assert names() == [first["metadata"]["name"]], "a pod with trials to go"
    (second,) = [p for p in study.live_pods() if p["metadata"]["name"] != first["metadata"]["name"]]
    study.exit(first)
    for _ in range(3):
        study.complete(study.claim(second))
        assert study.tick() is False
    assert names() == [second["metadata"]["name"]], "the budget is spent: no successor"
    study.exit(second)
    assert study.tick() is True
    assert study.status["phase"] == "Succeeded"
    workers = [t.user_attrs["kubetune.worker"] for t in study.optuna.trials]
    assert len(workers) == 6
    assert sorted(workers.count(w) for w in set(workers)) == [3, 3]


def test_a_running_pod_keeps_the_trials_per_pod_it_was_made_with(
    make: Callable[..., Study],
) -> None:
    """trialsPerPod lowered while a pod runs: the pod still runs the three it was made
    for, so after one it is not taken as done (no second pod beside it)."""
    study = make(budget={"maxTrials": 6, "parallelism": 1}, trial={"trialsPerPod": 3})
    study.tick()
    (pod,) = study.live_pods()
    study.edit(trial={"trialsPerPod": 1})
    study.complete(study.claim(pod))
    assert study.tick() is False
    assert [p["metadata"]["name"] for p in study.live_pods()] == [pod["metadata"]["name"]]


# ---------------------------------------------------------------- pods that cannot start

UNSCHEDULABLE = {
    "phase": "Pending",
    "conditions": [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        }
    ],
}
PULL_MESSAGE = 'Back-off pulling image "registry.example/no-such-image:1"'
IMAGE_PULL = {
    "phase": "Pending",
    "containerStatuses": [
        {
            "name": "trial",
            "ready": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": PULL_MESSAGE}},
        }
    ],
}


@pytest.mark.parametrize(
    ("pod_status", "reason", "message"),
    [
        pytest.param(
            UNSCHEDULABLE, "Unschedulable", "Insufficient nvidia.com/gpu", id="unschedulable-gpu"
        ),
        pytest.param(IMAGE_PULL, "ImagePullBackOff", PULL_MESSAGE, id="image-pull-back-off"),
    ],
)
def test_a_pod_that_cannot_start_is_a_condition_and_one_event(
    make: Callable[..., Study], pod_status: dict[str, Any], reason: str, message: str
) -> None:
    study = make(budget={"parallelism": 1})
    study.tick()
    (pod,) = study.live_pods()
    pod["status"] = copy.deepcopy(pod_status)
    for _ in range(3):
        assert study.tick() is False
    ready = study.condition("PodsReady")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert message in ready["message"] and pod["metadata"]["name"] in ready["message"]
    assert study.status["phase"] == "Running"
    (event,) = study.events_of(reason)
    assert message in event


def test_a_gpu_study_asks_for_a_gpu_limit(make: Callable[..., Study]) -> None:
    study = make(trial={"resources": {"limits": {"nvidia.com/gpu": 1}}})
    study.tick()
    pod = study.live_pods()[0]
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert toleration in pod["spec"]["tolerations"]


# ---------------------------------------------------------------------------- storage


def test_with_no_default_storage_the_study_waits_saying_so(fake: FakeKube) -> None:
    study = Study(fake, None, config_url=None, budget={"maxTrials": 1})
    assert study.tick() is False
    waiting = study.condition("StorageReady")
    assert (waiting["status"], waiting["reason"]) == ("False", "StorageUnavailable")
    assert "KUBETUNE_STORAGE_URL is not set" in waiting["message"]
    assert study.status["phase"] == "Pending"
    assert fake.pods == {}


def test_a_storage_secret_reaches_pods_only_by_reference(fake: FakeKube, storage_url: str) -> None:
    fake.secrets["pg"] = {"stringData": {"url": storage_url}}
    study = Study(
        fake,
        storage_url,
        config_url=None,
        budget={"maxTrials": 2},
        storage={"secretRef": {"name": "pg"}},
    )
    study.tick()
    assert study.condition("StorageReady")["status"] == "True"
    pods = study.live_pods()
    assert pods
    for pod in pods:
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env[STORAGE_URL_ENV]["valueFrom"] == {"secretKeyRef": {"name": "pg", "key": "url"}}
        assert storage_url not in json.dumps(pod)
    assert "ensure_secret" not in fake.calls, "the user's Secret is used, not copied"
    assert study.run_to_end()["phase"] == "Succeeded"


def test_studies_of_one_name_in_two_namespaces_are_two_optuna_studies(storage_url: str) -> None:
    a = Study(FakeKube(), storage_url, name="same-name", namespace="team-a")
    b = Study(FakeKube(), storage_url, name="same-name", namespace="team-b")
    a.edit(budget={"maxTrials": 3})
    b.edit(budget={"maxTrials": 5})
    assert a.run_to_end()["phase"] == b.run_to_end()["phase"] == "Succeeded"
    assert a.status["studyName"] != b.status["studyName"]
    assert len(a.optuna.trials) == 3
    assert len(b.optuna.trials) == 5


def test_on_delete_delete_drops_the_optuna_study(make: Callable[..., Study]) -> None:
    study = make(budget={"maxTrials": 1}, storage={"onDelete": "delete"})
    study.run_to_end()
    name = study.status["studyName"]
    assert name in optuna.get_all_study_names(study.url)
    # The delete handler makes a fresh reconciler.
    fresh = Study(study.fake, study.url, storage={"onDelete": "delete"})
    fresh.reconciler.delete(study.meta, study.spec, dict(study.status))
    assert name not in optuna.get_all_study_names(study.url)


# ------------------------------------------------------------------ multi-objective


def test_a_multi_objective_study_reports_its_pareto_front(make: Callable[..., Study]) -> None:
    study = make(
        objective={"directions": ["minimize", "minimize"], "metrics": ["a", "b"]},
        budget={"maxTrials": 4, "parallelism": 2},
    )
    study.tick()
    values = iter([[0.2, 0.8], [0.5, 0.5], [0.9, 0.9], [0.8, 0.1]])  # the third is dominated
    while not study.tick():
        for pod in study.live_pods():
            study.complete(study.claim(pod), next(values))
            study.exit(pod)
    final = study.status
    assert final["phase"] == "Succeeded", final
    front = final["paretoFront"]
    assert {t["number"] for t in front} == {t.number for t in study.optuna.best_trials}
    assert len(front) == 3
    assert all(len(t["values"]) == 2 for t in front)
    assert final.get("bestTrial") is None
    document = json.loads(study.fake.configmaps["demo-best-params"]["best_params.json"])
    assert len(document) == len(front)


# ------------------------------------------------------- what the status and Events say


def test_the_best_trial_in_the_status_is_replaced_not_merged(make: Callable[..., Study]) -> None:
    """Each trial beats the last and names its parameter by its parity (a conditional
    search space): the status and the ConfigMap hold exactly the best trial's params.
    (The same through the API server's merge patches: e2e test_cluster_path.py.)"""
    study = make(budget={"maxTrials": 4, "parallelism": 1})
    seen: list[dict[str, Any]] = []
    while not study.tick():
        for pod in study.live_pods():
            pod["status"] = {"phase": "Running"}
            trial = study.optuna.ask()
            trial.set_user_attr("kubetune.worker", pod["metadata"]["name"])
            trial.suggest_float("x_odd" if trial.number % 2 else "x_even", 0, 1)
            study.optuna.tell(trial, -float(trial.number))
            study.exit(pod)
        if study.status.get("bestTrial"):
            seen.append(study.status["bestTrial"])
    assert study.status["phase"] == "Succeeded"
    assert [list(best["params"]) for best in seen] == [["x_even"], ["x_odd"], ["x_even"]]
    assert list(study.status["bestTrial"]["params"]) == ["x_odd"]
    document = json.loads(study.fake.configmaps["demo-best-params"]["best_params.json"])
    assert list(document) == ["x_odd"]
    assert len(study.events_of("NewBestTrial")) == 4


def test_a_refused_pod_is_a_condition_and_one_event_until_it_is_not(
    make: Callable[..., Study], fake: FakeKube
) -> None:
    """The API server refuses the trial pods (here: their ServiceAccount is missing): the
    Study says so with the server's words, once; when it accepts them, the study runs.
    (The refusal of a real API server: e2e test_cluster_path.py.)"""
    from kubetune_operator.kube import ApiRefused

    fake.refusal = ApiRefused(
        403, "Forbidden", 'pods "demo-trial-x" is forbidden: serviceaccount "team-trials" not found'
    )
    study = make(budget={"maxTrials": 2, "parallelism": 1})
    for _ in range(3):
        assert study.tick() is False
    refused = study.condition("PodsReady")
    assert (refused["status"], refused["reason"]) == ("False", "PodCreateRefused")
    assert 'serviceaccount "team-trials" not found' in refused["message"]
    assert study.status["phase"] == "Running"
    assert len(study.events_of("PodCreateRefused")) == 1
    fake.refusal = None
    study.tick()  # the pod is made
    study.tick()  # and seen
    assert study.condition("PodsReady")["status"] == "True"
    final = study.run_to_end()
    assert final["phase"] == "Succeeded" and final["trials"]["complete"] == 2
