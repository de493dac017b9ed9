"""``kubetune run``: local mode end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from kubetune.engine.recovery import FAIL_REASON_ATTR, RETRY_OF_ATTR
from kubetune_cli import kubetune as run_cli  # other modules import these two from here
from kubetune_cli import start_kubetune as start_cli
from optuna.trial import TrialState
from runner_helpers import load

pytestmark = pytest.mark.timeout(180)


def write_study(tmp_path: Path, spec: dict[str, Any], name: str = "local") -> Path:
    path = tmp_path / f"{name}.yaml"
    document = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.fixture
def cli_env(runner_env: dict[str, str]) -> dict[str, str]:
    env = dict(runner_env)
    env.pop("KUBETUNE_STORAGE_URL")  # the CLI takes --storage, as a user would pass it
    env["COLUMNS"] = "160"
    return env


SPEC: dict[str, Any] = {
    "objective": {"direction": "minimize"},
    "searchSpace": {
        "x": {"type": "float", "low": -10, "high": 10},
        "flavour": {"type": "categorical", "choices": ["café", "thé"]},
    },
    "sampler": {"name": "tpe", "seed": 0},
    "budget": {"maxTrials": 12, "parallelism": 2},
    "trial": {"python": "kt_test_objectives:quadratic"},
}


def test_two_workers_run_the_budget_and_write_best_params(
    cli_env: dict[str, str],
    storage_url: str,
    url_with_password: Callable[[str], str],
    tmp_path: Path,
) -> None:
    # Trials of 0.25 s: one worker starting late on a busy machine still gets some (with
    # trivial trials the first could run all twelve before the second's first claim).
    study_file = write_study(tmp_path, {**SPEC, "trial": {"python": "kt_test_objectives:sleeps"}})
    password = "Pa55-in-the-url"
    url = url_with_password(password)
    env = {**cli_env, "KT_SLEEP": "0.25"}
    result = run_cli(env, tmp_path, "run", str(study_file), "--storage", url)
    assert result.returncode == 0, result.stdout + result.stderr
    study = load(storage_url, "local")
    assert len(study.trials) == 12
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    workers = {t.user_attrs["kubetune.worker"] for t in study.trials}
    assert len(workers) == 2, workers
    best = json.loads((tmp_path / "best_params.json").read_text(encoding="utf-8"))
    assert best == study.best_params
    assert "12 complete" in result.stdout
    assert "Best trial" in result.stdout
    assert "MaxTrialsReached" in result.stdout
    assert password not in result.stdout + result.stderr


def test_parallelism_option_runs_that_many_workers_within_the_budget(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """``kubetune run --parallelism 4`` overrides the spec's 1: four workers, whose first
    trials end together so that all four reach for the last trial of the budget at once;
    exactly one gets it."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    spec = dict(
        SPEC,
        searchSpace={},
        budget={"maxTrials": 5, "parallelism": 1},
        trial={"python": "kt_race_objectives:meets_the_others"},
    )
    env = {**cli_env, "KT_BARRIER_DIR": str(barrier), "KT_BARRIER_SIZE": "4"}
    study_file = write_study(tmp_path, spec)
    result = run_cli(
        env, tmp_path, "run", str(study_file), "--storage", storage_url, "--parallelism", "4"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    study = load(storage_url, "local")
    assert len(list(barrier.iterdir())) == 4, "four trials ran at once"
    assert len(study.trials) == 5, [t.user_attrs for t in study.trials]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len({t.user_attrs["kubetune.worker"] for t in study.trials}) == 4
    assert "5 complete" in result.stdout


def test_running_again_continues_the_study(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    study_file = write_study(tmp_path, {**SPEC, "budget": {"maxTrials": 4, "parallelism": 2}})
    first = run_cli(cli_env, tmp_path, "run", str(study_file), "--storage", storage_url)
    assert first.returncode == 0, first.stderr
    again = run_cli(cli_env, tmp_path, "run", str(study_file), "--storage", storage_url)
    assert again.returncode == 0, again.stderr
    assert len(load(storage_url, "local").trials) == 4, "a spent budget must not run more"
    more = run_cli(
        cli_env, tmp_path, "run", str(study_file), "--storage", storage_url, "--trials", "3"
    )
    assert more.returncode == 0, more.stderr
    assert len(load(storage_url, "local").trials) == 7
    fresh = run_cli(cli_env, tmp_path, "run", str(study_file), "--storage", storage_url, "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    assert len(load(storage_url, "local").trials) == 4


def test_changed_search_space_is_refused_on_continue(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    study_file = write_study(tmp_path, {**SPEC, "budget": {"maxTrials": 2}})
    assert (
        run_cli(cli_env, tmp_path, "run", str(study_file), "--storage", storage_url).returncode == 0
    )
    changed = dict(SPEC, searchSpace={"x": {"type": "float", "low": 0, "high": 1}})
    study_file = write_study(tmp_path, changed)
    result = run_cli(cli_env, tmp_path, "run", str(study_file), "--storage", storage_url)
    assert result.returncode == 5  # refused
    assert (
        "spec.searchSpace: study 'local' already ran with a different searchSpace" in result.stderr
    )
    assert "--fresh" in result.stderr


def test_failed_trials_show_their_reasons(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """Each new reason is said while the study runs, and the end sums them up."""
    spec = dict(
        SPEC,
        searchSpace={},
        sampler={"name": "random", "seed": 1},
        budget={"maxTrials": 16, "parallelism": 1},
        trial={"python": "kt_test_objectives:fails_two_ways"},
    )
    result = run_cli(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    assert result.returncode == 0, result.stdout + result.stderr
    study = load(storage_url, "local")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    too_small = [t.number for t in failed if "too small" in t.user_attrs[FAIL_REASON_ATTR]]
    nan = [t.number for t in failed if "NaN" in t.user_attrs[FAIL_REASON_ATTR]]
    assert too_small and nan, "the seed should give both kinds of failure"
    out = " ".join(result.stdout.split())
    assert f"{len(failed)} failed" in out
    # Said once per reason while running; reasons that differ only in a number are one.
    assert out.count("failed: objective returned NaN") == 1
    assert out.count("failed: ValueError: x=") == 1
    assert out.count("│ ValueError: x=") == 1  # and once in the table
    table = out[out.index("Failed trials") :]
    for numbers in (nan, too_small):
        assert f"│ {len(numbers)} │ {', '.join(map(str, numbers[:8]))}" in table


def test_bad_study_file_names_the_field(cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = dict(SPEC, budget={"maxTrials": 0})
    result = run_cli(cli_env, tmp_path, "run", str(write_study(tmp_path, bad)))
    assert result.returncode == 2
    assert "spec.budget.maxTrials: must be greater than or equal to 1" in result.stderr


def test_objective_that_does_not_import_stops_the_run(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    spec = dict(SPEC, trial={"python": "missing_module:objective"})
    result = run_cli(
        cli_env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    assert result.returncode == 3
    assert "spec.trial.python: cannot import 'missing_module'" in result.stderr


def _children(pid: int) -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process(pid).children(recursive=True)
        if "kubetune_trial" in " ".join(p.cmdline())
    ]


def _wait_for(predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def test_ctrl_c_stops_cleanly_and_loses_no_finished_trial(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    spec = dict(
        SPEC,
        trial={"python": "kt_test_objectives:sleeps"},
        budget={"maxTrials": 6, "parallelism": 2},
    )
    study_file = write_study(tmp_path, spec)
    # Trials long enough that Ctrl-C lands while some run, even on a loaded machine.
    env = {**cli_env, "KT_SLEEP": "3", "KT_STARTED_MARKER": str(marker)}
    process = start_cli(
        env, tmp_path, "run", str(study_file), "--storage", storage_url, preexec_fn=ctrl_c_works
    )
    study = None
    workers: list[psutil.Process] = []

    def some_finished_and_some_running() -> bool:
        nonlocal study
        try:
            study = load(storage_url, "local")
        except KeyError:
            return False
        states = [t.state for t in study.trials]
        if TrialState.COMPLETE in states and TrialState.RUNNING in states:
            workers.extend(_children(process.pid))
            return True
        return False

    _wait_for(some_finished_and_some_running)
    process.send_signal(signal.SIGINT)
    assert workers, "the worker processes were found"
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    assert "stopped by Ctrl-C" in stdout
    leftover = [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    assert not leftover, f"workers still running after Ctrl-C: {leftover}"
    study = load(storage_url, "local")
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert finished
    assert interrupted, "the trials running at Ctrl-C end FAIL"
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    # Why the run stopped them, not only the SIGTERM its workers got from it.
    reasons = [t.user_attrs[FAIL_REASON_ATTR] for t in interrupted]
    assert all(reason == "stopped by Ctrl-C" for reason in reasons), reasons
    queued = [t for t in study.trials if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs[RETRY_OF_ATTR] for t in queued) == [t.number for t in interrupted]
    before = {t.number for t in study.trials if t.state != TrialState.WAITING}
    # The same command continues: the interrupted trials run again first, with the same
    # parameters (claims are one at a time, so start times give their order), and the
    # budget completes.
    result = run_cli(
        {**env, "KT_SLEEP": "0"}, tmp_path, "run", str(study_file), "--storage", storage_url
    )
    assert result.returncode == 0, result.stderr
    study = load(storage_url, "local")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6
    second_run = sorted(
        (t for t in study.trials if t.number not in before), key=lambda t: t.datetime_start
    )
    retries = second_run[: len(queued)]
    assert {t.number for t in retries} == {t.number for t in queued}, [
        (t.number, t.datetime_start, t.user_attrs) for t in second_run
    ]
    by_number = {t.number: t for t in interrupted}
    for retry in retries:
        assert retry.state == TrialState.COMPLETE
        stopped = by_number[retry.user_attrs[RETRY_OF_ATTR]]
        if stopped.params:  # stopped after it suggested: the retry tries the same point
            assert retry.params == stopped.params


def test_a_killed_worker_is_recovered_and_replaced(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    spec = dict(
        SPEC,
        trial={"python": "kt_test_objectives:sleeps", "retries": 1},
        budget={"maxTrials": 4, "parallelism": 2},
    )
    env = {**cli_env, "KT_SLEEP": "1.5", "KT_STARTED_MARKER": str(marker)}
    process = start_cli(
        env, tmp_path, "run", str(write_study(tmp_path, spec)), "--storage", storage_url
    )
    _wait_for(marker.exists)
    victim = int(marker.read_text().split()[1])  # the worker running the first trial
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stdout + stderr
    assert "was killed by SIGKILL" in stdout
    study = load(storage_url, "local")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(failed) == 1
    assert "was killed by SIGKILL" in failed[0].user_attrs[FAIL_REASON_ATTR]
    assert len(complete) == 4, "the retry replaced the lost trial in the budget"
    assert failed[0].params in [t.params for t in complete]


def test_embedded_postgres_is_the_default_and_keeps_the_study(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cli_env, "KUBETUNE_HOME": str(tmp_path / "home")}
    study_file = write_study(tmp_path, {**SPEC, "budget": {"maxTrials": 3, "parallelism": 2}})
    first = run_cli(env, tmp_path, "run", str(study_file))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "embedded PostgreSQL" in first.stdout
    second = run_cli(env, tmp_path, "run", str(study_file), "--trials", "2")
    assert second.returncode == 0, second.stderr
    assert "5 complete" in second.stdout
    # The server stopped with the command: nothing is left running on its data.
    data = str(tmp_path / "home" / "postgres")
    leftovers = [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and data in " ".join(p.info["cmdline"] or [])
    ]
    assert not leftovers


def ctrl_c_works() -> None:
    """SIGINT as a terminal delivers it: a shell's background job (a CI step, a script
    run with ``&``) inherits SIGINT ignored, and Python then never sees Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
