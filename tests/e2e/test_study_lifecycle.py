"""A Study on the emulated cluster, from kubectl apply to Succeeded."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from scenario import study_document

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

QUADRATIC: dict[str, Any] = {
    "objective": {"direction": "minimize"},
    "sampler": {"name": "tpe", "seed": 0},
    "budget": {"maxTrials": 6, "parallelism": 2},
    "trial": {"python": "kt_test_objectives:quadratic", "image": "ghcr.io/kubetune/trial:test"},
}


def phase(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda study: (study.get("status") or {}).get("phase") == name


def test_study_runs_to_succeeded_with_best_params(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    cluster.start()
    kube.create("studies", study_document("quad", QUADRATIC), "default")
    study = kube.wait_for_object("studies", "quad", phase("Succeeded"), "default", timeout=120)
    status = study["status"]
    assert status["trials"]["complete"] == 6
    assert status["progress"] == "6/6"
    assert status["studyName"] == f"default.quad.{study['metadata']['uid']}"
    assert status["completionTime"]
    optuna_study = optuna.load_study(study_name=status["studyName"], storage=storage_url)
    assert len(optuna_study.trials) == 6
    assert all(t.state == TrialState.COMPLETE for t in optuna_study.trials)
    assert status["bestTrial"]["number"] == optuna_study.best_trial.number
    assert status["bestTrial"]["params"] == optuna_study.best_params
    assert status["bestTrial"]["value"] == pytest.approx(optuna_study.best_value)
    configmap = kube.get("configmaps", "quad-best-params", "default")
    assert json.loads(configmap["data"]["best_params.json"]) == optuna_study.best_params
    workers = {t.user_attrs["kubetune.worker"] for t in optuna_study.trials}
    assert all(w.startswith("quad-trial-") for w in workers)
    kube.wait_for(lambda: not kube.list("pods", "default"), timeout=30)
    events = kube.list("events", "default")
    assert any(e.get("reason") == "NewBestTrial" for e in events)
