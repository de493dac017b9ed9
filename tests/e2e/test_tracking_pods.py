"""``spec.tracking`` from trial pods: each pod's runner sends its trials to MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scenario import create, optuna_study, spec, wait_phase

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_trial_pods_send_each_trial_to_mlflow(
    cluster: Any, kube: Any, storage_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    cluster.start()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # a tracking server's stand-in, pods share it
    tracked = spec("reports_steps", budget={"maxTrials": 4, "parallelism": 2})
    tracked["tracking"] = {"mlflow": {"trackingUri": uri}}
    create(kube, "tracked", tracked)
    final = wait_phase(kube, "tracked", "Succeeded")
    assert final["trials"]["complete"] + final["trials"]["pruned"] == 4
    study = optuna_study(kube, storage_url, "tracked")

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tracked")  # named after the Study
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == sorted(
        f"tracked-trial-{t.number}" for t in study.trials
    )
    for run in runs:
        tags = run.data.tags
        trial = study.trials[int(tags["kubetune.trial"])]
        assert tags["kubetune.study"] == "tracked"
        assert tags["kubetune.namespace"] == "default"
        assert tags["kubetune.optuna_study"] == study.study_name
        assert tags["kubetune.worker"] == trial.user_attrs["kubetune.worker"]  # its pod
        assert tags["kubetune.worker"].startswith("tracked-")
        history = client.get_metric_history(run.info.run_id, "intermediate_value")
        assert {m.step: m.value for m in history} == pytest.approx(trial.intermediate_values)
        assert history


def test_trial_pods_send_each_trial_to_wandb_offline(
    cluster: Any, kube: Any, storage_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("wandb")
    cluster.start()
    tracked = spec("reports_steps", budget={"maxTrials": 3, "parallelism": 2})
    tracked["tracking"] = {"wandb": {"project": "kubetune-e2e"}}
    # As a user gives pods W&B settings: the trial's env (an API key from a Secret online).
    tracked["trial"]["env"] = [
        {"name": "WANDB_MODE", "value": "offline"},
        {"name": "WANDB_DIR", "value": str(tmp_path)},
    ]
    create(kube, "tracked-wandb", tracked)
    wait_phase(kube, "tracked-wandb", "Succeeded")
    study = optuna_study(kube, storage_url, "tracked-wandb")
    logs = sorted((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == len(study.trials) == 3
    # Each run's transaction log names its trial's run and carries the Study's tags.
    names = {t.number: f"tracked-wandb-trial-{t.number}".encode() for t in study.trials}
    contents = [log.read_bytes() for log in logs]
    for number, name in names.items():
        (found,) = [c for c in contents if f"kubetune.trial={number}".encode() in c]
        assert b"kubetune.study=tracked-wandb" in found
        # The run's name as the protobuf string it is, its length first: the worker tag
        # names the pod, tracked-wandb-trial-<suffix>, which can start like a run name.
        assert bytes([len(name)]) + name in found
