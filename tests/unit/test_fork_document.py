"""The fork's Study document: spec edits by --set, what is carried over, its budget."""

from __future__ import annotations

import pytest
from kubetune.engine.fork import apply_sets, fork_document
from kubetune.study.spec import SpecError, load_study

PARENT = load_study(
    {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "lgbm", "namespace": "team-a", "labels": {"team": "a"}},
        "spec": {
            "objective": {"direction": "maximize", "metric": "auc"},
            "searchSpace": {
                "lr": {"type": "float", "low": 0.001, "high": 0.3, "log": True},
                "boosting": {"type": "categorical", "choices": ["gbdt", "dart"]},
            },
            "budget": {"maxTrials": 40},
            "trial": {"python": "examples.objectives.lgbm:objective"},
            "storage": {"studyName": "shared-lgbm"},
            "suspend": True,
        },
    }
)


def test_sets_edit_the_spec_as_yaml_values() -> None:
    fork = fork_document(
        PARENT,
        [
            "searchSpace.boosting.choices=[gbdt, dart, goss]",
            "spec.sampler={name: gp, seed: 3}",
            "searchSpace.depth={type: int, low: 1, high: 8}",
        ],
        defaults={"depth": 6},
    )
    space = fork.spec.search_space
    assert space["boosting"].choices == ["gbdt", "dart", "goss"]  # type: ignore[union-attr]
    assert fork.spec.sampler.name == "gp" and fork.spec.sampler.seed == 3
    assert fork.spec.fork_from is not None
    assert (fork.spec.fork_from.study, fork.spec.fork_from.defaults) == ("lgbm", {"depth": 6})


def test_what_is_carried_over() -> None:
    fork = fork_document(PARENT, name="lgbm-wide", trials_copied=25)
    assert fork.metadata.name == "lgbm-wide"
    assert fork.metadata.namespace == "team-a" and fork.metadata.labels == {"team": "a"}
    assert fork.spec.storage.study_name is None  # its own study, not the parent's
    assert fork.spec.suspend is False
    assert fork.spec.budget.max_trials == 25 + 40  # the copied trials and the parent's budget
    assert fork_document(PARENT).metadata.name == "lgbm-fork"


def test_a_budget_given_is_kept() -> None:
    fork = fork_document(PARENT, ["budget.maxTrials=50"], trials_copied=25)
    assert fork.spec.budget.max_trials == 50


def test_an_empty_value_removes_a_field() -> None:
    assert apply_sets({"pruner": {"name": "median"}, "x": 1}, ["pruner="]) == {"x": 1}


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ("searchSpace.lr.high", "--set: 'searchSpace.lr.high' is not of the form"),
        ("searchSpace..high=1", "--set: 'searchSpace..high=1' is not of the form"),
        ("budget.maxTrials.x=1", "spec.budget.maxTrials: is not a mapping"),
        ("searchSpace.lr.high=[1", "spec.searchSpace.lr.high: '[1' is not a YAML value"),
        ("searchSpace.lr.high=-1", "spec.searchSpace.lr.high: must be >= low"),
        ("forkFrom.defaults={nope: 1}", "spec.forkFrom.defaults.nope: is not a parameter"),
        ("forkFrom.defaults=5", "spec.forkFrom.defaults: must be a valid dictionary"),
    ],
)
def test_bad_sets_name_the_field(item: str, problem: str) -> None:
    with pytest.raises(SpecError) as raised:
        fork_document(PARENT, [item])
    assert problem in str(raised.value)
