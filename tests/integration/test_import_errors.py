"""``kubetune run study.yaml`` with a ``python:`` objective whose module does not
import, as a user runs it: the error points at the user's code, never at kubetune's.

- a module that is not found says where kubetune looks (the working directory and
  PYTHONPATH) and notices the file beside the Study file, run from another folder;
- a syntax error names the user's file and line;
- a module that imports a package that is not installed names that package and the
  user's line, not the objective's module as missing;
- the trial runner itself (a pod's worker, with no Study file) says where it looks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from kubetune.engine.worker import EXIT_CONFIG_ERROR
from kubetune_cli import kubetune
from runner_helpers import REPO, run_worker

pytestmark = pytest.mark.timeout(180)

NAME = "imports"
EXIT_BAD_INPUT = 2
EXIT_RUN_ERROR = 3

OBJECTIVE = "def objective(trial):\n    return trial.suggest_float('x', 0.0, 1.0) ** 2\n"


@pytest.fixture
def cli_env(runner_env: dict[str, str]) -> dict[str, str]:
    """A user's environment: the storage given with --storage, output piped."""
    env = dict(runner_env)
    env.pop("KUBETUNE_STORAGE_URL")
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    return env


def write_study(folder: Path, python: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    document: dict[str, Any] = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": NAME},
        "spec": {
            "objective": {"direction": "minimize"},
            "sampler": {"name": "random", "seed": 1},
            "budget": {"maxTrials": 2, "parallelism": 1},
            "trial": {"python": python},
        },
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def error_text(result: Any) -> str:
    """stderr with nothing of kubetune's own code in it (asserted), for the checks."""
    assert "kubetune/engine" not in result.stderr, result.stderr
    assert "kubetune_trial" not in result.stderr, result.stderr
    return str(result.stderr)


def test_a_module_beside_the_study_file_run_from_another_folder(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """``kubetune run proj/study.yaml`` from proj's parent: refused before any worker
    starts (bad input, as a data file that is not here), saying modules are imported
    from the working directory (named) and PYTHONPATH, and that the module's file sits
    beside the Study file; run from there, as it says, the study runs."""
    project = tmp_path / "proj"
    write_study(project, "kt_beside_study:objective")
    (project / "kt_beside_study.py").write_text(OBJECTIVE, encoding="utf-8")

    result = kubetune(
        cli_env, tmp_path, "run", "proj/study.yaml", "--storage", storage_url, timeout=120
    )

    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    text = error_text(result)
    assert "spec.trial.python: cannot import 'kt_beside_study'" in text
    assert f"working directory ({tmp_path})" in text
    assert "PYTHONPATH" in text
    assert f"{os.path.join('proj', 'kt_beside_study.py')} is beside the Study file" in text
    assert "cd proj && kubetune run study.yaml" in text
    assert " (at " not in text, "no frame of the user's code: no location"

    rerun = kubetune(cli_env, project, "run", "study.yaml", "--storage", storage_url)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr


def test_a_module_not_found_anywhere_says_where_kubetune_looks(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """No file of that name beside the Study file: where modules are imported from,
    and no claim about a file beside it."""
    write_study(tmp_path, "kt_nowhere_module:objective")

    result = kubetune(cli_env, tmp_path, "run", "study.yaml", "--storage", storage_url)

    assert result.returncode == EXIT_RUN_ERROR, result.stdout + result.stderr
    text = error_text(result)
    assert "spec.trial.python: cannot import 'kt_nowhere_module'" in text
    assert f"working directory ({tmp_path})" in text and "PYTHONPATH" in text
    assert "beside the Study file" not in text
    assert " (at " not in text


def test_a_syntax_error_names_the_user_s_file_and_line(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    write_study(tmp_path, "kt_syntax_broken:objective")
    module = tmp_path / "kt_syntax_broken.py"
    module.write_text(OBJECTIVE + "\ndef broken(:\n    pass\n", encoding="utf-8")

    result = kubetune(cli_env, tmp_path, "run", "study.yaml", "--storage", storage_url)

    assert result.returncode == EXIT_RUN_ERROR, result.stdout + result.stderr
    first = error_text(result).splitlines()[0]
    assert first.startswith("error: spec.trial.python: cannot import 'kt_syntax_broken': "), first
    assert "SyntaxError: " in first
    assert first.endswith(f"(at {module}, line 4)"), first


def test_a_missing_third_party_package_is_named_with_the_user_s_line(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """``import lightgbmx`` in the objective's module: lightgbmx is missing, not the
    module, and the line is the user's import."""
    write_study(tmp_path, "kt_imports_missing:objective")
    module = tmp_path / "kt_imports_missing.py"
    module.write_text("import os\nimport lightgbmx\n\n" + OBJECTIVE, encoding="utf-8")

    result = kubetune(cli_env, tmp_path, "run", "study.yaml", "--storage", storage_url)

    assert result.returncode == EXIT_RUN_ERROR, result.stdout + result.stderr
    first = error_text(result).splitlines()[0]
    assert first == (
        "error: spec.trial.python: cannot import 'kt_imports_missing': ModuleNotFoundError: "
        f"No module named 'lightgbmx' (at {module}, line 2)"
    ), first
    assert "working directory" not in result.stderr, "the objective's module was found"


def test_an_error_raised_inside_optuna_names_the_user_s_line(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """A bad argument at the module's top level fails deep in Optuna (through
    kubetune's interception of create_study): the place shown is the user's call."""
    write_study(tmp_path, "kt_bad_direction:objective")
    module = tmp_path / "kt_bad_direction.py"
    module.write_text(
        "import optuna\n\nstudy = optuna.create_study(direction='sideways')\n" + OBJECTIVE,
        encoding="utf-8",
    )

    result = kubetune(cli_env, tmp_path, "run", "study.yaml", "--storage", storage_url)

    assert result.returncode == EXIT_RUN_ERROR, result.stdout + result.stderr
    first = error_text(result).splitlines()[0]
    assert first.startswith("error: spec.trial.python: cannot import 'kt_bad_direction': "), first
    assert "ValueError: " in first, first
    assert first.endswith(f"(at {module}, line 3)"), first


def test_the_trial_runner_says_where_it_looks_for_a_missing_module(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str]
) -> None:
    """In a pod there is no Study file: the worker names its working directory and
    PYTHONPATH, and no place in kubetune's code."""
    make_study({"objective": {"direction": "minimize"}, "trial": {"python": "kt_gone:objective"}})

    code, output = run_worker(runner_env)

    assert code == EXIT_CONFIG_ERROR, output
    assert (
        "spec.trial.python: cannot import 'kt_gone': ModuleNotFoundError: No module named "
        f"'kt_gone'; python: objectives are imported from the working directory ({REPO}) "
        "and PYTHONPATH (" in output
    ), output
    assert " (at " not in output and "Traceback" not in output, output


def test_a_missing_module_of_a_package_names_the_package_found(
    make_study: Callable[..., optuna.Study], runner_env: dict[str, str], tmp_path: Path
) -> None:
    """``python: kt_found_pkg.gone``: the package is there, its module is not."""
    package = tmp_path / "kt_found_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    make_study(
        {"objective": {"direction": "minimize"}, "trial": {"python": "kt_found_pkg.gone:objective"}}
    )
    pythonpath = os.pathsep.join([str(tmp_path), runner_env["PYTHONPATH"]])

    code, output = run_worker(runner_env, PYTHONPATH=pythonpath)

    assert code == EXIT_CONFIG_ERROR, output
    assert (
        "spec.trial.python: cannot import 'kt_found_pkg.gone': ModuleNotFoundError: No module "
        f"named 'kt_found_pkg.gone' (package 'kt_found_pkg' is {package / '__init__.py'})"
    ) in output, output
