"""``kubetune fork`` of a Study file, then ``kubetune run`` of the fork: as a user does it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from kubetune.engine.fork import FORKED_FROM_ATTR
from kubetune_cli import kubetune, python_script
from optuna.trial import TrialState

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
#: The example as it is (a user copies it): x in [-10, 1], the minimum at x=2.
EXAMPLE = REPO / "examples" / "fork-narrow.yaml"
PARENT: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


@pytest.fixture
def cli_env(worker_env: dict[str, str]) -> dict[str, str]:
    env = dict(worker_env)
    env["COLUMNS"] = "200"
    return env  # KUBETUNE_STORAGE_URL: the test's PostgreSQL, as a user's would be


def test_fork_widens_a_started_study_and_runs_from_its_trials(
    cli_env: dict[str, str], tmp_path: Path, storage_url: str
) -> None:
    # The example's commands, from a copy of its file (the test edits it below).
    parent = tmp_path / "narrow.yaml"
    parent.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    ran = kubetune(cli_env, tmp_path, "run", str(parent))
    assert ran.returncode == 0, ran.stdout + ran.stderr

    # Widening in place is refused, and the refusal says how to fork.
    widened = {**PARENT, "spec": {**PARENT["spec"]}}
    widened["spec"]["searchSpace"] = {
        **PARENT["spec"]["searchSpace"],
        "x": {"type": "float", "low": -10, "high": 10},
    }
    parent.write_text(yaml.safe_dump(widened), encoding="utf-8")
    refused = kubetune(cli_env, tmp_path, "run", str(parent))
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "kubetune fork" in refused.stderr
    parent.write_text(yaml.safe_dump(PARENT), encoding="utf-8")

    forked = kubetune(
        cli_env,
        tmp_path,
        "fork",
        str(parent),
        "--set",
        "searchSpace.x.high=10",
        "--set",
        "sampler={name: random, seed: 3}",
        "-o",
        "wide.yaml",
    )
    assert forked.returncode == 0, forked.stdout + forked.stderr
    assert "copies 10 finished trial(s)" in forked.stderr
    wide = yaml.safe_load((tmp_path / "wide.yaml").read_text())
    assert wide["metadata"]["name"] == "narrow-fork"
    assert wide["spec"]["forkFrom"]["study"] == "narrow"
    assert wide["spec"]["searchSpace"]["x"]["high"] == 10
    assert wide["spec"]["budget"]["maxTrials"] == 20  # 10 copied + the parent's 10 new

    continued = kubetune(cli_env, tmp_path, "run", "wide.yaml")
    assert continued.returncode == 0, continued.stdout + continued.stderr
    assert "forked from narrow: copied 10 finished trial(s)" in continued.stdout

    study = optuna.load_study(study_name="narrow-fork", storage=storage_url)
    trials = study.get_trials()
    copied = [t for t in trials if FORKED_FROM_ATTR in t.user_attrs]
    new = [t for t in trials if FORKED_FROM_ATTR not in t.user_attrs]
    assert len(copied) == 10 and len(new) == 10
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # The new trials search the wider range the parent could not.
    assert max(t.params["x"] for t in new) > 1
    assert max(t.params["x"] for t in copied) <= 1

    # Running it again neither copies again nor runs more: its budget is spent.
    again = kubetune(cli_env, tmp_path, "run", "wide.yaml")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(optuna.load_study(study_name="narrow-fork", storage=storage_url).trials) == 20


def test_fork_says_what_it_leaves_out(
    cli_env: dict[str, str], tmp_path: Path, storage_url: str
) -> None:
    parent = tmp_path / "narrow.yaml"
    parent.write_text(yaml.safe_dump(PARENT), encoding="utf-8")
    assert kubetune(cli_env, tmp_path, "run", str(parent)).returncode == 0
    study = optuna.load_study(study_name="narrow", storage=storage_url)
    inside = sum(1 for t in study.trials if t.params["x"] >= 0)

    forked = kubetune(cli_env, tmp_path, "fork", str(parent), "--set", "searchSpace.x.low=0")
    assert forked.returncode == 0, forked.stderr
    assert f"copies {inside} finished trial(s), leaves out {10 - inside}" in forked.stderr
    printed = yaml.safe_load(forked.stdout)
    assert printed["spec"]["searchSpace"]["x"]["low"] == 0

    added = kubetune(
        cli_env,
        tmp_path,
        "fork",
        str(parent),
        "--set",
        "searchSpace.z={type: int, low: 1, high: 5}",
        "--default",
        "z=2",
    )
    assert added.returncode == 0, added.stderr
    assert yaml.safe_load(added.stdout)["spec"]["forkFrom"] == {
        "study": "narrow",
        "defaults": {"z": 2},
    }
    assert "copies 10 finished trial(s)" in added.stderr

    bad = kubetune(cli_env, tmp_path, "fork", str(parent), "--set", "searchSpace.x.high=-20")
    assert bad.returncode == 2
    assert "spec.searchSpace.x.high: must be >= low" in bad.stderr


def test_client_fork_from_a_plain_script(cli_env: dict[str, str], tmp_path: Path) -> None:
    parent = tmp_path / "narrow.yaml"
    parent.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    assert kubetune(cli_env, tmp_path, "run", str(parent)).returncode == 0
    script = tmp_path / "fork_it.py"
    script.write_text(
        "import kubetune\n"
        "client = kubetune.Client()\n"
        "wide = client.fork('narrow.yaml', ['searchSpace.x.high=10'], name='wider',\n"
        "                   defaults=None)\n"
        "print(wide.metadata.name, wide.spec.fork_from.study, wide.spec.budget.max_trials,\n"
        "      wide.spec.search_space['x'].high)\n"
        "client.close()\n",
        encoding="utf-8",
    )
    ran = python_script(cli_env, tmp_path, str(script))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.split() == ["wider", "narrow", "20", "10.0"]
