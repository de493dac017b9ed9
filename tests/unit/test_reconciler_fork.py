"""The reconciler with ``spec.forkFrom`` (FakeKube, a real PostgreSQL): the fork waits
for its parent, copies the parent's trials that fit before its first pod, once, and
shows it in ``status.parent``."""

from __future__ import annotations

import copy
from typing import Any

import optuna
from kubetune.engine.fork import FORKED_FROM_ATTR
from kubetune_operator.reconciler import shared_storage
from test_reconciler import FakeKube
from test_reconciler_rules import Study


class StudiesKube(FakeKube):
    """FakeKube that also lists Study objects, as the operator finds a fork's parent."""

    def __init__(self) -> None:
        super().__init__()
        self.studies: dict[str, dict[str, Any]] = {}

    def find_study(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append("find_study")
        found = self.studies.get(name)
        return copy.deepcopy(found) if found is not None else None


def finished_parent(storage_url: str) -> tuple[StudiesKube, Study]:
    """A parent Study run to its end: 4 trials, x anywhere in [-10, 10]."""
    kube = StudiesKube()
    parent = Study(kube, storage_url, name="parent", budget={"maxTrials": 4})
    parent.run_to_end()
    return kube, parent


def listing(parent: Study, kube: StudiesKube) -> StudiesKube:
    """A FakeKube of the fork's own that lists the parent Study as the API server would."""
    fork_kube = StudiesKube()
    fork_kube.studies["parent"] = {
        "metadata": parent.meta,
        "spec": parent.spec,
        "status": copy.deepcopy(kube.status),
    }
    return fork_kube


def a_fork(kube: StudiesKube, storage_url: str, **spec_changes: Any) -> Study:
    """Study "fork" with ``forkFrom: {study: parent}`` and ``spec_changes``."""
    return Study(kube, storage_url, name="fork", forkFrom={"study": "parent"}, **spec_changes)


def test_a_fork_waits_for_its_parent_then_starts_from_its_trials(storage_url: str) -> None:
    kube, parent = finished_parent(storage_url)
    fork_kube = StudiesKube()
    fork = a_fork(
        fork_kube,
        storage_url,
        searchSpace={"x": {"type": "float", "low": -20, "high": 20}},
        budget={"maxTrials": 8},  # the copied trials count: 4 of them, 4 new
    )
    fork.tick()
    assert fork.status["phase"] == "Pending"
    assert fork.condition("StorageReady")["message"] == (
        "spec.forkFrom.study: Study 'parent' not found in namespace 'team-a'"
    )
    assert fork_kube.pods == {}  # no trial before the copy

    fork_kube.studies["parent"] = listing(parent, kube).studies["parent"]
    fork.tick()
    assert fork.status["parent"] == {"name": "parent", "trialsCopied": 4, "trialsLeftOut": 0}
    assert len(fork_kube.pods) == 2
    copied = fork.optuna.get_trials()
    assert sorted(t.user_attrs[FORKED_FROM_ATTR]["number"] for t in copied) == [0, 1, 2, 3]

    # The parent goes; the fork goes on (its copy is done) and copies nothing again.
    del fork_kube.studies["parent"]
    fork.reconciler = type(fork.reconciler)(
        fork.reconciler.config, emit=fork.reconciler.emit, kube=fork_kube
    )  # an operator restart
    fork.tick()
    assert len(fork.optuna.get_trials()) == 4
    assert fork.status["parent"]["trialsCopied"] == 4
    assert fork.condition("StorageReady")["status"] == "True"


def test_a_narrower_fork_counts_the_trials_it_leaves_out(storage_url: str) -> None:
    kube, parent = finished_parent(storage_url)
    outside = sum(
        1
        for t in optuna.load_study(
            study_name=kube.status["studyName"], storage=shared_storage(storage_url)
        ).trials
        if t.params["x"] > 0
    )
    fork_kube = listing(parent, kube)
    fork = a_fork(
        fork_kube,
        storage_url,
        searchSpace={"x": {"type": "float", "low": -10, "high": 0}},
    )
    fork.tick()
    assert fork.status["parent"] == {
        "name": "parent",
        "trialsCopied": 4 - outside,
        "trialsLeftOut": outside,
    }


def test_a_fork_with_another_direction_fails_naming_the_objective(storage_url: str) -> None:
    kube, parent = finished_parent(storage_url)
    fork_kube = listing(parent, kube)
    fork = a_fork(
        fork_kube,
        storage_url,
        objective={"direction": "maximize"},
    )
    assert fork.tick() is True
    assert fork.status["phase"] == "Failed"
    assert "spec.objective: the parent study 'parent' has directions ['minimize']" in str(
        fork.status
    )
    assert fork_kube.pods == {}


def test_widening_a_started_study_is_refused_pointing_to_fork(storage_url: str) -> None:
    study = Study(StudiesKube(), storage_url, budget={"maxTrials": 6})
    study.tick()
    study.run_round()
    study.edit(searchSpace={"x": {"type": "float", "low": -10, "high": 100}})
    study.tick()
    refused = study.condition("SpecChangeRefused")
    assert refused["status"] == "True"
    assert "kubetune fork demo --set FIELD=VALUE" in refused["message"]
