"""``kubetune run`` as a user runs it, output piped (no terminal, no ``$COLUMNS``):
why a trial failed is shown where the user looks, whole; a trial stopped by Ctrl-C
is not called failed; a rerun with nothing to do says so.

- the live line and the "Failed trials" table show a reason's first line (the
  exception, "can't open file ...") and its last lines; the stored reason
  (``kubetune.fail_reason``) says what went wrong on its first line, and is bounded;
- a Python objective's whole traceback is in the worker log;
- piped, no line is cut or wrapped at 80 columns.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from kubetune.engine.recovery import FAIL_REASON_ATTR
from kubetune_cli import kubetune, start_kubetune
from optuna.trial import TrialState

pytestmark = pytest.mark.timeout(180)

NAME = "reasons"


@pytest.fixture
def cli_env(runner_env: dict[str, str]) -> dict[str, str]:
    """A user's environment, output piped: no ``$COLUMNS`` (Rich would use 80)."""
    env = dict(runner_env)
    env.pop("KUBETUNE_STORAGE_URL")  # the CLI takes --storage, as a user would pass it
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    return env


def write_study(folder: Path, spec: dict[str, Any], name: str = NAME) -> Path:
    path = folder / "study.yaml"
    document = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def trials(storage_url: str, name: str = NAME) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage_url).trials


def failed_reasons(storage_url: str) -> list[str]:
    return [
        str(t.user_attrs[FAIL_REASON_ATTR])
        for t in trials(storage_url)
        if t.state == TrialState.FAIL
    ]


def summary_line(output: str) -> str:
    """The run's summary line ("study NAME: 2 complete, ..."), without the spend that
    ends it since issue 18 ("; spent 1.2e-05 trial-h")."""
    lines = [line for line in output.splitlines() if line.startswith(f"study {NAME}: ")]
    assert len(lines) == 1, output
    return re.sub(r"; spent \S+ trial-h$", "", lines[0])


def table_rows(output: str) -> list[str]:
    """The lines of the tables in ``output``."""
    return [line for line in output.splitlines() if line.startswith("│")]


def test_a_typo_in_a_command_shows_the_program_s_error(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """``python trian.py``: "can't open file" is on the live line, in the table and on the
    stored reason's first line, not only in .kubetune/logs."""
    spec = {
        "objective": {"direction": "minimize", "metric": "loss"},
        "searchSpace": {"x": {"type": "float", "low": 0, "high": 1}},
        "pruner": {"name": "none"},
        "budget": {"maxTrials": 2, "parallelism": 1},
        "trial": {"command": ["python", "trian.py", "--x={x}"]},
    }
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    assert result.returncode == 1, result.stdout + result.stderr
    cause = f"can't open file '{tmp_path / 'trian.py'}': [Errno 2] No such file or directory"
    live = [line for line in result.stdout.splitlines() if line.startswith("• trial 0 failed:")]
    assert live == [f"• trial 0 failed: command exited with code 2: python: {cause}"], result.stdout
    rows = [row for row in table_rows(result.stdout) if cause in row]
    assert len(rows) == 1, result.stdout
    assert "command exited with code 2: python: " in rows[0]
    reasons = failed_reasons(storage_url)
    assert len(reasons) == 2
    for reason in reasons:
        assert reason == f"command exited with code 2: python: {cause}"


def test_a_python_objective_s_traceback(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """The exception on the first line and the user's frames below it, live and in the
    table; the whole traceback in the worker log."""
    spec = {
        "objective": {"direction": "minimize"},
        "budget": {"maxTrials": 2, "parallelism": 1},
        "trial": {"python": "kt_reason_objectives:raises_deep"},
    }
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    assert result.returncode == 1, result.stdout + result.stderr
    headline = "ValueError: batch size must be positive, got -1"
    lines = result.stdout.splitlines()
    start = lines.index(f"• trial 0 failed: {headline}")
    below = "\n".join(lines[start + 1 : start + 5])
    assert "kt_reason_objectives.py" in below and "in _load_batch" in below, result.stdout
    assert 'raise ValueError(f"batch size must be positive, got {sizes[i]}")' in below
    rows = "\n".join(table_rows(result.stdout))
    assert headline in rows and "in _load_batch" in rows, result.stdout

    for reason in failed_reasons(storage_url):
        first, *rest = reason.splitlines()
        assert first == headline
        assert "in _load_batch" in reason and "in raises_deep" in reason
        assert "kubetune_trial" not in reason, "the runner's own frames are noise"
        assert rest[-1] == headline
    log = (tmp_path / ".kubetune" / "logs" / NAME / "worker-0.log").read_text(encoding="utf-8")
    assert "Traceback (most recent call last):" in log
    assert "in _load_batch" in log and headline in log


def test_a_long_stderr_is_bounded_and_keeps_its_cause(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """A program that writes pages to stderr before it fails: the stored reason fits
    its bound and still starts with the error, and ends with it."""
    script = tmp_path / "noisy.py"
    script.write_text(
        "import sys\n"
        "for i in range(200):\n"
        "    print('warning: ' + 'x' * 1200, file=sys.stderr)\n"
        "raise RuntimeError('the real cause')\n",
        encoding="utf-8",
    )
    spec = {
        "objective": {"direction": "minimize", "metric": "loss"},
        "searchSpace": {"x": {"type": "float", "low": 0, "high": 1}},
        "pruner": {"name": "none"},
        "budget": {"maxTrials": 1, "parallelism": 1},
        "trial": {"command": ["python", str(script)]},
    }
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (reason,) = failed_reasons(storage_url)
    assert len(reason) <= 2000
    assert reason.splitlines()[0] == "command exited with code 1: RuntimeError: the real cause"
    assert reason.splitlines()[-1] == "RuntimeError: the real cause"
    assert "• trial 0 failed: command exited with code 1: RuntimeError: the real cause" in (
        result.stdout
    )


QUICK: dict[str, Any] = {
    "objective": {"direction": "minimize"},
    "sampler": {"name": "random", "seed": 1},
    "budget": {"maxTrials": 2, "parallelism": 1},
    "trial": {"python": "kt_reason_objectives:quadratic"},
}


def test_piped_progress_and_messages_are_whole_lines(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """Rich draws 80 columns when not in a terminal: the live line lost its best value
    and elapsed time, and sentences were wrapped. Piped, every line is whole."""
    name = "a-study-with-a-rather-long-descriptive-name-for-its-project"
    study = write_study(tmp_path, QUICK, name=name)
    result = kubetune(cli_env, tmp_path, "run", str(study), "--storage", storage_url)
    assert result.returncode == 0, result.stdout + result.stderr
    best = min(t.value for t in trials(storage_url, name) if t.value is not None)
    live = re.compile(
        rf"^{name} ━+ 2/2 2 complete · 0 pruned · 0 failed · 0 running · best {best:.6g} "
        r"(?:· spent \S+ trial-h )?\d+:\d\d:\d\d$"  # the spend: since issue 18
    )
    assert any(live.match(line) for line in result.stdout.splitlines()), result.stdout
    assert "\nMaxTrialsReached: 2 of maxTrials 2 trials ran\n" in result.stdout


def test_a_rerun_with_nothing_to_do_says_so(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """The second run of a finished study runs nothing: it says the study is complete
    and shows the best it has, and does not announce it as new."""
    study = write_study(tmp_path, QUICK)
    first = kubetune(cli_env, tmp_path, "run", str(study), "--storage", storage_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "new best trial" in first.stdout
    again = kubetune(cli_env, tmp_path, "run", str(study), "--storage", storage_url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "new best" not in again.stdout
    assert (
        f"study {NAME} is already complete (MaxTrialsReached: 2 of maxTrials 2 trials ran); "
        "nothing to run." in again.stdout
    )
    assert len(trials(storage_url)) == 2
    best = min(trials(storage_url), key=lambda t: t.value)
    assert any(
        row.startswith(f"│     {best.number} │ {best.value:.6g} │")
        for row in table_rows(again.stdout)
    ), again.stdout


def _wait_for(condition: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.2)


def test_trials_stopped_by_ctrl_c_are_not_counted_failed(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """Ctrl-C while two trials run: they are handed back and queued to run again first;
    the summary does not call them failed, then or on the next run."""
    spec = {**QUICK, "budget": {"maxTrials": 3, "parallelism": 2}}
    spec["trial"] = {"python": "kt_reason_objectives:sleeps"}
    study = write_study(tmp_path, spec)
    process = start_kubetune(
        {**cli_env, "KT_SLEEP": "120"}, tmp_path, "run", str(study), "--storage", storage_url
    )

    def two_running() -> bool:
        try:
            found = trials(storage_url)
        except KeyError:
            return False
        return sum(t.state == TrialState.RUNNING for t in found) == 2

    try:
        _wait_for(two_running)
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    summary = summary_line(stdout)
    assert summary == f"study {NAME}: 0 complete, 0 pruned, 0 failed, 2 stopped", stdout
    assert "Failed trials" not in stdout and "trial 0 failed" not in stdout, stdout
    assert "the running trial(s) 0, 1 are queued to run again first" in stdout

    again = kubetune(
        {**cli_env, "KT_SLEEP": "0"}, tmp_path, "run", str(study), "--storage", storage_url
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary_line(again.stdout) == f"study {NAME}: 3 complete, 0 pruned, 0 failed"
    assert "failed" not in again.stdout.replace("0 failed", "")


def test_a_narrow_terminal_folds_the_best_trial_instead_of_cutting_it(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """In a terminal too narrow for the table, a parameter's value folds onto the next
    line; it is not cut to "0.4872…"."""
    study = write_study(tmp_path, QUICK)
    env = {**cli_env, "FORCE_COLOR": "1", "COLUMNS": "40"}  # a terminal, 40 columns
    result = kubetune(env, tmp_path, "run", str(study), "--storage", storage_url)
    assert result.returncode == 0, result.stdout + result.stderr
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stdout)
    best = min(trials(storage_url), key=lambda t: t.value)
    params = "".join(row.split("│")[3].strip() for row in table_rows(plain))
    assert f"x={best.params['x']!r}" in params.replace(" ", ""), plain
    assert "…" not in "\n".join(table_rows(plain))


def test_a_module_that_breaks_on_import_says_where(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """The run stops with the exception and the line of the user's module; the
    whole traceback is in the worker's log, not in the error."""
    (tmp_path / "kt_import_breaks.py").write_text(
        "import os\nDATA = os.environ['KT_NO_SUCH_VARIABLE']\n", encoding="utf-8"
    )
    spec = {**QUICK, "trial": {"python": "kt_import_breaks:objective"}}
    result = kubetune(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    assert result.returncode == 3, result.stdout + result.stderr
    module = tmp_path / "kt_import_breaks.py"
    assert result.stderr.splitlines() == [
        "error: spec.trial.python: cannot import 'kt_import_breaks': KeyError: "
        f"'KT_NO_SUCH_VARIABLE' (at {module}, line 2)",
        f"  (the worker's log: .kubetune/logs/{NAME}/worker-0.log)",
    ]
    log = (tmp_path / ".kubetune" / "logs" / NAME / "worker-0.log").read_text(encoding="utf-8")
    assert "Traceback (most recent call last):" in log
    assert f'File "{module}", line 2, in <module>' in log
