"""A winner you can trust (spec.verify, kubetune verify) in local mode, as a user runs it:
the CLI in a subprocess, worker processes of the trial runner, the real PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from kubetune.engine.verify import REPEAT_ATTR, REPEAT_OF_ATTR, VERIFIED_ATTR
from optuna.trial import TrialState

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
#: The example as it is: 20 noisy trials, then the best 3 re-run 5 times each.
EXAMPLE = REPO / "examples" / "verify-noisy.yaml"
STUDY: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
MAX_TRIALS = STUDY["spec"]["budget"]["maxTrials"]


def kubetune(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetune.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=200,
    )


@pytest.fixture
def cli_env(worker_env: dict[str, str]) -> dict[str, str]:
    return {**worker_env, "COLUMNS": "200"}  # KUBETUNE_STORAGE_URL: the test's PostgreSQL


def trials_of(storage_url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage_url).get_trials()


def test_the_verified_winner_is_the_best_mean_not_the_lucky_best_trial(
    cli_env: dict[str, str], tmp_path: Path, storage_url: str
) -> None:
    study_file = tmp_path / "verify-noisy.yaml"
    study_file.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    # One worker: the random sampler's points come in one order, so the lucky trial is known.
    ran = kubetune(cli_env, tmp_path, "run", str(study_file), "-p", "1")
    assert ran.returncode == 0, ran.stdout + ran.stderr

    own = trials_of(storage_url, "noisy")
    # The repeats count against no budget: the study has exactly its maxTrials trials.
    assert len(own) == MAX_TRIALS
    assert all(REPEAT_ATTR not in t.user_attrs for t in own)
    best = min((t for t in own if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert best.params["model"] == "jumpy"  # lucky: jumpy scores 1.3 on average

    repeats = trials_of(storage_url, "noisy.verify")
    top, times = STUDY["spec"]["verify"]["top"], STUDY["spec"]["verify"]["repeats"]
    assert len(repeats) == top * times
    assert all(t.state == TrialState.COMPLETE for t in repeats)
    # Each repeat once: every (trial, repeat) pair, with the trial's own parameters.
    pairs = Counter((t.user_attrs[REPEAT_OF_ATTR], t.user_attrs[REPEAT_ATTR]) for t in repeats)
    assert set(pairs.values()) == {1}
    assert {repeat for _, repeat in pairs} == set(range(1, times + 1))
    by_number = {t.number: t for t in own}
    for repeat in repeats:
        assert repeat.params == by_number[repeat.user_attrs[REPEAT_OF_ATTR]].params
    assert best.number in {of for of, _ in pairs}
    # Other seeds: a repeat's value is a new draw, not the trial's own value again.
    assert {t.value for t in repeats if t.user_attrs[REPEAT_OF_ATTR] == best.number}.isdisjoint(
        {best.value}
    )

    study = optuna.load_study(study_name="noisy", storage=storage_url)
    verified = study._storage.get_study_system_attrs(study._study_id)[VERIFIED_ATTR]
    assert verified["done"] is True
    winner = by_number[verified["winner"]]
    assert winner.number != best.number and winner.params["model"] == "steady"
    rows = {row["number"]: row for row in verified["trials"]}
    assert rows[winner.number]["mean"] < rows[best.number]["mean"]
    for row in rows.values():
        assert row["repeats"] == times and row["low"] < row["mean"] < row["high"]
    # What a training script reads next: the winner's parameters, not the lucky trial's.
    written = json.loads((tmp_path / "best_params.json").read_text(encoding="utf-8"))
    assert written == winner.params
    assert f"winner on the verified mean: trial {winner.number}, not the best single" in (
        ran.stdout
    )
    assert "95% interval" in ran.stdout
    # The repeats have a progress line of their own, after the study's; a repeat's value
    # is never announced as a new best.
    after_study = ran.stdout.split("verifying the best", 1)[1]
    assert re.search(
        rf"noisy verification .*{top * times}/{top * times} {top * times} complete", after_study
    ), ran.stdout
    assert "new best" not in after_study, ran.stdout


def test_kubetune_verify_re_runs_the_best_trials_of_a_finished_study(
    cli_env: dict[str, str], tmp_path: Path, storage_url: str
) -> None:
    document = {**STUDY, "spec": {k: v for k, v in STUDY["spec"].items() if k != "verify"}}
    study_file = tmp_path / "noisy.yaml"
    study_file.write_text(yaml.safe_dump(document), encoding="utf-8")
    ran = kubetune(cli_env, tmp_path, "run", str(study_file), "-p", "1")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Verified" not in ran.stdout  # no spec.verify: no repeats
    lucky = json.loads((tmp_path / "best_params.json").read_text(encoding="utf-8"))
    assert lucky["model"] == "jumpy"

    verified = kubetune(
        cli_env, tmp_path, "verify", str(study_file), "--top", "2", "--repeats", "3"
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "6 to run, 0 ran before" in verified.stderr
    assert re.search(r"noisy verification .*6/6 6 complete", verified.stderr), verified.stderr
    assert "new best" not in verified.stderr and "[I " not in verified.stderr, verified.stderr
    assert len(trials_of(storage_url, "noisy.verify")) == 6
    winner = json.loads((tmp_path / "best_params.json").read_text(encoding="utf-8"))
    assert winner["model"] == "steady"

    # Asked for more later: only the repeats not run yet run; the study is untouched.
    more = kubetune(cli_env, tmp_path, "verify", str(study_file), "--top", "3", "--repeats", "3")
    assert more.returncode == 0, more.stdout + more.stderr
    assert "3 to run, 6 ran before" in more.stderr
    assert len(trials_of(storage_url, "noisy.verify")) == 9
    assert len(trials_of(storage_url, "noisy")) == MAX_TRIALS
    assert "winner on the verified mean" in more.stdout

    # From Python, the same summary (nothing left to run).
    from kubetune import Client

    with Client(storage_url=storage_url) as client:
        summary = client.verify(study_file, top=3, repeats=3)
    assert summary.done and len(summary.trials) == 3
    assert {row.number: row.params for row in summary.trials}[summary.winner] == winner

    # kubetune best of the study: the verified winner too.
    best = kubetune(cli_env, tmp_path, "best", str(study_file), "-o", "json", "-f", "b.json")
    assert best.returncode == 0, best.stdout + best.stderr
    assert json.loads(best.stdout) == winner

    # Deleting the study deletes its repeats: a new run does not find them.
    deleted = kubetune(cli_env, tmp_path, "delete", str(study_file))
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    held = {s.study_name for s in optuna.get_all_study_summaries(storage=storage_url)}
    assert held.isdisjoint({"noisy", "noisy.verify"})


def test_bad_verify_input_names_the_field(cli_env: dict[str, str], tmp_path: Path) -> None:
    for verify, field in (({"top": 0, "repeats": 5}, "top"), ({"top": 3, "repeats": 1}, "repeats")):
        study_file = tmp_path / "bad.yaml"
        study_file.write_text(
            yaml.safe_dump({**STUDY, "spec": {**STUDY["spec"], "verify": verify}}),
            encoding="utf-8",
        )
        refused = kubetune(cli_env, tmp_path, "run", str(study_file))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"spec.verify.{field}" in refused.stderr
    for option, value in (("--top", "0"), ("--repeats", "1")):
        refused = kubetune(cli_env, tmp_path, "verify", str(EXAMPLE), option, value)
        assert refused.returncode == 2
        assert option in refused.stderr


def test_verifying_a_study_that_never_ran_says_so(cli_env: dict[str, str], tmp_path: Path) -> None:
    study_file = tmp_path / "noisy.yaml"
    study_file.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    refused = kubetune(cli_env, tmp_path, "verify", str(study_file))
    assert refused.returncode != 0
    assert "run it first" in refused.stderr


def test_a_command_objective_reads_its_repeat_and_seed_from_its_environment(
    cli_env: dict[str, str], tmp_path: Path, storage_url: str
) -> None:
    # The program's score is x plus its seed: the study's trials run with seed 0, each
    # repeat with its own (1, 2), so the repeats' values tell which seed each one got.
    program = (
        "import os, sys; x = float(sys.argv[1]); "
        "print(f\"score={x + int(os.environ['KUBETUNE_SEED'])} "
        "repeat={os.environ['KUBETUNE_REPEAT']}\")"
    )
    document = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "seeded"},
        "spec": {
            "objective": {"direction": "minimize", "metric": "score"},
            "searchSpace": {"x": {"type": "float", "low": 0, "high": 1}},
            "sampler": {"name": "random", "seed": 0},
            "budget": {"maxTrials": 3},
            "verify": {"top": 1, "repeats": 2},
            "trial": {"command": [sys.executable, "-c", program, "{x}"]},
        },
    }
    study_file = tmp_path / "seeded.yaml"
    study_file.write_text(yaml.safe_dump(document), encoding="utf-8")
    ran = kubetune(cli_env, tmp_path, "run", str(study_file))
    assert ran.returncode == 0, ran.stdout + ran.stderr

    best = min(trials_of(storage_url, "seeded"), key=lambda t: t.value)
    assert best.value == pytest.approx(best.params["x"])  # seed 0
    repeats = trials_of(storage_url, "seeded.verify")
    got = sorted(round(t.value - best.params["x"], 6) for t in repeats)
    assert got == [1.0, 2.0]
