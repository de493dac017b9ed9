"""The operator with spec.verify (FakeKube, a real PostgreSQL): once the budget is spent,
the study stays Running with the condition Verifying while trial pods run the repeats of
its best trials (the study <name>.verify), status.verified shows their means, and it
succeeds with the winner on the verified mean in the best-params ConfigMap."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import optuna
from kubetune.engine.verify import REPEAT_ATTR, REPEAT_OF_ATTR
from test_reconciler_rules import Study


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    container = pod["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_the_operator_runs_the_repeats_in_pods_and_chooses_the_verified_winner(
    make: Callable[..., Study],
) -> None:
    study = make(budget={"maxTrials": 3, "parallelism": 1}, verify={"top": 2, "repeats": 2})
    for value in (1.0, 0.5, 2.0):  # trial 1 is the lucky one
        study.tick()
        (pod,) = study.live_pods()
        study.complete(study.claim(pod), value)
        study.exit(pod)

    assert study.tick() is False  # the budget is spent: verifying, not Succeeded
    assert study.status["phase"] == "Running"
    verifying = study.condition("Verifying")
    assert verifying["status"] == "True" and verifying["reason"] == "MaxTrialsReached"
    assert [row["repeats"] for row in study.status["verified"]["trials"]] == [0, 0]
    assert study.status["bestTrial"]["number"] == 1

    repeats_name = study.status["studyName"] + ".verify"
    repeats = optuna.load_study(study_name=repeats_name, storage=study.url)
    by_trial = {0: [1.1, 0.9], 1: [3.0, 3.2]}  # the lucky trial's repeats are worse
    for _ in range(4):
        (pod,) = study.live_pods()
        assert env_of(pod)["KUBETUNE_STUDY_NAME"] == repeats_name
        trial = repeats.ask()  # the pod's worker: the queued repeat, parameters fixed
        trial.suggest_float("x", -10, 10)
        trial.set_user_attr("kubetune.worker", pod["metadata"]["name"])
        of, repeat = trial.user_attrs[REPEAT_OF_ATTR], trial.user_attrs[REPEAT_ATTR]
        assert trial.params == study.optuna.trials[of].params
        repeats.tell(trial, by_trial[of][repeat - 1])
        study.exit(pod)
        finished = study.tick()
    assert finished is True

    status = study.status
    assert status["phase"] == "Succeeded"
    complete = study.condition("Complete")
    assert complete["reason"] == "MaxTrialsReached"
    assert "verified winner: trial 0, mean 1 [" in complete["message"]
    assert study.condition("Verifying")["status"] == "False"
    verified = status["verified"]
    assert verified["winner"] == 0 and verified["done"] is True
    assert [row["number"] for row in verified["trials"]] == [0, 1]
    assert status["bestTrial"]["number"] == 1  # the best single value, shown as it is
    assert status["trials"]["complete"] == 3  # repeats are not the study's trials
    (params,) = study.fake.configmaps.values()
    assert json.loads(params["best_params.json"]) == study.optuna.trials[0].params
    assert study.live_pods() == []
