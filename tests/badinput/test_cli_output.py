"""``kubetune``'s own output, piped as scripts and CI read it: ``--version``, and
errors one line each whatever the width (Rich wraps at 80 columns when standard
error is not a terminal and ``$COLUMNS`` is unset)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from badinput_helpers import kubetune, write_study


@pytest.fixture
def piped_env(cli_env: dict[str, str]) -> dict[str, str]:
    """No ``$COLUMNS``: what a pipe, a CI log or ``2> errors.txt`` gets."""
    env = dict(cli_env)
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    return env


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(cli_env: dict[str, str], tmp_path: Path, flag: str) -> None:
    result = kubetune(cli_env, tmp_path, flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"kubetune {version('kubetune')}\n"
    assert result.stderr == ""


LONG_NAME = "learning_rate_of_the_second_stage_of_the_ensemble"


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_invalid_study_s_problems_are_one_line_each(
    piped_env: dict[str, str], tmp_path: Path, command: str
) -> None:
    spec = {
        "objective": {"direction": "minimize"},
        "searchSpace": {LONG_NAME: {"type": "float", "low": 1, "high": 0.001, "log": True}},
        "trial": {"python": "kt_bad_objectives:misbehaves"},
    }
    write_study(tmp_path, spec)
    result = kubetune(piped_env, tmp_path, command, "bad.yaml")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "error: bad.yaml is not a valid Study:",
        f"  spec.searchSpace.{LONG_NAME}.high: must be >= low (1.0)",
    ]


def test_a_bad_option_value_is_one_line(piped_env: dict[str, str], tmp_path: Path) -> None:
    """Typer draws a box at 80 columns around a command-line mistake; piped, the
    mistake is one line (after the usage), as the other errors are."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kubetune"), "run", "--parallelism", "0", "study.yaml"],
        env=piped_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "Usage: kubetune run [OPTIONS] {path}",
        "Try 'kubetune run --help' for help.",
        "error: Invalid value for '--parallelism' / '-p': Input should be greater than or "
        "equal to 1",
    ]
