"""Study files that are wrong: ``kubetune validate`` and ``kubetune run`` refuse
them with exit code 2 and a message naming the field, before touching any storage.

The messages themselves are unit-tested in ``tests/unit/test_spec.py``; here is
what a user sees on the command line, for cases the unit tests leave out.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
from badinput_helpers import kubetune, write_study
from kubetune.cli import app
from typer.testing import CliRunner

pytestmark = pytest.mark.timeout(60)

EXIT_BAD_INPUT = 2
#: Nothing listens there; a run that got as far as the storage would say so.
UNREACHABLE = "postgresql://tuner:hunter2-never-shown@127.0.0.1:1/optuna"

GOOD: dict[str, Any] = {
    "objective": {"direction": "minimize"},
    "searchSpace": {"x": {"type": "float", "low": -10, "high": 10}},
    "budget": {"maxTrials": 2},
    "trial": {"python": "kt_bad_objectives:quadratic"},
}


def validate(path: Path) -> tuple[int, str]:
    """``kubetune validate PATH`` in this process (it is fast, and its output is the
    same as a subprocess's): the exit code and standard error, unwrapped."""
    result = CliRunner().invoke(app, ["validate", str(path)])
    return result.exit_code, " ".join(result.stderr.split())


def changed(path: str, value: Any) -> tuple[dict[str, Any], str]:
    """GOOD with the dotted ``path`` (under spec) set to ``value``; also the name."""
    spec = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return spec, "bad"


CASES: list[tuple[str, Any, str]] = [
    # wrong types
    ("budget.maxTrials", "ten", "spec.budget.maxTrials: must be a valid integer"),
    ("budget.parallelism", [4], "spec.budget.parallelism: must be a valid integer"),
    (
        "searchSpace.n",
        {"type": "int", "low": 1.5, "high": 3},
        "spec.searchSpace.n.low: must be a valid integer",
    ),
    ("trial.retries", "twice", "spec.trial.retries: must be a valid integer"),
    ("trial.trialsPerPod", 0.5, "spec.trial.trialsPerPod: must be a valid integer"),
    ("suspend", "maybe", "spec.suspend: must be a valid boolean"),
    ("trial.command", "python train.py", "spec.trial.command: must be a valid list"),
    # wrong ranges
    ("budget.parallelism", 5000, "spec.budget.parallelism: must be less than or equal to 1000"),
    ("trial.retries", 11, "spec.trial.retries: must be less than or equal to 10"),
    ("budget.maxFailedTrials", -1, "spec.budget.maxFailedTrials: must be greater than or equal"),
    ("budget.timeout", "0s", "spec.budget.timeout: must be longer than zero"),
    (
        "searchSpace.x",
        {"type": "float", "low": float("nan"), "high": 1},
        "spec.searchSpace.x.low: must be a finite number",
    ),
    (
        "searchSpace.x",
        {"type": "float", "low": 0, "high": float("inf")},
        "spec.searchSpace.x.high: must be a finite number",
    ),
    (
        "searchSpace.c",
        {"type": "categorical", "choices": ["a", float("nan")]},
        "spec.searchSpace.c.choices: choice nan is not a finite number",
    ),
    ("objective.goal", float("inf"), "spec.objective.goal: must be a finite number"),
    # unknown sampler and pruner names and arguments
    ("sampler.name", "hyperopt", "spec.sampler.name: must be one of 'tpe', 'random'"),
    ("pruner.name", "asha", "spec.pruner.name: must be one of 'none', 'median'"),
    ("sampler.args", {"n_startup": 5}, "spec.sampler.args.n_startup: TPESampler has no argument"),
    ("pruner", {"name": "median", "args": {"n_warmup_steps": -5}}, "spec.pruner.args: "),
    # names too long for Kubernetes
    (
        "searchSpace." + "p" * 129,
        {"type": "float", "low": 0, "high": 1},
        "spec.searchSpace: parameter name 'ppp",
    ),
    ("storage.studyName", "s" * 513, "spec.storage.studyName: String should have at most 512"),
    # huge categorical lists
    (
        "searchSpace.c",
        {"type": "categorical", "choices": [f"choice-{i}" for i in range(1001)]},
        "spec.searchSpace.c.choices: has 1001 choices; at most 1000 are allowed",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"), CASES, ids=[f"{c[0][:30]}={str(c[1])[:20]}" for c in CASES]
)
def test_validate_names_the_field(tmp_path: Path, path: str, value: Any, expected: str) -> None:
    spec, name = changed(path, value)
    code, stderr = validate(write_study(tmp_path, spec, name))
    assert code == EXIT_BAD_INPUT, stderr
    assert expected in stderr, stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a" * 64, "metadata.name: must be at most 63 characters (got 64)"),
        # Kubernetes allows 253 characters in a custom resource's name; trial pods' labels
        # and names allow 63.
        ("b" * 253, "metadata.name: must be at most 63 characters (got 253)"),
        ("Tune_Me", "metadata.name: 'Tune_Me' must be lowercase letters"),
    ],
)
def test_run_refuses_a_bad_name_before_touching_the_storage(
    cli_env: dict[str, str], tmp_path: Path, name: str, expected: str
) -> None:
    study_file = write_study(tmp_path, GOOD, name)
    started = time.monotonic()
    result = kubetune(cli_env, tmp_path, "run", str(study_file), "--storage", UNREACHABLE)
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    assert expected in result.stderr, result.stderr
    assert time.monotonic() - started < 15, "it tried the storage first"
    assert "hunter2" not in result.stdout + result.stderr


def test_run_refuses_wrong_types_before_touching_the_storage(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    spec, _ = changed("budget.maxTrials", "lots")
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", UNREACHABLE
    )
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    assert "spec.budget.maxTrials: must be a valid integer" in result.stderr
    assert "cannot reach the storage" not in result.stdout + result.stderr


def test_a_password_in_storage_url_is_refused_and_not_repeated(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    spec, _ = changed("storage", {"url": "postgresql://tuner:hunter2-in-a-file@db:5432/optuna"})
    for command in ("validate", "run"):
        result = kubetune(cli_env, tmp_path, command, str(write_study(tmp_path, spec)))
        assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
        assert "spec.storage.url: must not contain a password" in result.stderr
        assert "hunter2" not in result.stdout + result.stderr


def test_the_largest_categorical_list_allowed_runs(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    choices = [f"a-rather-long-choice-name-{i:04d}" for i in range(1000)]
    spec, _ = changed("searchSpace.c", {"type": "categorical", "choices": choices})
    spec["budget"] = {"maxTrials": 3}
    study_file = write_study(tmp_path, spec)
    code, stderr = validate(study_file)
    assert code == 0, stderr
    result = kubetune(cli_env, tmp_path, "run", str(study_file), "--storage", storage_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 complete" in result.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: Study\nspec: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("", "study.yaml: is empty"),
        ("# only a comment\n", "study.yaml: is empty"),
        (
            "program: train.py\nmethod: bayes\nparameters:\n  lr: {min: 0.001, max: 0.1}\n",
            "this is a W&B sweep, not a Study: convert it with `kubetune convert wandb FILE",
        ),
        (
            "defaults:\n  - override hydra/sweeper: optuna\nhydra:\n  sweeper: {params: {}}\n",
            "this is a Hydra config, not a Study: convert it with `kubetune convert hydra FILE",
        ),
        (
            "apiVersion: kubeflow.org/v1beta1\nkind: Experiment\nmetadata: {name: x}\n",
            "this is a Katib Experiment, not a Study: convert it with `kubetune convert katib",
        ),
    ],
    ids=[
        "broken-yaml",
        "a-list",
        "empty",
        "comment-only",
        "wandb-sweep",
        "hydra-config",
        "katib-experiment",
    ],
)
def test_files_that_are_not_a_study(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(text, encoding="utf-8")
    code, stderr = validate(path)
    assert code == EXIT_BAD_INPUT, stderr
    assert expected in stderr
    assert "Traceback" not in stderr


def test_a_missing_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = kubetune(cli_env, tmp_path, "run", str(tmp_path / "nowhere.yaml"))
    assert result.returncode == EXIT_BAD_INPUT
    assert "nowhere.yaml: no such file" in result.stderr


def test_sampler_argument_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    spec, _ = changed("sampler", {"name": "tpe", "args": {"n_startup_trials": "ten"}})
    code, stderr = validate(write_study(tmp_path, spec))
    assert code == EXIT_BAD_INPUT, stderr
    assert "spec.sampler.args.n_startup_trials" in stderr


# ---------------------------------------------------------------- built-ins

#: A built-in Study that runs; each case below breaks one rule a worker would only
#: have found at start, after the pods (or local workers) were up.
BUILTIN: dict[str, Any] = {
    "objective": {"direction": "maximize", "metric": "auc"},
    "budget": {"maxTrials": 2},
    "trial": {"builtin": {"model": "lightgbm", "data": {"dataset": "sklearn:breast_cancer"}}},
}

BUILTIN_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "auc-minimized",
        {"objective": {"direction": "minimize", "metric": "auc"}},
        "spec.objective.direction: must be maximize for metric auc (higher is better); "
        "it is minimize",
    ),
    (
        "direction-unset",
        {"objective": {"metric": "accuracy"}},
        "spec.objective.direction: must be maximize for metric accuracy (higher is better); "
        "it is unset, which means minimize",
    ),
    (
        "unknown-metric",
        {"objective": {"direction": "maximize", "metric": "precision"}},
        "spec.objective.metric: 'precision' is not a built-in metric (choose from auc, logloss",
    ),
    (
        "metric-of-another-task",
        {"objective": {"direction": "minimize", "metric": "rmse"}},
        "spec.objective.metric: rmse is a regression metric, but spec.trial.builtin.task is "
        "classification",
    ),
    (
        "goal-never-reached",
        {"objective": {"direction": "maximize", "metric": "auc", "goal": 1.5}},
        "spec.objective.goal: auc is at most 1; 1.5 is never reached",
    ),
    (
        "grid-over-the-default-space",
        {
            "sampler": {"name": "grid"},
            "searchSpace": {"num_leaves": {"type": "int", "low": 4, "high": 64, "step": 30}},
        },
        "spec.sampler.name: the grid sampler searches only spec.searchSpace, and the lightgbm "
        "default space adds learning_rate, min_child_samples",
    ),
    (
        "bruteforce-over-continuous-floats",
        {"sampler": {"name": "bruteforce"}},
        "spec.sampler.name: bruteforce needs a step on every float, and learning_rate, "
        "feature_fraction",
    ),
    (
        "stepwise-with-a-search-space",
        {
            "objective": {"direction": "minimize", "metric": "logloss"},
            "searchSpace": {"num_leaves": {"type": "int", "low": 4, "high": 64}},
            "builtin": {"tuner": "stepwise"},
        },
        "spec.searchSpace: must be empty with tuner: stepwise",
    ),
    (
        "stepwise-in-parallel",
        {
            "objective": {"direction": "minimize", "metric": "logloss"},
            "budget": {"maxTrials": 2, "parallelism": 2},
            "builtin": {"tuner": "stepwise"},
        },
        "spec.budget.parallelism: must be 1 with tuner: stepwise",
    ),
    (
        "stepwise-f1",
        {"objective": {"direction": "maximize", "metric": "f1"}, "builtin": {"tuner": "stepwise"}},
        "spec.objective.metric: 'f1' is not available with tuner: stepwise",
    ),
    (
        "fixed-and-tuned",
        {
            "searchSpace": {"num_leaves": {"type": "int", "low": 4, "high": 64}},
            "builtin": {"params": {"num_leaves": 31}},
        },
        "spec.trial.builtin.params.num_leaves: is also in spec.searchSpace",
    ),
    (
        "float-for-an-int",
        {"searchSpace": {"num_leaves": {"type": "float", "low": 4, "high": 64}}},
        "spec.searchSpace.num_leaves: lightgbm takes an integer for num_leaves",
    ),
    (
        "mlp-lacks-the-name",
        {
            "searchSpace": {"momentum": {"type": "float", "low": 0.5, "high": 0.99}},
            "builtin": {"model": "lightning"},
        },
        "spec.searchSpace.momentum: the lightning MLP has no hyperparameter 'momentum'",
    ),
    (
        "unknown-dataset",
        {"builtin": {"data": {"dataset": "sklearn:titanic"}}},
        "spec.trial.builtin.data.dataset: 'sklearn:titanic' is not a packaged dataset",
    ),
    (
        "packaged-dataset-target",
        {"builtin": {"data": {"dataset": "sklearn:wine", "target": "quality"}}},
        "spec.trial.builtin.data.target: a packaged dataset's target is 'target', not 'quality'",
    ),
    (
        "not-a-table-file",
        {"builtin": {"data": {"path": "/data/train.xlsx", "target": "y"}}},
        "spec.trial.builtin.data.path: '/data/train.xlsx' is neither .csv nor .parquet",
    ),
    (
        "artifact-store-in-s3",
        {"builtin": {"saveModel": {"artifactStore": "s3://bucket/models"}}},
        "spec.trial.builtin.saveModel.artifactStore: only a directory",
    ),
]


def _builtin_study(changes: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(BUILTIN)
    for key, value in changes.items():
        if key == "builtin":
            spec["trial"]["builtin"].update(value)
        else:
            spec[key] = value
    return spec


@pytest.mark.parametrize(
    ("changes", "expected"), [c[1:] for c in BUILTIN_CASES], ids=[c[0] for c in BUILTIN_CASES]
)
def test_validate_applies_the_builtin_rules(
    cli_env: dict[str, str], tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    study_file = write_study(tmp_path, _builtin_study(changes))
    result = kubetune(cli_env, tmp_path, "validate", str(study_file))
    stderr = " ".join(result.stderr.split())
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    assert expected in stderr, stderr
    assert "Traceback" not in stderr


def test_run_refuses_a_broken_builtin_before_touching_the_storage(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    spec = _builtin_study({"objective": {"direction": "minimize", "metric": "auc"}})
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", UNREACHABLE
    )
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    assert "spec.objective.direction: must be maximize for metric auc" in result.stderr
    assert "cannot reach the storage" not in result.stdout + result.stderr


def _with_file(path: str, **data: Any) -> dict[str, Any]:
    return _builtin_study({"builtin": {"data": {"path": path, "target": "label", **data}}})


def test_validate_checks_the_columns_of_a_data_file_on_this_machine(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "homes.csv").write_text("city,area,price\nOslo,40,1\n", encoding="utf-8")
    result = kubetune(
        cli_env, tmp_path, "validate", str(write_study(tmp_path, _with_file("homes.csv")))
    )
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    assert (
        "spec.trial.builtin.data.target: 'label' is not a column of homes.csv "
        "(it has: ['city', 'area', 'price'])"
    ) in " ".join(result.stderr.split())

    spec = _with_file("homes.csv", target="price", features=["city", "rooms"])
    result = kubetune(cli_env, tmp_path, "validate", str(write_study(tmp_path, spec)))
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    assert "spec.trial.builtin.data.features: homes.csv has no column 'rooms'" in result.stderr

    (tmp_path / "folder.csv").mkdir()
    result = kubetune(
        cli_env, tmp_path, "validate", str(write_study(tmp_path, _with_file("folder.csv")))
    )
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    assert "spec.trial.builtin.data.path: cannot read folder.csv" in result.stderr

    spec = _with_file("homes.csv", target="price")
    result = kubetune(cli_env, tmp_path, "validate", str(write_study(tmp_path, spec)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_accepts_a_data_file_that_only_the_cluster_has(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    spec = _with_file("/data/homes.csv")
    result = kubetune(cli_env, tmp_path, "validate", str(write_study(tmp_path, spec)))
    assert result.returncode == 0, result.stdout + result.stderr
    output = " ".join(result.stdout.split())
    assert "/data/homes.csv is not on this machine, so its columns were not checked" in output
    assert "valid Study" in output
