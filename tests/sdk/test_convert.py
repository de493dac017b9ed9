"""Converters on W&B sweep, Katib Experiment and Hydra sweeper files (tests/sdk/examples)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetune.cli import app
from kubetune.convert import ConversionError, convert
from kubetune.spec import load_study
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
    assert spec["searchSpace"]["layers"] == {"type": "int", "low": 1, "high": 3}
    assert spec["searchSpace"]["dropout"] == {
        "type": "float",
        "low": 0.0,
        "high": 0.5,
        "step": 0.25,
    }
    assert spec["searchSpace"]["epochs"] == {"type": "categorical", "choices": [10]}
    # W&B runs a grid once through: 3 batch sizes x 3 layer counts x 3 dropouts x 1.
    assert spec["budget"]["maxTrials"] == 27
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
    assert space["width"] == {
        "type": "int",
        "low": 1,
        "high": math.floor(math.exp(6.93)),
        "log": True,
    }
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
    assert "bogus" not in space
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
        ("bogus", "zipf", "ignored"),
        ("optimizer", "dotted names"),
        ("strict",),
        ("${args_json}", "KUBETUNE_PARAMS"),
    ]
    for fragments in expected:
        assert warned(result.warnings, *fragments), (fragments, result.warnings)


def test_wandb_grid_with_continuous_parameter_falls_back_to_random() -> None:
    sweep = {
        "program": "t.py",
        "method": "grid",
        "metric": {"name": "m"},
        "parameters": {"lr": {"min": 0.1, "max": 0.2}, "n": {"values": [1, 2]}},
    }
    result = convert("wandb", sweep)
    assert result.study["spec"]["sampler"] == {"name": "random"}
    assert warned(result.warnings, "grid", "lr")


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
    assert spec["storage"] == {"studyName": "sphere"}
    assert spec["trial"]["command"] == ["python", "sphere.py", "x={x}", "y={y}"]
    assert warned(result.warnings, "objective=<value>")
    assert not warned(result.warnings, "--program")


def test_hydra_multi_objective_and_grammar() -> None:
    result = convert("hydra", EXAMPLES / "hydra" / "multi-objective.yaml", metric="loss")
    spec = result.study["spec"]
    space = spec["searchSpace"]
    assert spec["objective"] == {
        "directions": ["minimize", "minimize"],
        "metrics": ["loss_0", "loss_1"],
    }
    assert spec["sampler"] == {"name": "nsgaii", "seed": 123, "args": {"population_size": 20}}
    assert spec["budget"] == {"maxTrials": 40, "parallelism": 2, "maxFailedTrials": 4}
    assert space["x"] == {"type": "int", "low": 0, "high": 5}
    assert space["model.lr"] == {"type": "float", "low": 1e-5, "high": 0.1, "log": True}
    assert space["model.depth"] == {"type": "int", "low": 1, "high": 64, "log": True}
    assert space["model.act"] == {"type": "categorical", "choices": ["relu", "gelu", "silu"]}
    assert space["trainer.epochs"] == {"type": "categorical", "choices": [1, 2, 3, 4]}
    assert "data.path" not in space
    assert spec["trial"]["command"][-1] == "seed=7"
    assert spec["trial"]["command"][:2] == ["python", "main.py"]
    for fragments in [
        ("data.path", "glob"),
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
    assert spec["searchSpace"]["lr"] == {"type": "float", "low": 0.0001, "high": 0.1, "log": True}
    assert spec["searchSpace"]["units"] == {"type": "int", "low": 32, "high": 256, "step": 32}
    assert spec["searchSpace"]["dropout"] == {"type": "float", "low": 0.0, "high": 0.5}


def test_hydra_needs_a_sweeper() -> None:
    with pytest.raises(ConversionError, match=r"hydra\.sweeper"):
        convert("hydra", {"model": {"lr": 0.1}})


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
