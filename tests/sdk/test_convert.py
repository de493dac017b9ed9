"""Converters on W&B sweep, Katib Experiment and Hydra sweeper files (tests/sdk/examples)."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetune.cli import app
from kubetune.convert import ConversionError, convert
from kubetune.study.spec import load_study
from kubetune_cli import kubetune
from typer.testing import CliRunner

EXAMPLES = Path(__file__).parent / "examples"


def warned(warnings: list[str], *fragments: str) -> bool:
    return any(all(f in w for f in fragments) for w in warnings)


# --------------------------------------------------------------------- W&B


def test_wandb_bayes_sweep_with_hyperband() -> None:
    result = convert("wandb", EXAMPLES / "wandb" / "bayes-hyperband.yaml")
    study = load_study(result.study)
    spec = result.study["spec"]
    assert study.metadata.name == "sweepdemo"
    assert spec["objective"] == {"metric": "val_loss", "direction": "minimize"}
    assert spec["sampler"] == {"name": "gp"}
    assert spec["searchSpace"]["learning_rate"] == {"type": "float", "low": 0.0001, "high": 0.1}
    assert spec["searchSpace"]["optimizer"] == {"type": "categorical", "choices": ["adam", "sgd"]}
    assert spec["pruner"] == {
        "name": "hyperband",
        "args": {"reduction_factor": 3, "min_resource": 3},
    }
    assert spec["trial"]["command"] == [
        "python",
        "train.py",
        "--learning_rate={learning_rate}",
        "--batch_size={batch_size}",
        "--epochs={epochs}",
        "--optimizer={optimizer}",
    ]
    assert spec["budget"]["maxTrials"] == 100
    assert warned(result.warnings, "run_cap", "100")
    assert warned(result.warnings, "wandb.log", "val_loss=<value>")


def test_wandb_grid_sweep_with_hydra_style_command() -> None:
    result = convert("wandb", EXAMPLES / "wandb" / "grid-command.yaml")
    spec = result.study["spec"]
    assert spec["sampler"] == {"name": "grid"}
    assert spec["objective"] == {"metric": "accuracy", "direction": "maximize", "goal": 0.99}
    # int_uniform: every int from min to max, as W&B's grid_search makes it.
    assert spec["searchSpace"]["layers"] == {"type": "int", "low": 1, "high": 3}
    # q_uniform in a grid: W&B takes numpy.arange(min, max, q), so max (0.5) is not a point.
    assert spec["searchSpace"]["dropout"] == {"type": "categorical", "choices": [0.0, 0.25]}
    assert spec["searchSpace"]["epochs"] == {"type": "categorical", "choices": [10]}
    # W&B runs the grid once through: 3 batch sizes x 3 layer counts x 2 dropouts x 1.
    assert spec["budget"]["maxTrials"] == 18
    # No early_terminate: W&B lets every run finish, so no pruner stops a grid point.
    assert spec["pruner"] == {"name": "none"}
    # ${env} is dropped (the runner finds python on PATH itself); no dashes for Hydra.
    assert spec["trial"]["command"] == [
        "python",
        "main.py",
        "batch_size={batch_size}",
        "layers={layers}",
        "dropout={dropout}",
        "epochs={epochs}",
    ]


def test_wandb_every_distribution() -> None:
    result = convert("wandb", EXAMPLES / "wandb" / "every-distribution.yaml", image="me/train:1")
    space = result.study["spec"]["searchSpace"]
    load_study(result.study)
    assert space["const"] == {"type": "categorical", "choices": [7]}
    assert space["choice"] == {"type": "categorical", "choices": ["a", "b", "c"]}
    assert space["layers"] == {"type": "int", "low": 2, "high": 8}
    assert space["dropout"] == {"type": "float", "low": 0.1, "high": 0.5}
    assert space["momentum"] == {"type": "float", "low": 0.5, "high": 0.9, "step": 0.1}
    # log_uniform takes natural-log exponents: e^-9.21 .. e^-2.3.
    assert space["lr_exp"]["log"] is True
    assert space["lr_exp"]["low"] == pytest.approx(math.exp(-9.21))
    assert space["lr_exp"]["high"] == pytest.approx(math.exp(-2.3))
    assert space["lr"] == {"type": "float", "low": 0.0001, "high": 0.1, "log": True}
    assert space["units"] == {"type": "int", "low": 16, "high": 512, "log": True}
    # q_log_uniform rounds e^x to a multiple of q (1): round(e^6.93) = 1022.
    assert space["width"] == {"type": "int", "low": 1, "high": round(math.exp(6.93)), "log": True}
    assert space["frac"] == {"type": "float", "low": 0.001, "high": 0.5, "log": True}
    # inv_log_uniform: log(1/X) uniform in [min, max], so X log-uniform in [e^-max, e^-min].
    assert space["decay"]["low"] == pytest.approx(math.exp(-9.21))
    assert space["decay"]["high"] == pytest.approx(math.exp(-2.3))
    assert space["decay2"] == {"type": "float", "low": 0.0001, "high": 0.1, "log": True}
    assert space["noise"] == {"type": "float", "low": -6.0, "high": 6.0}
    assert space["noise_q"] == {"type": "float", "low": 7.0, "high": 13.0, "step": 0.5}
    assert space["scale"]["log"] is True
    assert space["scale"]["low"] == pytest.approx(math.exp(-3))
    assert space["scale_q"] == {"type": "int", "low": 1, "high": 12, "log": True}
    assert space["mix"] == {"type": "float", "low": 0.0, "high": 1.0}
    assert space["mix_q"] == {"type": "float", "low": 0.0, "high": 1.0, "step": 0.1}
    assert space["optimizer.beta1"] == {"type": "float", "low": 0.8, "high": 0.99}
    spec = result.study["spec"]
    assert spec["sampler"] == {"name": "random"}
    assert spec["budget"]["maxTrials"] == 50
    assert spec["objective"] == {"metric": "loss", "direction": "minimize"}
    # max_iter 27 with s 2 brackets, eta 3: the smallest budget is 27 / 3^2.
    assert spec["pruner"]["args"] == {"reduction_factor": 3, "max_resource": 27, "min_resource": 3}
    assert spec["trial"]["image"] == "me/train:1"
    assert {"name": "WANDB_PROJECT", "value": "tuning"} in spec["trial"]["env"]
    assert {"name": "WANDB_ENTITY", "value": "my-team"} in spec["trial"]["env"]
    assert result.study["metadata"]["annotations"] == {
        "kubetune.io/description": "every distribution"
    }
    assert "--optimizer.kind={optimizer.kind}" in spec["trial"]["command"]
    expected = [
        ("job", "ignored"),
        ("choice.probabilities",),
        ("units.q", "8 dropped"),
        ("frac.q",),
        ("noise", "normal", "mu ± 3 sigma"),
        ("noise_q", "q_normal"),
        ("scale", "log_normal"),
        ("scale_q", "q_log_normal"),
        ("mix", "beta"),
        ("mix_q", "q_beta"),
        ("optimizer", "dotted names"),
        ("strict",),
        ("${args_json}", "KUBETUNE_PARAMS"),
    ]
    for fragments in expected:
        assert warned(result.warnings, *fragments), (fragments, result.warnings)


def sweep(parameters: dict[str, Any], **keys: Any) -> dict[str, Any]:
    return (
        {"program": "t.py", "method": "random", "metric": {"name": "m"}}
        | keys
        | {"parameters": parameters}
    )


def test_wandb_sweep_without_early_terminate_has_no_pruner() -> None:
    """W&B stops no run early without early_terminate; a Study without a pruner gets
    Optuna's median pruner, which would."""
    result = convert("wandb", sweep({"lr": {"min": 0.1, "max": 0.2}}))
    assert result.study["spec"]["pruner"] == {"name": "none"}
    assert load_study(result.study).spec.effective_pruner.name == "none"
    other = convert("wandb", sweep({"n": {"values": [1, 2]}}, early_terminate={"type": "envelope"}))
    assert other.study["spec"]["pruner"] == {"name": "none"}
    assert warned(other.warnings, "early_terminate", "envelope")


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        # W&B's q_uniform is round(uniform(min, max) / q) * q: multiples of q, ints for an int q.
        (
            {"distribution": "q_uniform", "min": 16, "max": 256, "q": 16},
            {"type": "int", "low": 16, "high": 256, "step": 16},
        ),
        (
            {"distribution": "q_uniform", "min": 0.05, "max": 1.0, "q": 0.1},
            {"type": "float", "low": 0.0, "high": 1.0, "step": 0.1},
        ),
        # Without q, W&B's schema default is 1.0: floats.
        (
            {"distribution": "q_uniform", "min": 1, "max": 5},
            {"type": "float", "low": 1.0, "high": 5.0, "step": 1.0},
        ),
        ({"values": [1, 2, 2, 3]}, {"type": "categorical", "choices": [1, 2, 3]}),
        ({"min": 1, "max": 4}, {"type": "int", "low": 1, "high": 4}),
        ({"min": 1.0, "max": 4}, {"type": "float", "low": 1.0, "high": 4.0}),
    ],
)
def test_wandb_distribution_as_the_sweep_controller_samples_it(
    parameter: dict[str, Any], expected: dict[str, Any]
) -> None:
    result = convert("wandb", sweep({"p": parameter}))
    assert result.study["spec"]["searchSpace"]["p"] == expected


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        ({"values": [3, 1, 2]}, {"type": "categorical", "choices": [3, 1, 2]}),
        ({"value": "x"}, {"type": "categorical", "choices": ["x"]}),
        ({"min": -1, "max": 1}, {"type": "int", "low": -1, "high": 1}),
        (
            {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.3},
            {"type": "categorical", "choices": [0.0, 0.3, 0.6, 0.8999999999999999]},
        ),
        (
            {"distribution": "q_uniform", "min": 2, "max": 10, "q": 4},
            {"type": "categorical", "choices": [2, 6]},
        ),
    ],
)
def test_wandb_grid_points_are_the_sweep_controllers(
    parameter: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Values recorded from wandb/sweeps grid_search (range(min, max + 1) and
    numpy.arange(min, max, q))."""
    result = convert("wandb", sweep({"p": parameter, "c": {"values": ["a", "b"]}}, method="grid"))
    spec = result.study["spec"]
    assert spec["searchSpace"]["p"] == expected
    size = len(expected["choices"]) if "choices" in expected else 3
    assert spec["budget"]["maxTrials"] == 2 * size
    capped = convert("wandb", sweep({"p": parameter}, method="grid", run_cap=1))
    assert capped.study["spec"]["budget"]["maxTrials"] == 1


@pytest.mark.parametrize(
    "parameter",
    [
        {"min": 0.1, "max": 0.2},
        {"distribution": "log_uniform_values", "min": 0.001, "max": 0.1},
        {"distribution": "q_log_uniform_values", "min": 1, "max": 100, "q": 1},
        {"distribution": "normal", "mu": 0, "sigma": 1},
        {"values": [1, 2], "probabilities": [0.5, 0.5]},
    ],
)
def test_wandb_grid_over_a_distribution_is_refused_naming_the_parameter(
    parameter: dict[str, Any],
) -> None:
    """W&B's grid search raises for these ("a disallowed type with grid search"); a
    random sampler instead would run another search."""
    with pytest.raises(ConversionError, match=r"^parameters\.opt\.lr: a grid takes"):
        convert("wandb", sweep({"opt": {"parameters": {"lr": parameter}}}, method="grid"))


@pytest.mark.parametrize(
    ("parameter", "reason"),
    [
        ({"distribution": "zipf", "min": 1, "max": 3}, "'zipf' is not one W&B documents"),
        ({"values": [[1, 2], [3, 4]]}, "is a list or mapping"),
        ({"min": 5, "max": 5}, "min 5 is not less than max 5"),
        ({"distribution": "int_uniform", "min": 0.5, "max": 3}, "needs integer min and max"),
        ({"distribution": "uniform", "min": 1}, "needs max"),
        ("0.1", "is not a mapping"),
    ],
)
def test_wandb_parameter_that_cannot_be_represented_is_refused(parameter: Any, reason: str) -> None:
    """Never dropped from the search with only a warning: the program would run with
    its default instead."""
    with pytest.raises(ConversionError) as error:
        convert("wandb", sweep({"lr": {"value": 1}, "bad": parameter}))
    assert str(error.value).startswith("parameters.bad: ")
    assert str(error.value).count("parameters.bad") == 1
    assert reason in str(error.value)


def test_wandb_sweep_without_parameters_is_refused() -> None:
    with pytest.raises(ConversionError, match="parameters"):
        convert("wandb", {"method": "random", "program": "t.py"})


# ------------------------------------------------------------------- Katib


def katib(name: str) -> Any:
    return convert("katib", EXAMPLES / "katib" / f"{name}.yaml")


def test_katib_random_experiment() -> None:
    result = katib("random")
    spec = result.study["spec"]
    load_study(result.study)
    assert result.study["metadata"] == {"name": "random"}
    assert spec["objective"] == {
        "direction": "maximize",
        "metric": "Validation-accuracy",
        "goal": 0.99,
    }
    assert spec["sampler"] == {"name": "random", "seed": 7}
    # No earlyStopping: Katib stops no trial early, so neither does the Study.
    assert spec["pruner"] == {"name": "none"}
    assert spec["budget"] == {"maxTrials": 12, "parallelism": 3, "maxFailedTrials": 3}
    assert spec["searchSpace"] == {
        "lr": {"type": "float", "low": 0.01, "high": 0.03},
        "num-layers": {"type": "int", "low": 2, "high": 5},
        "optimizer": {"type": "categorical", "choices": ["sgd", "adam", "ftrl"]},
    }
    assert spec["trial"]["command"] == [
        "python3",
        "/opt/mxnet-mnist/mnist.py",
        "--batch-size=64",
        "--lr={lr}",
        "--num-layers={num-layers}",
        "--optimizer={optimizer}",
    ]
    assert spec["trial"]["image"] == "docker.io/kubeflowkatib/mxnet-mnist:v0.15.0"
    assert spec["trial"]["resources"] == {"limits": {"memory": "1Gi", "cpu": "1"}}
    for fragments in [
        ("metadata.namespace", "kubeflow"),
        ("additionalMetricNames", "Train-accuracy"),
        ("Katib takes the max", "last"),
        ("kubetune-trial",),
    ]:
        assert warned(result.warnings, *fragments), fragments


@pytest.mark.parametrize(
    ("example", "sampler"),
    [
        ("grid", {"name": "grid"}),
        (
            "tpe",
            {"name": "tpe", "seed": 10, "args": {"n_startup_trials": 5, "n_ei_candidates": 24}},
        ),
        ("multivariate-tpe", {"name": "tpe", "args": {"multivariate": True}}),
        ("cma-es", {"name": "cmaes", "args": {"restart_strategy": "ipop", "sigma0": 0.2}}),
        ("sobol", {"name": "qmc", "args": {"qmc_type": "sobol"}}),
        ("bayesian-optimization", {"name": "gp", "seed": 10, "args": {"n_startup_trials": 5}}),
        ("pbt", {"name": "tpe"}),
    ],
)
def test_katib_algorithms(example: str, sampler: dict[str, Any]) -> None:
    result = katib(example)
    assert result.study["spec"]["sampler"] == sampler
    load_study(result.study)
    if example == "grid":
        assert result.study["spec"]["searchSpace"]["lr"]["step"] == 0.001
    if example == "bayesian-optimization":
        assert warned(result.warnings, "acq_func", "ignored")
    if example == "pbt":
        assert warned(result.warnings, "'pbt' has no Optuna counterpart")
        assert warned(result.warnings, "n_population", "ignored")


def test_katib_hyperband_becomes_a_pruner() -> None:
    result = katib("hyperband")
    spec = result.study["spec"]
    assert spec["sampler"] == {"name": "random"}
    assert spec["pruner"] == {
        "name": "hyperband",
        "args": {"reduction_factor": 2, "min_resource": 2},
    }
    assert warned(result.warnings, "num-epochs", "stays in the search space")


def test_katib_distributions_and_steps() -> None:
    result = katib("optuna-distribution")
    space = result.study["spec"]["searchSpace"]
    assert space["lr"] == {"type": "float", "low": 1.0, "high": 5.0, "step": 0.1}
    assert space["momentum"] == {"type": "float", "low": 0.001, "high": 1.0, "log": True}
    assert space["epochs"] == {"type": "int", "low": 1, "high": 3}
    assert space["batch_size"] == {"type": "int", "low": 32, "high": 64, "log": True}
    assert space["weight_decay"] == {"type": "float", "low": 0.0001, "high": 0.01, "log": True}
    assert space["shift"] == {"type": "float", "low": -1.0, "high": 1.0}
    assert warned(result.warnings, "momentum", "step", "dropped")
    assert warned(result.warnings, "weight_decay", "logNormal", "[min, max]")
    assert warned(result.warnings, "shift", "normal")
    # metricStrategies: latest is what kubetune does; no warning about it.
    assert not warned(result.warnings, "Katib takes the")


def test_katib_median_stop() -> None:
    result = katib("median-stop")
    assert result.study["spec"]["pruner"] == {
        "name": "median",
        "args": {"n_startup_trials": 1, "n_warmup_steps": 2},
    }
    assert warned(result.warnings, "retain")


def test_katib_tfjob_with_discrete_parameter() -> None:
    result = katib("tfjob-discrete")
    spec = result.study["spec"]
    trial = spec["trial"]
    assert spec["searchSpace"]["batch_size"] == {"type": "categorical", "choices": [32, 64, 128]}
    assert trial["command"][-1] == "--log-path=/train/trial-{trial_number}"
    assert "--batch-size={batch_size}" in trial["command"]
    assert trial["nodeSelector"] == {"accelerator": "nvidia-a100"}
    assert trial["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "mnist"}}]
    assert trial["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert trial["env"] == [{"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"}]
    assert trial["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    for fragments in [
        ("TensorFlowEvent",),
        ("resumePolicy",),
        ("containers tensorflow are not kept",),
        ("TFJob",),
    ]:
        assert warned(result.warnings, *fragments), fragments
    load_study(result.study)


def test_katib_refuses_what_is_not_an_experiment() -> None:
    with pytest.raises(ConversionError, match="not a Katib Experiment"):
        convert("katib", {"apiVersion": "v1", "kind": "Pod"})


# ------------------------------------------------------------------- Hydra


def test_hydra_sphere_example() -> None:
    result = convert("hydra", EXAMPLES / "hydra" / "sphere.yaml", program="sphere.py")
    spec = result.study["spec"]
    assert result.study["metadata"]["name"] == "sphere"
    assert spec["searchSpace"] == {
        "x": {"type": "float", "low": -5.5, "high": 5.5, "step": 0.5},
        "y": {"type": "categorical", "choices": [-5, 0, 5]},
    }
    assert spec["sampler"] == {"name": "tpe", "seed": 123, "args": {"n_startup_trials": 5}}
    assert spec["budget"] == {"maxTrials": 20, "parallelism": 1}
    assert spec["objective"] == {"direction": "minimize", "metric": "objective"}
    # The sweeper reports only final values: nothing is pruned.
    assert spec["pruner"] == {"name": "none"}
    assert spec["storage"] == {"studyName": "sphere"}
    assert spec["trial"]["command"] == ["python", "sphere.py", "x={x}", "y={y}"]
    assert warned(result.warnings, "objective=<value>")
    assert not warned(result.warnings, "--program")


def test_hydra_multi_objective_example() -> None:
    result = convert("hydra", EXAMPLES / "hydra" / "multi-objective.yaml", metric="loss")
    spec = result.study["spec"]
    space = spec["searchSpace"]
    assert spec["objective"] == {
        "directions": ["minimize", "minimize"],
        "metrics": ["loss_0", "loss_1"],
    }
    assert spec["sampler"] == {"name": "nsgaii", "seed": 123, "args": {"population_size": 20}}
    assert spec["budget"] == {"maxTrials": 40, "parallelism": 2, "maxFailedTrials": 4}
    # What hydra-optuna-sweeper 1.3.0 builds from this file (recorded): interval() gives
    # floats even with whole bounds; shuffle(range(1, 4)) enumerates 1, 2, 3.
    assert space == {
        "x": {"type": "float", "low": 0.0, "high": 5.0},
        "y": {"type": "float", "low": 0.0, "high": 3.0},
        "model.lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
        "model.depth": {"type": "float", "low": 1.0, "high": 64.0, "log": True},
        "model.act": {"type": "categorical", "choices": ["relu", "gelu", "silu"]},
        "trainer.epochs": {"type": "categorical", "choices": [1, 2, 3]},
    }
    assert spec["trial"]["command"][-1] == "seed=7"
    assert spec["trial"]["command"][:2] == ["python", "main.py"]
    for fragments in [
        ("custom_search_space",),
        ("max_failure_rate", "maxFailedTrials 4"),
        ("storage", "not kept"),
        ("--program",),
        ("loss_0=<value> and loss_1=<value>",),
    ]:
        assert warned(result.warnings, *fragments), fragments
    load_study(result.study)


def test_hydra_legacy_search_space_and_defaults_sampler() -> None:
    result = convert("hydra", EXAMPLES / "hydra" / "legacy-search-space.yaml", program="app.py")
    spec = result.study["spec"]
    assert spec["sampler"] == {"name": "random"}
    assert spec["objective"]["direction"] == "maximize"
    # The sweeper's default n_jobs is 2: it asks Optuna for two trials at a time.
    assert spec["budget"] == {"maxTrials": 10, "parallelism": 2}
    assert spec["searchSpace"]["lr"] == {"type": "float", "low": 0.0001, "high": 0.1, "log": True}
    assert spec["searchSpace"]["units"] == {"type": "int", "low": 32, "high": 256, "step": 32}
    # step 1 on [0, 0.5]: Optuna's DiscreteUniformDistribution(0, 0.5, 1) has the one value 0.
    assert spec["searchSpace"]["dropout"] == {
        "type": "float",
        "low": 0.0,
        "high": 0.0,
        "step": 1.0,
    }


def test_hydra_needs_a_sweeper() -> None:
    with pytest.raises(ConversionError, match=r"hydra\.sweeper"):
        convert("hydra", {"model": {"lr": 0.1}})


#: Each params value, and what hydra-core 1.3.8 with hydra-optuna-sweeper 1.3.0 make of it
#: (create_params_from_overrides, recorded): a search-space entry, or the text of a fixed
#: value passed to every trial.
HYDRA_GRAMMAR: list[tuple[Any, Any]] = [
    ("interval(1, 100)", {"type": "float", "low": 1.0, "high": 100.0}),
    ("interval(start=1, end=5)", {"type": "float", "low": 1.0, "high": 5.0}),
    ("interval(0.1, 1)", {"type": "float", "low": 0.1, "high": 1.0}),
    ("int(interval(8, 64))", {"type": "int", "low": 8, "high": 64}),
    ("int(interval(1.5, 8.7))", {"type": "int", "low": 1, "high": 8}),
    ("float(interval(1, 10))", {"type": "float", "low": 1.0, "high": 10.0}),
    ("tag(log, int(interval(1, 100)))", {"type": "int", "low": 1, "high": 100, "log": True}),
    ("tag(log, interval(1, 100))", {"type": "float", "low": 1.0, "high": 100.0, "log": True}),
    ("tag(log, interval(1e-5, 0.1))", {"type": "float", "low": 1e-5, "high": 0.1, "log": True}),
    ("tag(log, sweep=interval(1, 2))", {"type": "float", "low": 1.0, "high": 2.0, "log": True}),
    ("tag(log, foo, interval(1, 10))", {"type": "float", "low": 1.0, "high": 10.0, "log": True}),
    # The sweeper hands a range's stop to Optuna as high: included.
    ("range(1, 4)", {"type": "int", "low": 1, "high": 4}),
    ("range(4)", {"type": "int", "low": 0, "high": 4}),
    ("range(-1, 2)", {"type": "int", "low": -1, "high": 2}),
    ("range(1, 10, 3)", {"type": "int", "low": 1, "high": 10, "step": 3}),
    ("range(1, 4, step=2)", {"type": "int", "low": 1, "high": 3, "step": 2}),
    ("range(start=1, stop=4)", {"type": "int", "low": 1, "high": 4}),
    ("range(0, 1, 0.25)", {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25}),
    ("range(0, 1, 0.3)", {"type": "float", "low": 0.0, "high": 0.9, "step": 0.3}),
    ("range(0.0, 1.0)", {"type": "float", "low": 0.0, "high": 1.0, "step": 1.0}),
    ("float(range(1, 4))", {"type": "float", "low": 1.0, "high": 4.0, "step": 1.0}),
    ("int(range(0.5, 3.5))", {"type": "int", "low": 0, "high": 3}),
    ("sort(range(4, 1, -1))", {"type": "int", "low": 2, "high": 5}),
    # The sweeper ignores tags on a range or a choice.
    ("tag(log, range(1, 10))", {"type": "int", "low": 1, "high": 10}),
    ("tag(log, choice(1, 10, 100))", {"type": "categorical", "choices": [1, 10, 100]}),
    # A shuffled range is enumerated by Hydra: stop excluded.
    ("shuffle(range(1, 4))", {"type": "categorical", "choices": [1, 2, 3]}),
    ("shuffle(range(0, 1, 0.25))", {"type": "categorical", "choices": [0.0, 0.25, 0.5, 0.75]}),
    ("choice(a, b, c)", {"type": "categorical", "choices": ["a", "b", "c"]}),
    ("a,b,c", {"type": "categorical", "choices": ["a", "b", "c"]}),
    (" 1 , 2 ", {"type": "categorical", "choices": [1, 2]}),
    ("a,null", {"type": "categorical", "choices": ["a", "null"]}),
    ("choice(1, abc, true, 2.5)", {"type": "categorical", "choices": [1, "abc", True, 2.5]}),
    ("choice('a b', \"c,d\", x y)", {"type": "categorical", "choices": ["a b", "c,d", "x y"]}),
    (
        "choice(a.b, a/b, a:b, a@b)",
        {"type": "categorical", "choices": ["a.b", "a/b", "a:b", "a@b"]},
    ),
    ("choice([1,2],[3,4])", {"type": "categorical", "choices": ["[1,2]", "[3,4]"]}),
    ("choice({a: 1}, {a: 2})", {"type": "categorical", "choices": ["{a:1}", "{a:2}"]}),
    ("shuffle(choice(1, 2, 3))", {"type": "categorical", "choices": [1, 2, 3]}),
    ("sort(choice(3, 1, 2))", {"type": "categorical", "choices": [1, 2, 3]}),
    ("sort(choice(3, 1, 2), reverse=true)", {"type": "categorical", "choices": [3, 2, 1]}),
    ("sort(3,1,2)", {"type": "categorical", "choices": [1, 2, 3]}),
    ("str(choice(1, 2))", {"type": "categorical", "choices": ["1", "2"]}),
    ("int(choice(1.5, 2.7))", {"type": "categorical", "choices": [1, 2]}),
    ("float(choice(1, 2))", {"type": "categorical", "choices": [1.0, 2.0]}),
    ("bool(choice(0, 1))", {"type": "categorical", "choices": [False, True]}),
    ("choice(str(1), 2)", {"type": "categorical", "choices": ["1", 2]}),
    ("0.1", "0.1"),
    ("1e-3", "0.001"),
    ("abc", "abc"),
    ("true", "True"),
    ("null", "null"),
    ("[1, 2]", "[1,2]"),
    ("{a: 1}", "{a:1}"),
    ("'quoted'", "'quoted'"),
    ("int(1.5)", "1"),
    # YAML values, written into an override by the sweeper as f"{key}={value}".
    (0.001, "0.001"),
    (True, "True"),
    (None, "None"),
    ([1, 2], "[1,2]"),
]


@pytest.mark.parametrize(
    ("value", "expected"), HYDRA_GRAMMAR, ids=[repr(v) for v, _ in HYDRA_GRAMMAR]
)
def test_hydra_params_become_what_the_optuna_sweeper_searches(value: Any, expected: Any) -> None:
    result = convert("hydra", {"params": {"p": value, "q": "choice(1, 2)"}}, program="t.py")
    spec = result.study["spec"]
    if isinstance(expected, dict):
        assert spec["searchSpace"]["p"] == expected
        assert "p={p}" in spec["trial"]["command"]
    else:
        assert "p" not in spec["searchSpace"]
        assert f"p={expected}" in spec["trial"]["command"]
    load_study(result.study)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("glob(*.csv)", "glob() selects options of a config group"),
        ("choice(null, 1)", "cannot hold null"),
        ("range(4, 1, -1)", "low 4 is greater than high 1"),
        ("range(1, 4, 0)", "step 0 must be > 0"),
        ("interval(5, 1)", "low 5 is greater than high 1"),
        ("tag(log, interval(0, 1))", "a log float needs low > 0"),
        ("shuffle(interval(1, 3))", "takes a choice or a range, not an interval"),
        ("sort(interval(1, 2))", "takes a choice or a range, not an interval"),
        ("str(range(1, 3))", "a range can only be cast to int or float"),
        ("choice(interval(1, 2), 3)", "a sweep inside a sweep"),
        ("choice()", "needs at least one value"),
        ("shuffle(range(1, 4), seed=3)", "seed"),
        ("extend_list(1)", "not a function of Hydra's override grammar"),
        ("choice(1, inf)", "not a finite number"),
        ("interval(1, 2", "cannot parse"),
    ],
)
def test_hydra_value_the_sweeper_refuses_is_refused_naming_the_parameter(
    value: str, reason: str
) -> None:
    """hydra-core or the sweeper raises on each of these (recorded); the parameter is
    never silently left out of the search."""
    with pytest.raises(ConversionError) as error:
        convert("hydra", {"params": {"model.lr": value, "q": "choice(1, 2)"}})
    assert str(error.value).startswith("hydra.sweeper.params.model.lr: ")
    assert reason in str(error.value)


GRID_SWEEPER: dict[str, Any] = {
    "hydra": {
        "sweeper": {
            "sampler": {"_target_": "optuna.samplers.GridSampler", "_partial_": True},
            "n_trials": 50,
            "params": {
                "layers": "range(1, 4)",
                "units": "range(16, 64, step=16)",
                "width": "int(interval(2, 5))",
                "dropout": "range(0.1, 0.4, 0.1)",
                "act": "relu,tanh",
                "lr": 0.001,
            },
        }
    }
}


def test_hydra_grid_sampler_gets_the_sweepers_grid() -> None:
    """OptunaSweeperImpl._to_grid_sampler_choices (recorded): a range's or int interval's
    stop is not a grid point, a float range steps from low by float sums."""
    result = convert("hydra", GRID_SWEEPER, program="t.py")
    spec = result.study["spec"]
    assert spec["sampler"] == {"name": "grid"}
    assert spec["searchSpace"] == {
        "layers": {"type": "int", "low": 1, "high": 3},
        "units": {"type": "int", "low": 16, "high": 48, "step": 16},
        "width": {"type": "int", "low": 2, "high": 4},
        "dropout": {"type": "categorical", "choices": [0.1, 0.2, 0.30000000000000004]},
        "act": {"type": "categorical", "choices": ["relu", "tanh"]},
    }
    assert spec["budget"]["maxTrials"] == 50  # under the grid's 162 points
    assert spec["pruner"] == {"name": "none"}
    small = convert(
        "hydra",
        {"params": {"n": "range(1, 4)"}, "sampler": {"_target_": "optuna.samplers.GridSampler"}},
    )
    # The sweeper caps n_trials (default 20) at the grid's size.
    assert small.study["spec"]["budget"]["maxTrials"] == 3
    assert warned(small.warnings, "n_trials", "capped", "3")
    with pytest.raises(ConversionError, match=r"params\.lr: the grid sampler needs a choice"):
        convert(
            "hydra",
            {
                "params": {"lr": "interval(0, 1)"},
                "sampler": {"_target_": "optuna.samplers.GridSampler"},
            },
        )


ORACLE = """
import json, sys
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from optuna import distributions as d
out = []
for value in json.load(sys.stdin):
    space, fixed = create_params_from_overrides([f"p={value}"])
    if "p" in fixed:
        out.append(fixed["p"])
        continue
    dist = space["p"]
    if isinstance(dist, d.CategoricalDistribution):
        out.append({"type": "categorical", "choices": sorted(dist.choices, key=repr)})
        continue
    entry = {"type": "int" if "Int" in type(dist).__name__ else "float", "low": dist.low,
             "high": dist.high}
    if "Log" in type(dist).__name__:
        entry["log"] = True
    step = getattr(dist, "q", getattr(dist, "step", None))
    if step not in (None, 1) or isinstance(dist, d.DiscreteUniformDistribution):
        entry["step"] = step
    out.append(entry)
print(json.dumps(out))
"""


def test_hydra_grammar_table_matches_the_installed_sweeper() -> None:
    """An extra check of HYDRA_GRAMMAR against hydra-optuna-sweeper itself, run by the
    Python in $HYDRA_PYTHON (e.g. a venv with hydra-core and hydra-optuna-sweeper; they
    pin optuna < 3, so they cannot live in kubetune's environment)."""
    python = os.environ.get("HYDRA_PYTHON")
    if not python:
        pytest.skip("set HYDRA_PYTHON to a Python with hydra-optuna-sweeper to cross-check")
    strings = [v for v, _ in HYDRA_GRAMMAR if isinstance(v, str)]
    done = subprocess.run(
        [python, "-c", ORACLE], input=json.dumps(strings), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    expected = dict(zip(strings, json.loads(done.stdout), strict=True))
    for value, ours in HYDRA_GRAMMAR:
        if not isinstance(value, str):
            continue
        if isinstance(ours, dict) and ours["type"] == "categorical":
            ours = {"type": "categorical", "choices": sorted(ours["choices"], key=repr)}
        assert expected[value] == ours, value


# --------------------------------------------------------------------- CLI


def test_convert_command_prints_yaml_and_warnings(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["convert", "katib", str(EXAMPLES / "katib" / "median-stop.yaml")])
    assert result.exit_code == 0, result.output
    study = yaml.safe_load(result.stdout)
    assert study["kind"] == "Study"
    assert study["spec"]["pruner"]["name"] == "median"
    assert "warning: spec.trialTemplate.retain" in result.stderr
    assert "warning" not in result.stdout

    strict = runner.invoke(
        app,
        [
            "convert",
            "wandb",
            str(EXAMPLES / "wandb" / "bayes-hyperband.yaml"),
            "--strict",
            "-o",
            "json",
        ],
    )
    assert strict.exit_code == 2
    assert json.loads(strict.stdout)["spec"]["sampler"] == {"name": "gp"}

    broken = tmp_path / "not-a-sweep.yaml"
    broken.write_text("method: random\n")
    refused = runner.invoke(app, ["convert", "wandb", str(broken)])
    assert refused.exit_code == 2
    assert "no parameters" in refused.stderr
    missing = runner.invoke(app, ["convert", "hydra", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2

    # What convert prints is a Study that validate accepts.
    converted = tmp_path / "study.yaml"
    converted.write_text(result.stdout)
    assert runner.invoke(app, ["validate", str(converted)]).exit_code == 0


# ------------------------------------------------------------- end to end

RECORDER = """
import json, sys
from pathlib import Path

args = dict(arg.lstrip("-").split("=", 1) for arg in sys.argv[1:])
with open(Path(__file__).parent / "points.jsonl", "a", encoding="utf-8") as points:
    points.write(json.dumps(args) + "\\n")
for step in range(3):
    print(f"accuracy={int(args['layers']) / 10 + step / 100} step={step}", flush=True)
"""


def convert_and_run(
    env: dict[str, str], storage_url: str, cwd: Path, *convert_args: str
) -> subprocess.CompletedProcess[str]:
    """``kubetune convert ... > study.yaml && kubetune run study.yaml`` as subprocesses."""
    env = dict(env)
    env.pop("KUBETUNE_STORAGE_URL")  # the CLI takes --storage, as a user would pass it
    env["COLUMNS"] = "160"
    converted = kubetune(env, cwd, "convert", *convert_args)
    assert converted.returncode == 0, converted.stderr
    (cwd / "study.yaml").write_text(converted.stdout, encoding="utf-8")
    ran = kubetune(env, cwd, "run", "study.yaml", "--storage", storage_url)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran


def recorded_points(cwd: Path) -> list[dict[str, str]]:
    lines = (cwd / "points.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.timeout(240)
def test_converted_wandb_grid_runs_every_point_once(
    worker_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """convert, then run, as a user types them: the trials are W&B's grid, each point
    once (q_uniform's max is not a point in W&B's grid), and none is pruned."""
    (tmp_path / "record.py").write_text(RECORDER, encoding="utf-8")
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        yaml.safe_dump(
            {
                "program": "record.py",
                "method": "grid",
                "metric": {"name": "accuracy", "goal": "maximize"},
                "parameters": {
                    "layers": {"distribution": "int_uniform", "min": 1, "max": 3},
                    "dropout": {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.25},
                    "act": {"value": "relu"},
                },
            }
        ),
        encoding="utf-8",
    )
    ran = convert_and_run(worker_env, storage_url, tmp_path, "wandb", "sweep.yaml")
    points = [(p["layers"], p["dropout"], p["act"]) for p in recorded_points(tmp_path)]
    assert sorted(points) == [
        (layers, dropout, "relu") for layers in ("1", "2", "3") for dropout in ("0.0", "0.25")
    ]
    # All six complete: none pruned (no early_terminate), none failed.
    assert "6 complete" in ran.stdout, ran.stdout


@pytest.mark.timeout(240)
def test_converted_hydra_grid_runs_the_sweepers_grid(
    worker_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """The Optuna sweeper's grid sampler over range(1, 4) runs 1, 2 and 3 (its grid
    leaves out the stop), with the fixed value passed to every trial; n_trials 20 is
    capped at the grid's 6 points, as the sweeper caps it."""
    (tmp_path / "record.py").write_text(
        RECORDER.replace("accuracy=", "objective="), encoding="utf-8"
    )
    config = {
        "defaults": [{"override hydra/sweeper": "optuna"}],
        "hydra": {
            "sweeper": {
                "sampler": {"_target_": "optuna.samplers.GridSampler"},
                "direction": "maximize",
                "n_trials": 20,
                "params": {"layers": "range(1, 4)", "act": "relu,tanh", "lr": 0.001},
            }
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    ran = convert_and_run(
        worker_env, storage_url, tmp_path, "hydra", "config.yaml", "--program", "record.py"
    )
    points = [(p["layers"], p["act"], p["lr"]) for p in recorded_points(tmp_path)]
    assert sorted(points) == [
        (layers, act, "0.001") for layers in ("1", "2", "3") for act in ("relu", "tanh")
    ]
    assert "6 complete" in ran.stdout, ran.stdout
