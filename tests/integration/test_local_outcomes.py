"""``kubetune run``: how a local study ends, and which study a file runs.

A study that never finished a trial takes a corrected spec; a started one
refuses a change and says how to go on; ``kubetune delete STUDY.yaml`` deletes
a local study; two projects' files with the same study name do not share
trials; a study where no trial succeeds exits 1 and leaves no best_params.json;
the first trials failing the same way stop the study; a grid study ends when
its grid is done.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from kubetune.study.spec import validate_spec
from optuna.trial import TrialState
from runner_helpers import load
from test_local import SPEC, run_cli, write_study

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cli_env(runner_env: dict[str, str]) -> dict[str, str]:
    env = dict(runner_env)
    env.pop("KUBETUNE_STORAGE_URL")  # the CLI takes --storage, as a user would pass it
    env["COLUMNS"] = "160"
    return env


QUICK: dict[str, Any] = {**SPEC, "budget": {"maxTrials": 3, "parallelism": 1}}


def flat(text: str) -> str:
    """Output with Rich's line wrapping undone."""
    return " ".join(text.split())


# ------------------------------------------------ 2. a study locked by its name


def test_a_study_with_no_finished_trial_takes_a_corrected_spec(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    """The first run's objective and direction were wrong and every trial failed;
    the corrected file runs, as a new study."""
    wrong = {
        **QUICK,
        "objective": {"direction": "maximize"},
        "trial": {"python": "kt_test_objectives:raises"},
    }
    first = run_cli(
        cli_env, tmp_path, "run", str(write_study(tmp_path, wrong)), "--storage", storage_url
    )
    assert first.returncode == 1, first.stdout + first.stderr
    assert [t.state for t in load(storage_url, "local").trials] == [TrialState.FAIL] * 3

    fixed = run_cli(
        cli_env, tmp_path, "run", str(write_study(tmp_path, QUICK)), "--storage", storage_url
    )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    out = flat(fixed.stdout)
    assert "had no finished trial (3 failed)" in out and "started it over" in out, out
    study = load(storage_url, "local")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3


def test_a_typo_in_the_objective_does_not_lock_the_name(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    typo = {**QUICK, "trial": {"python": "kt_test_objectives:quadratc"}}
    first = run_cli(
        cli_env, tmp_path, "run", str(write_study(tmp_path, typo)), "--storage", storage_url
    )
    assert first.returncode == 3, first.stdout + first.stderr
    fixed = run_cli(
        cli_env, tmp_path, "run", str(write_study(tmp_path, QUICK)), "--storage", storage_url
    )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert len(load(storage_url, "local").trials) == 3


def test_a_started_study_refuses_a_change_and_says_how_to_go_on(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    path = write_study(tmp_path, QUICK)
    assert run_cli(cli_env, tmp_path, "run", str(path), "--storage", storage_url).returncode == 0
    changed = write_study(tmp_path, {**QUICK, "trial": {"python": "kt_test_objectives:sleeps"}})
    refused = run_cli(cli_env, tmp_path, "run", str(changed), "--storage", storage_url)
    assert refused.returncode == 5, refused.stdout + refused.stderr  # refused
    message = flat(refused.stderr)
    assert "study 'local' already ran with a different trial" in message
    assert "--fresh" in message and "kubetune delete" in message and "metadata.name" in message
    assert len(load(storage_url, "local").trials) == 3


def test_delete_a_local_study(cli_env: dict[str, str], storage_url: str, tmp_path: Path) -> None:
    path = write_study(tmp_path, QUICK)
    assert run_cli(cli_env, tmp_path, "run", str(path), "--storage", storage_url).returncode == 0
    deleted = run_cli(cli_env, tmp_path, "delete", str(path), "--storage", storage_url)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert "study 'local' deleted (3 trials)" in flat(deleted.stdout)
    with pytest.raises(KeyError):
        load(storage_url, "local")
    again = run_cli(cli_env, tmp_path, "delete", str(path), "--storage", storage_url)
    assert again.returncode == 4, again.stdout + again.stderr  # not found
    assert 'study "local" not found' in flat(again.stderr)


# ---------------------------------------- 3. two projects, the same study name


def two_projects(tmp_path: Path, spec: dict[str, Any]) -> tuple[Path, Path]:
    """Two project folders, each with a converted W&B sweep named "sweep"."""
    paths = []
    for project in ("alpha", "beta"):
        folder = tmp_path / project
        folder.mkdir()
        paths.append(write_study(folder, spec, name="sweep"))
    return paths[0], paths[1]


def test_two_projects_with_the_same_study_name_do_not_share_trials(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    alpha, beta = two_projects(tmp_path, QUICK)
    first = run_cli(cli_env, alpha.parent, "run", str(alpha), "--storage", storage_url)
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_cli(cli_env, beta.parent, "run", str(beta), "--storage", storage_url)
    assert second.returncode == 5, second.stdout + second.stderr
    message = flat(second.stderr)
    assert str(alpha.resolve()) in message and str(beta.resolve()) in message, message
    assert "--fresh" in message and "metadata.name" in message and "studyName" in message
    assert not (beta.parent / "best_params.json").exists(), "nothing of alpha's written to beta"
    assert len(load(storage_url, "sweep").trials) == 3
    # Neither may delete the other's study.
    refused = run_cli(cli_env, beta.parent, "delete", str(beta), "--storage", storage_url)
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert len(load(storage_url, "sweep").trials) == 3
    # --fresh takes the name over, as the message says.
    fresh = run_cli(cli_env, beta.parent, "run", str(beta), "--storage", storage_url, "--fresh")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert len(load(storage_url, "sweep").trials) == 3
    again = run_cli(cli_env, alpha.parent, "run", str(alpha), "--storage", storage_url)
    assert again.returncode == 5, again.stdout + again.stderr


def test_spec_storage_study_name_shares_a_study_on_purpose(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    shared = {**QUICK, "storage": {"studyName": "shared-sweep"}}
    alpha, beta = two_projects(tmp_path, shared)
    first = run_cli(cli_env, alpha.parent, "run", str(alpha), "--storage", storage_url)
    assert first.returncode == 0, first.stdout + first.stderr
    more = run_cli(
        cli_env, beta.parent, "run", str(beta), "--storage", storage_url, "--trials", "2"
    )
    assert more.returncode == 0, more.stdout + more.stderr
    assert len(load(storage_url, "shared-sweep").trials) == 5


# ------------------------------------------------ 6. a study where all fails


def test_a_study_where_every_trial_fails_exits_1_and_leaves_no_best_params(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    stale = tmp_path / "best_params.json"
    stale.write_text('{"learning_rate": 0.5}\n', encoding="utf-8")
    failing = {**QUICK, "trial": {"python": "kt_test_objectives:raises"}}
    result = run_cli(
        cli_env, tmp_path, "run", str(write_study(tmp_path, failing)), "--storage", storage_url
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert not stale.exists(), "a stale best_params.json must not be left in place"
    out = flat(result.stdout)
    assert "0 complete, 0 pruned, 3 failed" in out
    assert "no trial completed" in out and "removed the earlier best_params.json" in out, out


def test_the_first_trials_failing_the_same_way_stop_the_study(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    failing = {
        **SPEC,
        "budget": {"maxTrials": 40, "parallelism": 2},
        "trial": {"python": "kt_test_objectives:raises"},
    }
    result = run_cli(
        cli_env, tmp_path, "run", str(write_study(tmp_path, failing)), "--storage", storage_url
    )
    assert result.returncode == 1, result.stdout + result.stderr
    trials = load(storage_url, "local").trials
    # Each worker checks before its next trial: at most one more per other worker.
    assert 5 <= len(trials) <= 6
    # A trial running when the study failed ends with it: none waits to run again.
    assert {t.state.name for t in trials} == {"FAIL"}, [(t.number, t.state.name) for t in trials]
    out = flat(result.stdout)
    assert "TooManyFailedTrials" in out
    assert f"the first {len(trials)} trials all failed the same way" in out, out
    assert "ValueError: boom: the objective broke" in out


def test_first_failures_rule_is_the_budget_s_and_keeps_an_explicit_limit() -> None:
    """The operator and the trial runner ask the same function."""
    from kubetune.engine.budget import Spending, StopReason, describe, stop_reason

    spec = validate_spec({"budget": {"maxTrials": 50}, "trial": {"python": "m:f"}})
    same = Spending(
        trials=5, failures=5, best_value=None, uniform_failures=5, failure_reason="KeyError: 'y'"
    )
    assert stop_reason(spec, same, now=0, deadline=None) is StopReason.TOO_MANY_FAILURES
    assert "KeyError: 'y'" in describe(StopReason.TOO_MANY_FAILURES, spec, same)
    mixed = Spending(trials=5, failures=5, best_value=None)  # different reasons
    assert stop_reason(spec, mixed, now=0, deadline=None) is None
    explicit = validate_spec(
        {"budget": {"maxTrials": 50, "maxFailedTrials": 10}, "trial": {"python": "m:f"}}
    )
    assert stop_reason(explicit, same, now=0, deadline=None) is None


# ------------------------------------------------------------ 7. the grid sampler


def test_a_grid_study_ends_when_its_grid_is_done(
    cli_env: dict[str, str], storage_url: str, tmp_path: Path
) -> None:
    spec = {
        "objective": {"direction": "minimize", "metric": "loss"},
        "searchSpace": {
            "a": {"type": "int", "low": 0, "high": 2},
            "b": {"type": "categorical", "choices": ["x", "y"]},
        },
        "sampler": {"name": "grid"},
        "pruner": {"name": "none"},
        "budget": {"maxTrials": 10, "parallelism": 3},
        "trial": {"command": [sys.executable, "-c", "print('loss={a}')"]},
    }
    path = write_study(tmp_path, spec)
    result = run_cli(cli_env, tmp_path, "run", str(path), "--storage", storage_url)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = load(storage_url, "local").trials
    points = [(t.params["a"], t.params["b"]) for t in trials]
    assert sorted(points) == [(a, b) for a in range(3) for b in "xy"], points
    assert all(t.state == TrialState.COMPLETE for t in trials)
    out = flat(result.stdout)
    assert "GridExhausted: the grid's 6 points all ran" in out, out
    assert "6/6" in out, "the progress bar counts to the grid's size, not maxTrials"
    assert "worker process" not in out, out  # no worker crashed
    logs = "".join(p.read_text() for p in (tmp_path / ".kubetune" / "logs").rglob("*.log"))
    assert "Traceback" not in logs, logs
    # Running it again has nothing left to do.
    again = run_cli(cli_env, tmp_path, "run", str(path), "--storage", storage_url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(load(storage_url, "local").trials) == 6
    assert json.loads((tmp_path / "best_params.json").read_text())["a"] == 0


def test_the_grid_gives_a_retried_trial_its_point_and_no_point_twice(storage_url: str) -> None:
    """In one process, as workers ask under the claim lock: a lost trial's retry runs
    its point again, a trial re-queued before it had parameters gets a free point,
    and the budget ends the study when every point ran once."""
    from kubetune.engine import bridge
    from kubetune.engine.budget import StopReason, stop_reason
    from kubetune.engine.ledger import TrialLedger
    from kubetune.engine.recovery import fail_lost_trials

    spec = validate_spec(
        {
            "searchSpace": {"a": {"type": "int", "low": 0, "high": 3}},
            "sampler": {"name": "grid"},
            "budget": {"maxTrials": 20},
            "trial": {"python": "m:f"},
        }
    )
    bridge.prepare_study(optuna.storages.RDBStorage(storage_url), "grid", spec)
    study = optuna.load_study(
        study_name="grid", storage=storage_url, sampler=bridge.build_sampler(spec)
    )

    def spent() -> Any:
        return TrialLedger.of(study.get_trials(), ["minimize"]).spending

    lost = study.ask()
    bridge.suggest(lost, spec)
    unsuggested = study.ask()  # stopped before it suggested anything
    frozen = [study._storage.get_trial(t._trial_id) for t in (lost, unsuggested)]
    fail_lost_trials(study, frozen, "worker gone", retries=1, requeue=True)
    ran = []
    while stop_reason(spec, spent(), now=0, deadline=None) is None:
        trial = study.ask()
        ran.append(bridge.suggest(trial, spec)["a"])
        study.tell(trial, 1.0)  # no study.stop() from the sampler: it would raise here
        assert len(ran) <= 4
    assert sorted(ran) == [0, 1, 2, 3]
    assert ran[0] == frozen[0].params["a"], "the retry runs the lost trial's point first"
    assert stop_reason(spec, spent(), now=0, deadline=None) is StopReason.GRID_EXHAUSTED
