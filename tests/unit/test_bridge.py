"""From spec to Optuna: every sampler and pruner name builds, and bad args are named."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from kubetune.engine import bridge, budget
from kubetune.study.spec import SpecError, StudySpec, validate_spec

SPACE = {
    "x": {"type": "float", "low": -1.0, "high": 1.0, "step": 0.5},
    "n": {"type": "int", "low": 1, "high": 3},
    "c": {"type": "categorical", "choices": ["a", "b"]},
}


def spec_with(**changes: Any) -> StudySpec:
    data: dict[str, Any] = {
        "searchSpace": SPACE,
        "trial": {"python": "examples.objectives.quadratic:objective"},
    }
    data.update(changes)
    return validate_spec(data)


SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
    "grid": optuna.samplers.GridSampler,
    "nsgaii": optuna.samplers.NSGAIISampler,
    "bruteforce": optuna.samplers.BruteForceSampler,
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_name_builds(name: str) -> None:
    sampler = bridge.build_sampler(spec_with(sampler={"name": name, "seed": 3}))
    assert isinstance(sampler, SAMPLERS[name])


PRUNERS: dict[str, tuple[dict[str, Any], type]] = {
    "none": ({}, optuna.pruners.NopPruner),
    "median": ({"n_warmup_steps": 2}, optuna.pruners.MedianPruner),
    "percentile": ({"percentile": 25.0}, optuna.pruners.PercentilePruner),
    "successive_halving": ({}, optuna.pruners.SuccessiveHalvingPruner),
    "hyperband": ({"min_resource": 1, "max_resource": 9}, optuna.pruners.HyperbandPruner),
    "threshold": ({"upper": 10.0}, optuna.pruners.ThresholdPruner),
    "wilcoxon": ({"p_threshold": 0.1}, optuna.pruners.WilcoxonPruner),
    "patient": (
        {"patience": 2, "wrapped": {"name": "median"}},
        optuna.pruners.PatientPruner,
    ),
}


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_every_pruner_name_builds(name: str) -> None:
    args, cls = PRUNERS[name]
    assert isinstance(bridge.build_pruner(spec_with(pruner={"name": name, "args": args})), cls)


def test_default_pruner_is_optunas_median() -> None:
    assert isinstance(bridge.build_pruner(spec_with()), optuna.pruners.MedianPruner)


def test_tpe_uses_constant_liar_by_default_and_respects_an_explicit_choice() -> None:
    assert bridge.build_sampler(spec_with())._constant_liar is True
    explicit = spec_with(sampler={"name": "tpe", "args": {"constant_liar": False}})
    assert bridge.build_sampler(explicit)._constant_liar is False


def test_seeded_workers_do_not_propose_the_same_first_point() -> None:
    spec = spec_with(sampler={"name": "random", "seed": 7})
    first = []
    for worker in (0, 1):
        study = optuna.create_study(sampler=bridge.build_sampler(spec, worker_index=worker))
        trial = study.ask()
        first.append(bridge.suggest(trial, spec))
    assert first[0] != first[1]
    # ... while the same worker index reproduces its stream.
    again = optuna.create_study(sampler=bridge.build_sampler(spec, worker_index=0)).ask()
    assert bridge.suggest(again, spec) == first[0]


def test_grid_covers_every_combination() -> None:
    assert bridge.grid(spec_with()) == {
        "x": [-1.0, -0.5, 0.0, 0.5, 1.0],
        "n": [1, 2, 3],
        "c": ["a", "b"],
    }


@pytest.mark.parametrize(
    ("low", "high", "step"), [(0.0, 1.0, 0.35), (0.0, 0.3, 0.1), (1.0, 2.0, 0.3)]
)
def test_grid_of_a_float_the_step_does_not_divide_stays_in_range(
    low: float, high: float, step: float
) -> None:
    """The points are Optuna's for that stepped float: none above ``high``, none left out."""
    spec = spec_with(
        searchSpace={"x": {"type": "float", "low": low, "high": high, "step": step}},
        sampler={"name": "grid"},
    )
    points = bridge.grid(spec)["x"]
    optuna_high = optuna.distributions.FloatDistribution(low, high, step=step).high
    assert max(points) == pytest.approx(optuna_high)
    assert all(low <= point <= high for point in points)
    assert budget.grid_size(spec) == len(points)


def test_bad_sampler_argument_is_named() -> None:
    with pytest.raises(SpecError) as caught:
        bridge.build_sampler(spec_with(sampler={"name": "tpe", "args": {"n_startup": 5}}))
    path, reason = caught.value.problems[0]
    assert path == "spec.sampler.args.n_startup"
    assert "TPESampler has no argument 'n_startup'" in reason
    assert "n_startup_trials" in reason


def test_missing_required_pruner_argument_is_named() -> None:
    with pytest.raises(SpecError) as caught:
        bridge.build_pruner(spec_with(pruner={"name": "percentile"}))
    assert caught.value.problems[0][0] == "spec.pruner.args"
    assert "percentile" in caught.value.problems[0][1]


def test_suggest_matches_distributions() -> None:
    spec = spec_with()
    study = optuna.create_study()
    trial = study.ask()
    values = bridge.suggest(trial, spec)
    assert set(values) == {"x", "n", "c"}
    assert trial.distributions == bridge.distributions(spec)
    # An objective that suggests the same parameter again gets the same value.
    assert trial.suggest_float("x", -1.0, 1.0, step=0.5) == values["x"]
