"""``kubetune run`` ended by something other than Ctrl-C leaves nothing running.

A run ends in other ways than Ctrl-C: ``kill`` or ``timeout`` (SIGTERM), a closed
terminal or SSH session (SIGHUP), the OOM killer or ``kill -9`` (SIGKILL) of the
supervisor or of one worker. Whatever ends it, no worker goes on claiming trials with
nobody watching, no command objective (nor what it started) goes on holding a GPU, and
no trial is left RUNNING. Each test runs a command objective shaped like a shell
wrapper around training (``sh -c 'train & wait'``), whose trainer is the shell's child.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from kubetune.engine.recovery import FAIL_REASON_ATTR
from optuna.trial import TrialState
from runner_helpers import load
from test_local import SPEC, _wait_for, cli_env, start_cli, write_study

pytestmark = pytest.mark.timeout(180)
__all__ = ["cli_env"]  # the fixture, used by name

#: The trial's shell writes its pid, starts a long "training" child, writes that pid
#: too and waits: killed, the shell alone would leave the child running.
TRAINING = (
    "echo $$ > {markers}/{{trial_number}}.shell; sleep 120 & "
    "echo $! > {markers}/{{trial_number}}.trainer; wait; echo loss={{x}}"
)


def study_with_training(tmp_path: Path, markers: Path, max_trials: int = 4) -> Path:
    markers.mkdir()
    spec = {
        **SPEC,
        "objective": {"direction": "minimize", "metric": "loss"},
        "searchSpace": {"x": {"type": "float", "low": 0, "high": 1}},
        "budget": {"maxTrials": max_trials, "parallelism": 2},
        "trial": {"command": ["sh", "-c", TRAINING.format(markers=markers)]},
    }
    return write_study(tmp_path, spec)


def signals_as_in_a_terminal() -> None:
    """SIGINT, SIGTERM and SIGHUP as a terminal's foreground job has them (a test or CI
    step may inherit some ignored, which ``nohup`` does on purpose: then they stay so)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def trainers(markers: Path, count: int) -> list[psutil.Process]:
    """The ``count`` first trials' shells and trainers, once they all run."""

    def started() -> list[psutil.Process] | None:
        pids = []
        for path in sorted(markers.glob("*.trainer"))[:count]:
            shell = path.with_suffix(".shell")
            if path.read_text().strip() and shell.read_text().strip():
                pids += [int(shell.read_text()), int(path.read_text())]
        return [psutil.Process(pid) for pid in pids] if len(pids) == 2 * count else None

    return _wait_for(started)  # type: ignore[no-any-return]


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def gone_soon(processes: list[psutil.Process], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(processes)


def workers_of(process: Any) -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process(process.pid).children(recursive=True)
        if "kubetune_trial" in " ".join(p.cmdline())
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_stops_the_run_as_ctrl_c_does(
    signum: signal.Signals, cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    study_file = study_with_training(tmp_path, markers)
    run = start_cli(
        cli_env,
        tmp_path,
        "run",
        str(study_file),
        "--storage",
        storage_url,
        preexec_fn=signals_as_in_a_terminal,
    )
    training = trainers(markers, 2)
    workers = workers_of(run)
    run.send_signal(signum)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stdout + stderr
    assert f"stopped by {signum.name}; finished trials are kept" in stdout, stdout
    assert "Run the same command to continue" in stdout
    assert not alive(workers + training), "left running after the run ended"
    study = load(storage_url, "local")
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    stopped = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(stopped) == 2
    reasons = [t.user_attrs[FAIL_REASON_ATTR] for t in stopped]
    # The run's reason, not only the SIGTERM its workers got from it.
    assert all(reason == f"stopped by {signum.name}" for reason in reasons), reasons
    assert len([t for t in study.trials if t.state == TrialState.WAITING]) == 2


def test_a_supervisor_killed_outright_takes_its_workers_and_their_commands(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    study_file = study_with_training(tmp_path, markers)
    run = start_cli(cli_env, tmp_path, "run", str(study_file), "--storage", storage_url)
    training = trainers(markers, 2)
    workers = workers_of(run)
    assert len(workers) == 2, workers
    run.kill()  # as the OOM killer or kill -9 would: no chance to stop anything
    run.communicate(timeout=30)
    assert gone_soon(workers + training), f"still running: {alive(workers + training)}"
    # The workers handed their trials back as they stop on SIGTERM: nothing RUNNING,
    # and running the same command again finishes the study.
    study = load(storage_url, "local")
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert len([t for t in study.trials if t.state == TrialState.WAITING]) == 2


def test_a_worker_killed_outright_leaves_no_command_running(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    study_file = study_with_training(tmp_path, markers, max_trials=2)
    run = start_cli(cli_env, tmp_path, "run", str(study_file), "--storage", storage_url)
    shell, trainer, *other_trial = trainers(markers, 2)
    worker = psutil.Process(shell.ppid())
    worker.kill()
    assert gone_soon([shell, trainer]), f"still running: {alive([shell, trainer])}"
    assert alive(other_trial) == other_trial, "the other worker's trial goes on"
    other_trial[1].kill()  # its training ends: its shell prints the loss, the study ends
    stdout, stderr = run.communicate(timeout=90)
    assert "was killed by SIGKILL" in stdout, stdout + stderr
    study = load(storage_url, "local")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL"]
