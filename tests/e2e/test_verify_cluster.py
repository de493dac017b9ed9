"""spec.verify on a cluster: the real operator runs the repeats of the best trials in
trial pods (the fake kubelet runs them as processes of the trial runner) before the
Study succeeds, with the winner on the verified mean."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from kubetune.engine.verify import REPEAT_ATTR, REPEAT_OF_ATTR
from scenario import create, optuna_study, spec, status, wait_phase
from test_readme_claims import kubetune  # the CLI as a user runs it, on this cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_a_study_with_spec_verify_succeeds_after_its_repeats_ran_in_pods(
    cluster: Any, kube: Any, kubeconfig: Path, storage_url: str, tmp_path: Path
) -> None:
    cluster.start()
    noisy = spec(
        "quadratic",
        budget={"maxTrials": 8, "parallelism": 2},
        trial={"python": "examples.objectives.noisy:objective"},
        verify={"top": 2, "repeats": 3},
    )
    noisy["searchSpace"] = {
        "model": {"type": "categorical", "choices": ["steady", "jumpy"]},
        "width": {"type": "int", "low": 1, "high": 2},
    }
    create(kube, "noisy", noisy)
    final = wait_phase(kube, "noisy", "Succeeded", timeout=180)

    study = optuna_study(kube, storage_url, "noisy")
    assert len(study.trials) == 8  # the repeats are not the study's trials
    repeats = optuna.load_study(study_name=study.study_name + ".verify", storage=storage_url)
    pairs = Counter(
        (t.user_attrs[REPEAT_OF_ATTR], t.user_attrs[REPEAT_ATTR]) for t in repeats.trials
    )
    assert len(pairs) == 6 and set(pairs.values()) == {1}
    assert all(t.state.name == "COMPLETE" for t in repeats.trials)
    assert all(str(t.user_attrs["kubetune.worker"]).startswith("noisy-") for t in repeats.trials)

    verified = final["verified"]
    assert verified["done"] is True and len(verified["trials"]) == 2
    assert all(row["repeats"] == 3 for row in verified["trials"])
    means = [row["mean"] for row in verified["trials"]]
    assert means == sorted(means) and verified["winner"] == verified["trials"][0]["number"]
    complete = next(c for c in final["conditions"] if c["type"] == "Complete")
    assert complete["reason"] == "MaxTrialsReached"
    assert f"verified winner: trial {verified['winner']}" in complete["message"]
    winner = study.trials[verified["winner"]]
    configmap = kube.get("configmaps", "noisy-best-params", "default")
    assert json.loads(configmap["data"]["best_params.json"]) == winner.params

    # kubetune verify of the finished Study asks for more: the operator runs only the
    # repeats not run yet, in pods, and the Study succeeds again.
    written = str(tmp_path / "b.json")
    more = kubetune(kubeconfig, "verify", "noisy", "--top", "3", "--repeats", "3", "-o", written)
    assert more.returncode == 0, more.stdout + more.stderr
    assert "winner on the verified mean" in more.stdout
    again = status(kube, "noisy")
    assert again["phase"] == "Succeeded"
    assert (again["verified"]["top"], again["verified"]["repeats"]) == (3, 3)
    rows = again["verified"]["trials"]
    repeats = optuna.load_study(study_name=study.study_name + ".verify", storage=storage_url)
    assert len(repeats.trials) == 3 * len(rows) and len(rows) >= 2
    assert json.loads((tmp_path / "b.json").read_text()) == (
        study.trials[again["verified"]["winner"]].params
    )
    described = kubetune(kubeconfig, "describe", "noisy")
    assert described.returncode == 0, described.stderr
    assert f"winner #{again['verified']['winner']}" in described.stdout
