"""The SDK's parts that need no cluster: search-space helpers, shipping source,
the Study tune() builds, warm-start files, names, the import surface, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
import tune_helpers
import tune_objectives
from kubetune import space
from kubetune.cli import app
from kubetune.client.client import is_finished, refused_fields
from kubetune.client.tuning import build_study, default_name, resources_spec
from kubetune.cluster.shipping import INTERACTIVE_MODULE, ShippingError, ship
from kubetune.engine.warmstart import check_param_sets, param_sets
from kubetune.study.spec import SpecError, validate_spec
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]


def test_import_kubetune_and_the_cli_stay_light() -> None:
    code = (
        "import sys, kubetune, kubetune.cli;"
        "heavy = {'kubernetes', 'plotly', 'pandas', 'matplotlib', 'optuna', 'sqlalchemy'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_lazy_public_surface() -> None:
    import kubetune

    assert kubetune.Client.__name__ == "Client"
    assert kubetune.Study.__name__ == "Study"
    assert kubetune.space.Float(0.1, 1.0).low == 0.1
    with pytest.raises(AttributeError):
        _ = kubetune.nothing_here  # type: ignore[attr-defined]


def test_names_match_the_operators() -> None:
    from kubetune.study import names
    from kubetune_operator import labels

    long = "a" * 60
    for study in ("lgbm", long):
        assert names.best_params_configmap(study) == labels.best_params_configmap(study)
        assert names.storage_secret(study) == labels.storage_secret(study)
    assert (names.STUDY_LABEL, names.TRIAL_LABEL) == (labels.STUDY_LABEL, labels.TRIAL_LABEL)
    assert names.BEST_PARAMS_KEY == labels.BEST_PARAMS_KEY


def test_search_space_helpers_and_shorthands() -> None:
    built = space.search_space(
        {
            "lr": space.Float(1e-4, 0.1, log=True),
            "layers": (1, 4),
            "dropout": (0.0, 0.5),
            "units": (16, 512, "log"),
            "act": ["relu", "gelu"],
            "wd": {"type": "float", "low": 0, "high": 0.1, "step": 0.01},
        }
    )
    assert built["layers"].type == "int" and built["dropout"].type == "float"
    assert built["units"].log is True and built["act"].choices == ["relu", "gelu"]
    assert built["wd"].step == 0.01
    with pytest.raises(SpecError, match="must be > 0 when log is true"):
        space.Float(0.0, 1.0, log=True)
    with pytest.raises(SpecError) as error:
        space.search_space({"x": (5, 1)})
    assert error.value.problems[0][0] == "searchSpace.x.high"
    with pytest.raises(SpecError, match="cannot make a parameter"):
        space.search_space({"x": 3})


def test_ship_a_module_function_and_named_modules() -> None:
    code = ship(tune_objectives.objective, modules=[tune_helpers])
    assert code.entry == "tune_objectives:objective"
    assert set(code.files) == {"tune_objectives.py", "tune_helpers.py"}
    assert code.volume_items() == [
        {"key": "tune_helpers.py", "path": "tune_helpers.py"},
        {"key": "tune_objectives.py", "path": "tune_objectives.py"},
    ]
    assert ship(tune_objectives.objective, modules=["tune_helpers"]).digest == code.digest
    assert ship(tune_objectives.objective).digest != code.digest
    # A package brings all its files, each at its package path.
    package = ship(tune_objectives.objective, modules=["kubetune.convert"])
    assert "kubetune/convert/wandb.py" in package.files
    assert package.configmap_data()["kubetune.convert.wandb.py"].startswith('"""W&B')


def test_ship_refuses_what_cannot_be_imported_by_name() -> None:
    def nested(trial: Any) -> float:
        return 0.0

    with pytest.raises(ShippingError, match="top level"):
        ship(nested)
    with pytest.raises(ShippingError, match="top level"):
        ship(lambda trial: 0.0)
    with pytest.raises(ShippingError, match="not a plain function"):
        ship(print)  # type: ignore[arg-type]
    with pytest.raises(ShippingError, match="modules"):
        ship(tune_objectives.objective, modules=["no_such_module_here"])


def test_ship_a_function_from_an_interactive_session(tmp_path: Path) -> None:
    """A notebook's function has no module file: its source, the modules and constants
    it uses and the session functions it calls make up a module of their own."""
    source = tmp_path / "cell.py"
    source.write_text(
        textwrap.dedent(
            """
            import math as m
            from os.path import join
            SCALE = 3
            NAMES = ("a", "b")

            def helper(x):
                return m.sqrt(x) * SCALE

            def objective(trial):
                x = trial.suggest_float("x", 0, 1)
                return helper(x) + len(join(*NAMES))
            """
        )
    )
    session = types.ModuleType("__main__")  # no __file__: like a notebook or a REPL
    exec(compile(source.read_text(), str(source), "exec"), session.__dict__)
    code = ship(session.objective)
    assert code.entry == f"{INTERACTIVE_MODULE}:objective"
    text = code.files[f"{INTERACTIVE_MODULE}.py"]
    assert "import math as m" in text and "from posixpath import join" in text
    assert "SCALE = 3" in text and "NAMES = ('a', 'b')" in text
    assert "def helper(x):" in text
    shipped: dict[str, Any] = {}
    exec(compile(text, "shipped.py", "exec"), shipped)

    class Trial:
        def suggest_float(self, name: str, low: float, high: float) -> float:
            return 0.25

    assert shipped["objective"](Trial()) == pytest.approx(0.5 * 3 + 3)

    # A value that is neither a module, an importable object nor a literal is refused.
    other = tmp_path / "cell2.py"
    other.write_text(
        "import threading\nLOCK = threading.Lock()\n\ndef uses_lock(trial):\n    return LOCK\n"
    )
    second = types.ModuleType("__main__")
    exec(compile(other.read_text(), str(other), "exec"), second.__dict__)
    with pytest.raises(ShippingError, match="'LOCK'"):
        ship(second.uses_lock)


def test_build_study_for_the_cluster_and_resources() -> None:
    code = ship(tune_objectives.objective, modules=[tune_helpers])
    study = build_study(
        code,
        {"x": (0.0, 1.0)},
        max_trials=12,
        parallelism=3,
        resources={"gpu": 1, "cpu": 2, "memory": "4Gi"},
        image="me/trial:1",
        env={"PYTHONPATH": "/extra", "OMP_NUM_THREADS": "1"},
        pruner="median",
        sampler={"name": "tpe", "seed": 1},
    )
    assert study.metadata.name == default_name(code)
    assert study.metadata.name.startswith("objective-") and len(study.metadata.name) <= 63
    trial = study.spec.trial
    assert trial.python == "tune_objectives:objective"
    assert trial.image == "me/trial:1"
    assert trial.resources.limits == {"nvidia.com/gpu": 1, "memory": "4Gi"}
    assert trial.resources.requests == {"cpu": 2, "memory": "4Gi"}
    env = {e.name: e.value for e in trial.env}
    assert env == {"PYTHONPATH": "/kubetune/code:/extra", "OMP_NUM_THREADS": "1"}
    assert trial.volumes[0]["configMap"]["name"] == f"{study.metadata.name}-code"
    assert trial.volume_mounts == [
        {"name": "kubetune-code", "mountPath": "/kubetune/code", "readOnly": True}
    ]
    assert study.spec.budget.max_trials == 12 and study.spec.budget.parallelism == 3
    assert study.metadata.annotations["kubetune.io/code-digest"] == code.digest
    local = build_study(code, {"x": (0.0, 1.0)}, cluster=False, name="local-one")
    assert local.metadata.name == "local-one" and not local.spec.trial.volumes
    assert resources_spec({"amd.com/gpu": 2, "limits": {"cpu": "4"}}) == {
        "limits": {"amd.com/gpu": 2, "cpu": "4"}
    }
    with pytest.raises(SpecError, match=r"spec\.budget\.maxTrials"):
        build_study(code, max_trials=0)


def test_warm_start_files_and_checks(tmp_path: Path) -> None:
    best = tmp_path / "best_params.json"
    best.write_text('{"lr": 0.01, "layers": 3}')
    assert param_sets(best) == [{"lr": 0.01, "layers": 3}]
    front = tmp_path / "front.json"
    front.write_text('[{"values": [1, 2], "params": {"lr": 0.02}}, {"lr": 0.03}]')
    assert param_sets(front) == [{"lr": 0.02}, {"lr": 0.03}]
    listed = tmp_path / "sets.yaml"
    listed.write_text("- {lr: 0.04}\n")
    assert param_sets(listed) == [{"lr": 0.04}]
    with pytest.raises(SpecError, match="no such file"):
        param_sets(tmp_path / "missing.json")
    with pytest.raises(SpecError, match="dict of parameter"):
        param_sets([1, 2])  # type: ignore[list-item]
    spec = validate_spec(
        {
            "searchSpace": {
                "lr": {"type": "float", "low": 0.001, "high": 0.1},
                "layers": {"type": "int", "low": 1, "high": 4},
                "act": {"type": "categorical", "choices": ["relu"]},
            },
            "objective": {"metric": "loss"},
            "trial": {"command": ["train", "{lr}", "{layers}", "{act}"]},
        }
    )
    check_param_sets([{"lr": 0.01, "layers": 2, "act": "relu"}], spec)
    with pytest.raises(SpecError) as error:
        check_param_sets([{"lr": 0.5, "layers": 2.5, "act": "tanh", "extra": 1}], spec)
    problems = dict(error.value.problems)
    assert "outside" in problems["params[0].lr"]
    assert "whole number" in problems["params[0].layers"]
    assert "not one of" in problems["params[0].act"]
    assert "not a parameter" in problems["params[0].extra"]


def test_started_fields_and_finished_phases() -> None:
    spec = {"trial": {"python": "a:b"}, "sampler": {"name": "random"}}
    started = {"spec": spec, "status": {"studyName": "x"}}
    assert refused_fields(started, validate_spec({**spec, "budget": {"maxTrials": 9}})) == []
    assert refused_fields(started, validate_spec({**spec, "sampler": {"name": "tpe"}})) == [
        "sampler"
    ]
    assert refused_fields(started, validate_spec({**spec, "pruner": {"name": "hyperband"}})) == [
        "pruner"
    ]
    # Naming the default pruner changes nothing.
    assert refused_fields(started, validate_spec({**spec, "pruner": {"name": "median"}})) == []
    assert refused_fields({"spec": spec}, validate_spec({"trial": {"python": "c:d"}})) == []
    judged_by_operator = {
        **started,
        "status": {
            "studyName": "x",
            "conditions": [{"type": "SpecChangeRefused", "status": "True"}],
        },
    }
    assert (
        refused_fields(judged_by_operator, validate_spec({**spec, "sampler": {"name": "tpe"}}))
        == []
    )
    stale = {
        "metadata": {"generation": 3},
        "status": {"phase": "Succeeded", "observedGeneration": 2},
    }
    assert not is_finished(stale)
    assert is_finished({"metadata": {"generation": 2}, "status": stale["status"]})


def test_cluster_commands_without_a_cluster_exit_3(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["get", "x", "--kubeconfig", str(tmp_path / "none")])
    assert result.exit_code == 3
    assert "kubeconfig" in result.stderr
    # A kubeconfig whose server does not answer.
    config = tmp_path / "config"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: c, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: c, namespace: team}}]\n"
    )
    result = runner.invoke(app, ["list", "--kubeconfig", str(config)])
    assert result.exit_code == 3
    assert "cannot reach the API server at http://127.0.0.1:9" in result.stderr
    from kubetune import Client

    assert Client(kubeconfig=config).namespace == "team"
    assert Client("other", kubeconfig=config).namespace == "other"
    # storage_host points a Study's own URL (a TCP host, or a Unix socket) at a forwarded
    # port, keeping user and database (end to end: tests/e2e/test_readme_claims.py).
    forwarded = Client(kubeconfig=config, storage_host="localhost:15432")
    for url, expected in (
        ("postgresql://u@db.kubetune.svc:5432/optuna", "postgresql://u@localhost:15432/optuna"),
        (
            "postgresql+psycopg2://postgres@/kt?host=/tmp/sock",
            "postgresql+psycopg2://postgres@localhost:15432/kt",
        ),
    ):
        study = {"metadata": {"name": "s", "namespace": "team"}, "spec": {"storage": {"url": url}}}
        assert forwarded.storage_url_of(study) == expected
    invalid = tmp_path / "study.yaml"
    invalid.write_text("apiVersion: kubetune.io/v1alpha1\nkind: Study\nmetadata: {name: Bad}\n")
    result = runner.invoke(app, ["submit", str(invalid), "--kubeconfig", str(config)])
    assert result.exit_code == 2
    assert "metadata.name" in result.stderr and "spec: required" in result.stderr
