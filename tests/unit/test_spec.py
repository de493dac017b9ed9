"""The Study spec: what validates, and what users are told when it does not."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubetune.study.spec import SpecError, Study, load_study, parse_duration, validate_spec

REPO = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "Study",
    "metadata": {"name": "demo"},
    "spec": {
        "objective": {"direction": "maximize", "metric": "auc", "goal": 0.99},
        "searchSpace": {
            "lr": {"type": "float", "low": 0.001, "high": 0.3, "log": True},
            "leaves": {"type": "int", "low": 8, "high": 256},
            "boosting": {"type": "categorical", "choices": ["gbdt", "dart"]},
        },
        "sampler": {"name": "tpe", "seed": 0, "args": {"multivariate": True}},
        "pruner": {"name": "median", "args": {"n_warmup_steps": 5}},
        "budget": {"maxTrials": 50, "parallelism": 4, "maxFailedTrials": 5, "timeout": "2h"},
        "trial": {
            "python": "examples.objectives.lgbm:objective",
            "resources": {"limits": {"nvidia.com/gpu": 1}},
            "trialsPerPod": 2,
            "retries": 2,
        },
        "storage": {"secretRef": {"name": "pg", "key": "url"}},
    },
}


def with_changes(path: str, value: Any) -> dict[str, Any]:
    """BASE with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    document = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return document


def problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_study(document)
    return [f"{path}: {reason}" for path, reason in caught.value.problems]


def test_full_document_loads_with_camel_case_fields() -> None:
    study = load_study(BASE)
    assert study.spec.budget.max_trials == 50
    assert study.spec.budget.timeout_seconds == 7200
    assert study.spec.trial.trials_per_pod == 2
    assert study.spec.trial.kind == "python"
    assert study.spec.storage.secret_ref is not None
    assert study.spec.search_space["lr"].log is True
    assert study.spec.objective.reached_goal(0.995)
    assert not study.spec.objective.reached_goal(0.98)


def test_round_trip_through_wire_form() -> None:
    study = load_study(BASE)
    again = Study.model_validate(study.to_dict())
    assert again == study
    assert "maxTrials" in study.to_dict()["spec"]["budget"]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "examples").glob("*.yaml")))
def test_every_example_study_is_valid(name: str) -> None:
    text = (REPO / "examples" / name).read_text()
    if "kind: Study" not in text:
        pytest.skip("not a Study")
    load_study(REPO / "examples" / name)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "spec.searchSpace.lr",
            {"type": "float", "low": 0, "high": 1, "log": True},
            "spec.searchSpace.lr.low: must be > 0 when log is true",
        ),
        (
            "spec.searchSpace.lr",
            {"type": "float", "low": 2, "high": 1},
            "spec.searchSpace.lr.high: must be >= low (2.0)",
        ),
        (
            "spec.searchSpace.leaves",
            {"type": "int", "low": 0, "high": 10, "log": True},
            "spec.searchSpace.leaves.low: must be >= 1 when log is true",
        ),
        (
            "spec.searchSpace.lr",
            {"type": "float", "low": 0.1, "high": 1, "log": True, "step": 0.1},
            "spec.searchSpace.lr.step: cannot be combined with log: true",
        ),
        (
            "spec.searchSpace.boosting",
            {"type": "categorical", "choices": []},
            "spec.searchSpace.boosting.choices: must list at least one choice",
        ),
        (
            "spec.searchSpace.boosting",
            {"type": "categorical", "choices": ["a", "a"]},
            "spec.searchSpace.boosting.choices: choice 'a' is listed twice",
        ),
        (
            "spec.searchSpace.x",
            {"type": "uniform", "low": 0, "high": 1},
            "spec.searchSpace.x: type must be one of: float, int, categorical",
        ),
        (
            "spec.searchSpace.x",
            {"low": 0, "high": 1},
            "spec.searchSpace.x: needs a type: float, int or categorical",
        ),
        (
            "spec.searchSpace.lr.low",
            "small",
            "spec.searchSpace.lr.low: must be a valid number, unable to parse string as a number",
        ),
        (
            "spec.sampler.name",
            "bayes",
            "spec.sampler.name: must be one of 'tpe', 'random', 'cmaes', 'gp', 'qmc', 'grid', "
            "'nsgaii' or 'bruteforce' (got 'bayes')",
        ),
        ("spec.pruner.name", "asha", "spec.pruner.name: must be one of"),
        ("spec.budget.maxTrials", 0, "spec.budget.maxTrials: must be greater than or equal to 1"),
        ("spec.budget.parallelism", "four", "spec.budget.parallelism: must be a valid integer"),
        ("spec.budget.timeout", "2 hours", "spec.budget.timeout: '2 hours' is not a duration"),
        ("spec.budget.maxTrails", 10, "spec.budget.maxTrails: unknown field"),
        ("spec.trial.pyhton", "a:b", "spec.trial.pyhton: unknown field"),
        (
            "spec.trial.python",
            "not an entry point",
            "spec.trial.python: 'not an entry point' is not",
        ),
        ("spec.trial.retries", -1, "spec.trial.retries: must be greater than or equal to 0"),
        ("spec.objective.direction", "up", "spec.objective.direction: must be one of"),
        ("spec.objective.directions", ["minimize"], "spec.objective.directions: give either"),
        (
            "spec.storage.url",
            "postgresql://u:pw@db/x",
            "spec.storage.url: must not contain a password",
        ),
        ("metadata.name", "Bad_Name", "metadata.name: 'Bad_Name' must be lowercase"),
        ("metadata.name", "a" * 64, "metadata.name: must be at most 63 characters (got 64)"),
        ("spec.trial", ..., "spec.trial: required"),
    ],
)
def test_bad_input_names_the_field_and_the_reason(path: str, value: Any, expected: str) -> None:
    found = problems(with_changes(path, value))
    assert any(line.startswith(expected) for line in found), found


def test_trial_needs_exactly_one_objective_kind() -> None:
    document = with_changes("spec.trial.command", ["train", "--lr", "{lr}"])
    assert problems(document) == [
        "spec.trial.python: give exactly one of python, command or builtin "
        "(python and command are given)"
    ]
    document = with_changes("spec.trial", {"image": "x"})
    assert problems(document)[0].startswith("spec.trial.python: give exactly one of")


def test_command_placeholders_must_name_parameters() -> None:
    document = with_changes("spec.trial", {"command": ["train", "--lr", "{lr}", "--x", "{x}"]})
    assert problems(document) == ["spec.trial.command[4]: {x} is not a parameter in searchSpace"]
    ok = with_changes("spec.trial", {"command": ["train", "--lr={lr}", "--n={trial_number}"]})
    assert load_study(ok).spec.trial.kind == "command"


def test_command_objective_needs_a_metric_name() -> None:
    document = with_changes("spec.trial", {"command": ["train"]})
    document["spec"]["objective"] = {"direction": "minimize"}
    assert problems(document) == [
        "spec.objective.metric: required for a command objective (the name it prints)"
    ]


def test_multi_objective_rules() -> None:
    document = with_changes("spec.objective", {"directions": ["minimize", "maximize"], "goal": 1})
    assert problems(document) == [
        "spec.objective.goal: only a single-objective study can have a goal"
    ]
    document = with_changes("spec.objective", {"directions": ["minimize", "maximize"]})
    assert problems(document) == [
        "spec.pruner.name: Optuna cannot prune multi-objective trials; use none or leave it out"
    ]
    del document["spec"]["pruner"]
    study = load_study(document)
    assert study.spec.effective_pruner.name == "none"
    document["spec"]["objective"]["metrics"] = ["loss"]
    assert problems(document)[0].startswith("spec.objective.metrics: has 1 names for 2 direction")


def test_grid_sampler_needs_finite_values() -> None:
    document = with_changes("spec.sampler", {"name": "grid"})
    assert problems(document) == [
        "spec.searchSpace.lr.step: the grid sampler needs a step for a float"
    ]


def test_huge_categorical_lists_are_refused() -> None:
    document = with_changes(
        "spec.searchSpace.boosting", {"type": "categorical", "choices": list(range(5000))}
    )
    assert problems(document) == [
        "spec.searchSpace.boosting.choices: has 5000 choices; at most 1000 are allowed"
    ]


def test_several_problems_are_all_reported() -> None:
    document = with_changes("spec.budget", {"maxTrials": 0, "parallelism": 0})
    found = problems(document)
    assert len(found) == 2
    assert found[0].startswith("spec.budget.maxTrials")
    assert found[1].startswith("spec.budget.parallelism")


def test_yaml_text_and_errors() -> None:
    with pytest.raises(SpecError, match="not valid YAML"):
        load_study("a: [b\nc: d")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_study("- a\n- b\n")


LOAD_SCRIPT = """
import sys
from pathlib import Path

import kubetune

for source in sys.argv[1:]:
    for given in (source, Path(source)):
        try:
            kubetune.load_study(given)
        except kubetune.SpecError as error:
            print(f"{type(given).__name__} {error}")
"""


def test_load_study_says_what_is_wrong_with_the_file(tmp_path: Path) -> None:
    """From a plain script, as a notebook calls it: the path and the reason, never
    'must be a mapping' for a file that is not there."""
    (tmp_path / "studies").mkdir()
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00kind")
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, "missing.yaml", "studies", "empty.yaml", "binary.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{kind} {line}"
        for line in (
            "missing.yaml: no such file",
            "studies: is a directory, not a Study file",
            "empty.yaml: is empty: a Study needs apiVersion, kind, metadata, spec",
            "binary.yaml: is not a text (UTF-8) file",
        )
        for kind in ("str", "PosixPath")
    ]


def test_validate_spec_prefixes_paths() -> None:
    with pytest.raises(SpecError) as caught:
        validate_spec({"trial": {"python": "a:b"}, "budget": {"maxTrials": -1}})
    assert caught.value.first_path == "spec.budget.maxTrials"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90), ("90", 90), ("90s", 90), ("30m", 1800), ("1h30m", 5400), ("1d", 86400)],
)
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_python_builders_take_snake_case() -> None:
    from kubetune.study.spec import Budget, FloatParam, ObjectMeta, StudySpec, TrialTemplate

    study = Study(
        metadata=ObjectMeta(name="built"),
        spec=StudySpec(
            search_space={"x": FloatParam(type="float", low=0, high=1)},
            budget=Budget(max_trials=5, parallelism=2),
            trial=TrialTemplate(python="examples.objectives.quadratic:objective"),
        ),
    )
    assert study.to_dict()["spec"]["budget"] == {"maxTrials": 5, "parallelism": 2}
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Budget(max_trials=0)


# ------------------------------------------------- one set of field names


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "spec.budget",
            {"max_trials": 5},
            "spec.budget.max_trials: unknown field; did you mean maxTrials?",
        ),
        (
            "spec.search_space",
            {},
            "spec.search_space: unknown field; did you mean searchSpace?",
        ),
        (
            "spec.trial.trials_per_pod",
            2,
            "spec.trial.trials_per_pod: unknown field; did you mean trialsPerPod?",
        ),
        (
            "spec.storage.secretRef",
            {"name": "pg", "kee": "url"},
            "spec.storage.secretRef.kee: unknown field; did you mean key?",
        ),
        (
            "spec.searchSpace.lr",
            {"type": "float", "low": 0.1, "hihg": 1},
            "spec.searchSpace.lr.hihg: unknown field; did you mean high?",
        ),
        (
            "spec.budget.maxTrails",
            10,
            "spec.budget.maxTrails: unknown field; did you mean maxTrials?",
        ),
    ],
)
def test_documents_take_only_the_crds_camel_case_names(
    path: str, value: Any, expected: str
) -> None:
    """A real API server prunes names its schema lacks; kubetune run refuses them the same."""
    assert problems(with_changes(path, value)) == [expected]


def test_every_entry_point_for_documents_refuses_snake_case() -> None:
    from kubetune.study.spec import Budget, StudySpec

    with pytest.raises(SpecError, match=r"spec.budget.max_trials: unknown field"):
        validate_spec({"trial": {"python": "a:b"}, "budget": {"max_trials": 3}})
    with pytest.raises(ValueError, match="max_trials"):
        Budget.model_validate({"max_trials": 3})  # as the trial runner re-reads a stored spec
    spec = StudySpec.model_validate({"trial": {"python": "a:b", "trialsPerPod": 2}})
    assert spec.trial.trials_per_pod == 2


def test_python_builders_take_either_name_and_emit_camel_case() -> None:
    from kubetune.study.spec import StudySpec

    snake = StudySpec(
        search_space={"x": {"type": "float", "low": 0, "high": 1}},
        trial={"python": "a:b", "trials_per_pod": 2, "image_pull_secrets": ["reg"]},
    )
    camel = StudySpec(
        searchSpace={"x": {"type": "float", "low": 0, "high": 1}},
        trial={"python": "a:b", "trialsPerPod": 2, "imagePullSecrets": ["reg"]},
    )
    assert snake == camel
    assert validate_spec(snake.to_dict()) == snake
    assert snake.to_dict()["trial"]["trialsPerPod"] == 2


# ----------------------------------------------------------- trial pods


def trial_with(**fields: Any) -> dict[str, Any]:
    return with_changes("spec.trial", {"python": "m:f", **fields})


def test_extended_resource_only_in_requests_is_placed_in_limits() -> None:
    study = load_study(trial_with(resources={"requests": {"nvidia.com/gpu": 1, "cpu": "2"}}))
    resources = study.spec.trial.resources
    assert resources.limits == {"nvidia.com/gpu": 1}
    assert resources.requests == {"nvidia.com/gpu": 1, "cpu": "2"}
    assert study.to_dict()["spec"]["trial"]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    # Equal in value though written differently: accepted.
    same = {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": 1}}
    assert load_study(trial_with(resources=same)).spec.trial.resources.limits == {
        "nvidia.com/gpu": 1
    }


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (
            {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 2}},
            "spec.trial.resources.requests.nvidia.com/gpu: must equal limits.nvidia.com/gpu "
            "(extended resources cannot be overcommitted)",
        ),
        (
            {"requests": {"example.com/fpga": "2"}, "limits": {"example.com/fpga": "1"}},
            "spec.trial.resources.requests.example.com/fpga: must equal limits.example.com/fpga "
            "(extended resources cannot be overcommitted)",
        ),
        (
            {"limits": {"memory": "4 GB"}},
            "spec.trial.resources.limits.memory: '4 GB' is not a Kubernetes quantity "
            "(such as 2, 500m or 4Gi)",
        ),
    ],
)
def test_resources_a_pod_could_not_have_are_refused(
    resources: dict[str, Any], expected: str
) -> None:
    assert problems(trial_with(resources=resources)) == [expected]


def test_native_resources_may_be_overcommitted() -> None:
    resources = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}}
    loaded = load_study(trial_with(resources=resources)).spec.trial.resources
    assert loaded.limits == {"cpu": 2}


def test_pod_settings_per_study() -> None:
    trial = load_study(
        trial_with(
            imagePullSecrets=["regcred", {"name": "other"}],
            shmSize="2Gi",
            activeDeadlineSeconds="1h30m",
            podSecurityContext={"runAsUser": 1234},
            securityContext={"readOnlyRootFilesystem": True},
        )
    ).spec.trial
    assert [ref.name for ref in trial.image_pull_secrets] == ["regcred", "other"]
    assert trial.deadline_seconds == 5400
    assert trial.pod_security()["runAsUser"] == 1234
    assert trial.pod_security()["runAsNonRoot"] is True
    assert trial.container_security() == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert load_study(trial_with(activeDeadlineSeconds=600)).spec.trial.deadline_seconds == 600


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"shmSize": "lots"}, "spec.trial.shmSize: 'lots' is not a Kubernetes quantity"),
        ({"shmSize": 0}, "spec.trial.shmSize: must be larger than zero"),
        ({"activeDeadlineSeconds": "2 hours"}, "spec.trial.activeDeadlineSeconds: '2 hours'"),
        ({"activeDeadlineSeconds": 0}, "spec.trial.activeDeadlineSeconds: must be a positive"),
        ({"imagePullSecrets": [""]}, "spec.trial.imagePullSecrets[0].name: String should"),
        (
            {"podSecurityContext": {"runAsUser": 0}},
            "spec.trial.podSecurityContext.runAsUser: 0 is root; set runAsNonRoot: false",
        ),
        (
            {"securityContext": {"runAsUser": 0}},
            "spec.trial.securityContext.runAsUser: 0 is root; set runAsNonRoot: false",
        ),
    ],
)
def test_bad_pod_settings_name_the_field(fields: dict[str, Any], expected: str) -> None:
    found = problems(trial_with(**fields))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_root_is_allowed_when_said_out_loud() -> None:
    context = {"runAsUser": 0, "runAsNonRoot": False}
    trial = load_study(trial_with(podSecurityContext=context)).spec.trial
    assert trial.pod_security()["runAsUser"] == 0


BUILTIN_WINE = {"model": "lightgbm", "data": {"dataset": "sklearn:wine"}}


def test_the_python_builders_apply_the_builtin_rules() -> None:
    from kubetune.study.spec import StudySpec

    with pytest.raises(ValueError, match=r"objective\.direction: must be maximize for metric auc"):
        StudySpec(
            objective={"direction": "minimize", "metric": "auc"}, trial={"builtin": BUILTIN_WINE}
        )
    spec = StudySpec(
        objective={"direction": "maximize", "metric": "auc"}, trial={"builtin": BUILTIN_WINE}
    )
    with pytest.raises(ValueError, match=r"searchSpace\.num_leaves: lightgbm takes an integer"):
        spec.search_space = {"num_leaves": {"type": "float", "low": 2, "high": 8}}


def test_checking_a_builtin_spec_imports_no_ml_library() -> None:
    """The CLI, the SDK and the operator check the built-in rules without numpy & co."""
    spec = {"objective": {"metric": "auc"}, "trial": {"builtin": BUILTIN_WINE}}
    script = (
        "import sys\n"
        "from kubetune.study.spec import SpecError, validate_spec\n"
        "try:\n"
        f"    validate_spec({spec!r})\n"
        "except SpecError as error:\n"
        "    print(error)\n"
        "print(sorted({'numpy', 'sklearn', 'lightgbm', 'xgboost', 'torch', 'pyarrow',\n"
        "              'kubetune_trial'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.splitlines() == [
        "spec.objective.direction: must be maximize for metric auc (higher is better); "
        "it is unset, which means minimize",
        "[]",
    ]
