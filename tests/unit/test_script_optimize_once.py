"""Issue 16.5: a script that would call ``study.optimize`` more than once is refused at
its first call, before any trial runs (kubetune runs one optimize per script), when its
code shows it; calls in different branches of an ``if``, and ``.optimize`` of something
that is not a study, are not a second call. The script runs in-process as ``kubetune
init`` runs it (up to its first optimize)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from kubetune.engine.scripts import ScriptError, run_script

HEAD = """\
import optuna


def objective(trial):
    return trial.suggest_float("x", 0, 1)


study = optuna.create_study()
"""


@pytest.fixture(autouse=True)
def _in_the_scripts_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # messages name the script as the user typed it


def script(tmp_path: Path, tail: str) -> Path:
    path = tmp_path / "tune.py"
    path.write_text(HEAD + textwrap.dedent(tail), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        pytest.param(
            "study.optimize(objective, n_trials=5)\n"
            "print(study.best_params)\n"
            "study.optimize(objective, n_trials=5)\n",
            "tune.py calls study.optimize twice (tune.py, line 9 and tune.py, line 11)",
            id="two-in-a-row",
        ),
        pytest.param(
            "while len(study.trials) < 10:\n    study.optimize(objective, n_trials=5)\n",
            "tune.py calls study.optimize in a loop (tune.py, line 10)",
            id="loop",
        ),
        pytest.param(
            'if __name__ == "__main__":\n'
            "    study.optimize(objective, n_trials=5)\n"
            "other = optuna.create_study()\n"
            "other.optimize(objective, n_trials=5)\n",
            "tune.py calls study.optimize twice (tune.py, line 10 and tune.py, line 12)",
            id="another-study-later",
        ),
        pytest.param(
            "def main():\n"
            "    study.optimize(objective, n_trials=5)\n"
            "    study.optimize(objective, n_trials=5)\n"
            "main()\n",
            "tune.py calls study.optimize twice (tune.py, line 10 and tune.py, line 11)",
            id="in-a-function",
        ),
    ],
)
def test_a_second_optimize_is_refused_at_the_first(tmp_path: Path, tail: str, message: str) -> None:
    path = script(tmp_path, tail)
    with pytest.raises(ScriptError) as refused:
        run_script(path, lambda record: pytest.fail("the study must not run"))
    assert message in str(refused.value)
    assert "give it the whole budget (n_trials) and call it once" in str(refused.value)


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(
            "import sys\n"
            'if "--quick" in sys.argv:\n'
            "    study.optimize(objective, n_trials=5)\n"
            "else:\n"
            "    study.optimize(objective, n_trials=50)\n",
            id="if-else-branches",
        ),
        pytest.param(
            "class Tuner:\n"
            "    def optimize(self, n):\n"
            "        return n\n"
            "tuner = Tuner()\n"
            "study.optimize(objective, n_trials=5)\n"
            "tuner.optimize(3)\n",
            id="not-a-study",
        ),
    ],
)
def test_one_optimize_per_run_is_not_refused(tmp_path: Path, tail: str) -> None:
    record = run_script(script(tmp_path, tail))  # stops at optimize, as init does
    assert record.optimize is not None
