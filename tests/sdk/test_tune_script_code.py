"""The code behind a study's objective, as its identity counts it (kubetune.client.sources)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from kubetune.errors import SpecChangeRefused
from kubetune.local.code import CODE_DIGEST_ATTR, check_objective_code, objective_code
from kubetune.study.spec import Study, load_study


def document(python: str | None = "proj.objective:objective", **annotations: str) -> Study:
    trial = {"python": python} if python else {"command": ["echo", "loss=1"]}
    objective = {"direction": "minimize"} if python else {"direction": "minimize", "metric": "loss"}
    return load_study(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "Study",
            "metadata": {"name": "code", "annotations": annotations},
            "spec": {"objective": objective, "trial": trial},
        }
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    package = tmp_path / "proj"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "objective.py").write_text(
        "import math\nfrom . import data\nfrom proj.model import fit\n\n"
        "def objective(trial):\n    return fit(data.load())\n"
    )
    (package / "data.py").write_text("def load():\n    return [1]\n")
    (package / "model.py").write_text("def fit(rows):\n    return len(rows)\n")
    (package / "unused.py").write_text("X = 1\n")
    return tmp_path


def test_the_code_is_the_module_its_packages_and_the_project_modules_it_imports(
    project: Path,
) -> None:
    found = objective_code(document(), [str(project)])
    assert found is not None
    digest, files = found
    assert sorted(files) == [
        "proj/__init__.py",
        "proj/data.py",
        "proj/model.py",
        "proj/objective.py",
    ]
    # Another file of the package is not the objective's code; an imported one is.
    (project / "proj" / "unused.py").write_text("X = 2\n")
    assert objective_code(document(), [str(project)])[0] == digest  # type: ignore[index]
    (project / "proj" / "model.py").write_text("def fit(rows):\n    return 2 * len(rows)\n")
    assert objective_code(document(), [str(project)])[0] != digest  # type: ignore[index]
    # Not found here (only in the trial image), a command, or tune()'s annotated digest.
    assert objective_code(document("elsewhere.mod:f"), [str(project)]) is None
    assert objective_code(document(None), [str(project)]) is None
    tuned = document(**{"kubetune.io/code-digest": "abc"})
    assert objective_code(tuned, [str(project)]) == ("abc", {})


def test_a_study_with_results_refuses_other_code_and_one_without_takes_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)  # workers find the objective in the working directory
    study = optuna.create_study()
    check_objective_code(study, document())
    recorded = study._storage.get_study_system_attrs(study._study_id)[CODE_DIGEST_ATTR]
    (project / "proj" / "data.py").write_text("def load():\n    return [1, 2]\n")
    check_objective_code(study, document())  # no trial finished: the new code is taken
    now = study._storage.get_study_system_attrs(study._study_id)[CODE_DIGEST_ATTR]
    assert now != recorded
    study.optimize(lambda trial: 1.0, n_trials=1)
    check_objective_code(study, document())  # unchanged: continues
    (project / "proj" / "data.py").write_text("def load():\n    return [3]\n")
    with pytest.raises(SpecChangeRefused, match="other code") as refused:
        check_objective_code(study, document(), Path("study.yaml"))
    assert "kubetune run study.yaml --fresh" in str(refused.value)
    assert refused.value.fields == ["trial"]
