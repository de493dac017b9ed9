"""Forking a study on the real PostgreSQL: which of the parent's trials the fork
starts with, and that its sampler learns from them."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from kubetune.engine import bridge
from kubetune.engine.fork import (
    FORKED_FROM_ATTR,
    ForkRefused,
    copy_parent_trials,
    parent_status,
)
from kubetune.engine.storage import open_storage
from kubetune.study.spec import validate_spec
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

pytestmark = pytest.mark.timeout(60)

PARENT_SPACE: dict[str, Any] = {
    "x": {"type": "float", "low": 0, "high": 1},
    "booster": {"type": "categorical", "choices": ["gbdt", "dart"]},
}


def spec_of(space: dict[str, Any], **extra: Any) -> Any:
    return validate_spec(
        {
            "objective": {"direction": "minimize"},
            "searchSpace": space,
            "trial": {"python": "examples.objectives.quadratic:objective"},
            **extra,
        }
    )


def parent_study(url: str) -> optuna.Study:
    """Six finished trials and one failed: x from 0 to 1, both boosters, one pruned."""
    storage = open_storage(url)
    study = bridge.prepare_study(storage, "parent", spec_of(PARENT_SPACE))
    dists = {"x": FloatDistribution(0, 1), "booster": CategoricalDistribution(["gbdt", "dart"])}
    for index, (x, booster) in enumerate(
        [(0.1, "gbdt"), (0.5, "dart"), (0.9, "gbdt"), (0.3, "dart"), (0.7, "gbdt")]
    ):
        study.add_trial(
            create_trial(
                value=(x - 0.35) ** 2,
                params={"x": x, "booster": booster},
                distributions=dists,
                intermediate_values={0: 1.0, 1: (x - 0.35) ** 2},
                user_attrs={"kubetune.worker": f"pod-{index}"},
            )
        )
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params={"x": 0.95, "booster": "dart"},
            distributions=dists,
            intermediate_values={0: 3.0},
        )
    )
    study.add_trial(
        create_trial(
            state=TrialState.FAIL, params={"x": 0.2, "booster": "gbdt"}, distributions=dists
        )
    )
    return study


def fork(url: str, space: dict[str, Any], **extra: Any) -> tuple[optuna.Study, Any]:
    spec = spec_of(space, forkFrom={"study": "parent", **extra.pop("fork", {})}, **extra)
    storage = open_storage(url)
    child = bridge.prepare_study(storage, "child", spec)
    parent = optuna.load_study(study_name="parent", storage=storage)
    return child, copy_parent_trials(parent, child, spec)


def test_widening_a_range_copies_every_finished_trial(storage_url: str) -> None:
    parent_study(storage_url)
    wider = {**PARENT_SPACE, "x": {"type": "float", "low": -5, "high": 5}}
    child, status = fork(storage_url, wider)

    assert (status.name, status.trials_copied, status.trials_left_out) == ("parent", 6, 0)
    trials = child.get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 5  # the failed one stays
    assert [t.state for t in trials].count(TrialState.PRUNED) == 1
    best = child.best_trial
    assert best.params == {"x": 0.3, "booster": "dart"}
    assert best.intermediate_values == {0: 1.0, 1: pytest.approx(0.0025)}
    assert best.user_attrs[FORKED_FROM_ATTR] == {"study": "parent", "number": 3}
    assert best.user_attrs["kubetune.worker"] == "pod-3"
    # The copies carry the new space's distribution: samplers see one search space.
    assert best.distributions["x"] == FloatDistribution(-5, 5)


def test_narrowing_leaves_out_and_counts_the_trials_outside(storage_url: str) -> None:
    parent_study(storage_url)
    narrower = {**PARENT_SPACE, "x": {"type": "float", "low": 0, "high": 0.6}}
    child, status = fork(storage_url, narrower)

    assert (status.trials_copied, status.trials_left_out) == (3, 3)  # 0.7, 0.9, 0.95 out
    assert sorted(t.params["x"] for t in child.get_trials()) == [0.1, 0.3, 0.5]


def test_adding_a_categorical_choice(storage_url: str) -> None:
    parent_study(storage_url)
    more = {**PARENT_SPACE, "booster": {"type": "categorical", "choices": ["gbdt", "dart", "goss"]}}
    child, status = fork(storage_url, more)

    assert (status.trials_copied, status.trials_left_out) == (6, 0)
    assert {t.params["booster"] for t in child.get_trials()} == {"gbdt", "dart"}
    assert child.trials[0].distributions["booster"].choices == ("gbdt", "dart", "goss")


def test_removing_a_choice_leaves_out_its_trials(storage_url: str) -> None:
    parent_study(storage_url)
    fewer = {**PARENT_SPACE, "booster": {"type": "categorical", "choices": ["gbdt"]}}
    _child, status = fork(storage_url, fewer)
    assert (status.trials_copied, status.trials_left_out) == (3, 3)


def test_adding_a_parameter_takes_its_default(storage_url: str) -> None:
    parent_study(storage_url)
    added = {**PARENT_SPACE, "depth": {"type": "int", "low": 1, "high": 8}}
    child, status = fork(storage_url, added, fork={"defaults": {"depth": 6}})

    assert (status.trials_copied, status.trials_left_out) == (6, 0)
    assert {t.params["depth"] for t in child.get_trials()} == {6}
    assert child.trials[0].distributions["depth"] == IntDistribution(1, 8)


def test_adding_a_parameter_without_a_default_leaves_every_trial_out(storage_url: str) -> None:
    parent_study(storage_url)
    added = {**PARENT_SPACE, "depth": {"type": "int", "low": 1, "high": 8}}
    _child, status = fork(storage_url, added)
    assert (status.trials_copied, status.trials_left_out) == (0, 6)


def test_a_default_outside_the_new_space_leaves_the_trials_out(storage_url: str) -> None:
    parent_study(storage_url)
    added = {**PARENT_SPACE, "depth": {"type": "int", "low": 1, "high": 8}}
    _child, status = fork(storage_url, added, fork={"defaults": {"depth": 12}})
    assert (status.trials_copied, status.trials_left_out) == (0, 6)


def test_a_default_for_no_parameter_is_refused_naming_the_field() -> None:
    with pytest.raises(Exception, match=r"spec\.forkFrom\.defaults\.depth: is not a parameter"):
        spec_of(PARENT_SPACE, forkFrom={"study": "parent", "defaults": {"depth": 3}})


def test_changing_the_sampler_and_the_new_sampler_learns_from_the_copies(
    storage_url: str,
) -> None:
    parent_study(storage_url)
    child, status = fork(
        storage_url,
        PARENT_SPACE,
        sampler={"name": "tpe", "seed": 1, "args": {"n_startup_trials": 3}},
    )
    assert status.trials_copied == 6
    spec = bridge.stored_spec(child._storage, child._study_id)
    assert spec is not None and spec.sampler.args == {"n_startup_trials": 3}

    def first_x(study_name: str) -> float:
        study = optuna.load_study(
            study_name=study_name, storage=child._storage, sampler=bridge.build_sampler(spec)
        )
        trial = study.ask()
        return float(bridge.suggest(trial, spec)["x"])

    # With no trials, TPE's first point is its seeded random start; the fork, already past
    # its 3 startup trials thanks to the copies, samples from its model of them instead.
    bridge.prepare_study(
        child._storage,
        "empty",
        spec_of(
            PARENT_SPACE, **{"sampler": {"name": "tpe", "seed": 1, "args": {"n_startup_trials": 3}}}
        ),
    )
    assert first_x("child") != first_x("empty")


def test_the_copy_is_made_once(storage_url: str) -> None:
    parent_study(storage_url)
    child, first = fork(storage_url, PARENT_SPACE)
    parent = optuna.load_study(study_name="parent", storage=child._storage)
    spec = bridge.stored_spec(child._storage, child._study_id)
    assert spec is not None
    again = copy_parent_trials(parent, child, spec)
    assert again == first == parent_status(child)
    assert len(child.get_trials()) == 6


def test_a_copy_cut_off_part_way_is_completed_without_duplicates(storage_url: str) -> None:
    study = parent_study(storage_url)
    spec = spec_of(PARENT_SPACE, forkFrom={"study": "parent"})
    child = bridge.prepare_study(study._storage, "child", spec)
    # As if the executor died after copying the first two trials, before recording the copy.
    first_two = [t for t in study.get_trials() if t.state == TrialState.COMPLETE][:2]
    child.add_trials(
        [
            create_trial(
                value=t.value,
                params=t.params,
                distributions=t.distributions,
                user_attrs={FORKED_FROM_ATTR: {"study": "parent", "number": t.number}},
            )
            for t in first_two
        ]
    )
    status = copy_parent_trials(study, child, spec)
    assert status.trials_copied == 6
    numbers = sorted(t.user_attrs[FORKED_FROM_ATTR]["number"] for t in child.get_trials())
    assert numbers == [0, 1, 2, 3, 4, 5]


def test_another_direction_is_refused(storage_url: str) -> None:
    parent_study(storage_url)
    with pytest.raises(ForkRefused, match=r"spec\.objective: .*keeps its parent's objective"):
        fork(storage_url, PARENT_SPACE, objective={"direction": "maximize"})


def test_a_grid_fork_runs_only_the_points_its_parent_did_not(storage_url: str) -> None:
    space: dict[str, Any] = {
        "depth": {"type": "int", "low": 1, "high": 2},
        "booster": {"type": "categorical", "choices": ["gbdt", "dart"]},
    }
    storage = open_storage(storage_url)
    grid = spec_of(space, sampler={"name": "grid"})
    parent = bridge.prepare_study(storage, "parent", grid)
    dists = bridge.distributions(grid)
    points = [(1, "gbdt"), (1, "dart"), (2, "gbdt"), (2, "dart"), (2, "dart")]  # one twice
    for depth, booster in points:
        parent.add_trial(
            create_trial(
                value=depth, params={"depth": depth, "booster": booster}, distributions=dists
            )
        )
    wider = {**space, "booster": {"type": "categorical", "choices": ["gbdt", "dart", "goss"]}}
    child, status = fork(storage_url, wider, sampler={"name": "grid"})
    assert (status.trials_copied, status.trials_left_out) == (4, 1)

    spec = bridge.stored_spec(child._storage, child._study_id)
    assert spec is not None
    study = optuna.load_study(
        study_name="child", storage=child._storage, sampler=bridge.build_sampler(spec)
    )
    new = []
    for _ in range(2):
        trial = study.ask()
        new.append(tuple(bridge.suggest(trial, spec).values()))
        study.tell(trial, 0.0)
    assert sorted(new) == [(1, "goss"), (2, "goss")]  # the parent's four points are not rerun
