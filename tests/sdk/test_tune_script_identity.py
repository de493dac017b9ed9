"""One rule for a study's identity: the study continues while its objective's code is
unchanged, and is refused (exit code 5, ``SpecChangeRefused``) once it has results and
the code behind it, or its seed, changed.

- a Study file's ``python:`` objective: its code is the module's file, the packages
  above it and the project's modules it imports;
- a ``tune()`` script: its code is what tune() ships (the objective and the lines it
  uses), not the whole file, so editing ``max_trials=`` continues the study.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from harness.fixtures import harness_env
from kubetune_cli import kubetune, python_script

STUDY = """\
apiVersion: kubetune.io/v1alpha1
kind: Study
metadata: {{name: identity}}
spec:
  objective: {{direction: minimize}}
  searchSpace:
    x: {{type: float, low: 0, high: 1}}
  sampler: {{name: random, seed: {seed}}}
  budget: {{maxTrials: 2, parallelism: 1}}
  trial:
    python: objectives.quad:objective
"""
QUAD = """\
from objectives.helpers import target


def objective(trial):
    return (trial.params["x"] - target()) ** 2
"""
HELPERS = "def target():\n    return 0.5\n"


def run_study(project: Path, storage_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``kubetune run study.yaml --storage URL ARGS`` in ``project``."""
    env = harness_env()
    env.pop("KUBETUNE_STORAGE_URL", None)
    return kubetune(env, project, "run", "study.yaml", "--storage", storage_url, *args)


def trials(storage_url: str, name: str = "identity") -> int:
    return len(optuna.load_study(study_name=name, storage=storage_url).trials)


@pytest.mark.timeout(300)
def test_a_study_file_continues_with_the_same_code_and_refuses_other_code_or_seed(
    tmp_path: Path, storage_url: str
) -> None:
    project = tmp_path / "project"
    (project / "objectives").mkdir(parents=True)
    (project / "objectives" / "__init__.py").write_text("")
    (project / "objectives" / "quad.py").write_text(QUAD)
    helpers = project / "objectives" / "helpers.py"
    helpers.write_text(HELPERS)
    study = project / "study.yaml"
    study.write_text(STUDY.format(seed=0))

    first = run_study(project, storage_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert trials(storage_url) == 2
    # The same code again (a budget change is no change of identity): it continues.
    again = run_study(project, storage_url, "--trials", "1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert trials(storage_url) == 3

    # A module the objective imports changed: refused, exit 5, nothing run.
    helpers.write_text(HELPERS.replace("0.5", "0.25"))
    changed = run_study(project, storage_url, "--trials", "1")
    assert changed.returncode == 5, changed.stdout + changed.stderr
    assert "other code" in changed.stderr and "spec.trial.python" in changed.stderr
    assert "--fresh" in changed.stderr
    assert trials(storage_url) == 3
    helpers.write_text(HELPERS)

    # A changed seed: refused the same way.
    study.write_text(STUDY.format(seed=1))
    reseeded = run_study(project, storage_url, "--trials", "1")
    assert reseeded.returncode == 5, reseeded.stdout + reseeded.stderr
    assert "spec.sampler" in reseeded.stderr
    study.write_text(STUDY.format(seed=0))

    # Back to the code and seed it ran with: it continues.
    back = run_study(project, storage_url, "--trials", "1")
    assert back.returncode == 0, back.stdout + back.stderr
    assert trials(storage_url) == 4

    # --fresh starts the changed code over.
    helpers.write_text(HELPERS.replace("0.5", "0.25"))
    fresh = run_study(project, storage_url, "--fresh")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert trials(storage_url) == 2


SCRIPT = """\
import kubetune


def objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    return (x - {target}) ** 2


kubetune.Client().tune(
    objective,
    max_trials={max_trials},
    sampler={{"name": "random", "seed": 0}},
    local=True,
    progress=False,
    {name}
)
"""


def run_script(
    project: Path, storage_url: str, **values: object
) -> subprocess.CompletedProcess[str]:
    values.setdefault("target", 0.5)
    values.setdefault("name", "")
    (project / "tune.py").write_text(SCRIPT.format(**values))
    return python_script(harness_env({"KUBETUNE_STORAGE_URL": storage_url}), project, "tune.py")


def studies(storage_url: str) -> dict[str, int]:
    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage_url)}


@pytest.mark.timeout(300)
def test_a_tune_script_is_named_by_its_objective_code_not_the_whole_file(
    tmp_path: Path, storage_url: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    first = run_script(project, storage_url, max_trials=2)
    assert first.returncode == 0, first.stderr
    (name,) = studies(storage_url)
    assert name.startswith("objective-")

    # Only max_trials= changed: the same study continues.
    more = run_script(project, storage_url, max_trials=3)
    assert more.returncode == 0, more.stderr
    assert studies(storage_url) == {name: 3}

    # The objective changed: another study.
    other = run_script(project, storage_url, max_trials=2, target=0.25)
    assert other.returncode == 0, other.stderr
    assert len(studies(storage_url)) == 2 and studies(storage_url)[name] == 3

    # The changed objective under the first study's name: refused.
    named = run_script(project, storage_url, max_trials=4, target=0.25, name=f"name={name!r},")
    assert named.returncode != 0
    assert "SpecChangeRefused" in named.stderr and "other code" in named.stderr
    assert studies(storage_url)[name] == 3
