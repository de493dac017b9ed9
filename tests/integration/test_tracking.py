"""``spec.tracking``: every trial sent to MLflow (a local sqlite tracking store) or
W&B (offline), from the trial runner, as ``kubetune run`` runs the examples."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from kubetune_cli import kubetune

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]


def test_mlflow_gets_one_run_per_trial_with_steps(
    worker_env: dict[str, str], tmp_path: Path, storage_url: str
) -> None:
    pytest.importorskip("mlflow")
    import mlflow
    from mlflow.tracking import MlflowClient

    # The example as it is, from a folder of its own: its sqlite:///mlflow.db lands there.
    ran = kubetune(worker_env, tmp_path, "run", str(REPO / "examples/tracking-mlflow.yaml"))
    assert ran.returncode == 0, ran.stdout + ran.stderr

    study = optuna.load_study(study_name="curve-mlflow", storage=storage_url)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["curve"], output_format="list")
    assert len(runs) == len(study.trials) == 12
    by_number = {int(run.data.tags["kubetune.trial"]): run for run in runs}
    assert set(by_number) == {t.number for t in study.trials}
    client = MlflowClient(tracking_uri=uri)
    for trial in study.trials:
        run = by_number[trial.number]
        assert run.info.run_name == f"curve-mlflow-trial-{trial.number}"
        assert run.data.tags["kubetune.study"] == "curve-mlflow"
        assert run.data.tags["kubetune.state"] == trial.state.name
        assert float(run.data.params["lr"]) == pytest.approx(trial.params["lr"])
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert run.data.metrics["loss"] == pytest.approx(trial.value)
        history = client.get_metric_history(run.info.run_id, "intermediate_value")
        assert {m.step: m.value for m in history} == pytest.approx(trial.intermediate_values)
    assert any(len(t.intermediate_values) == 10 for t in study.trials)


def test_a_missing_tracking_package_is_named_with_its_extra(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    # A folder on PYTHONPATH where `import mlflow` fails, as where it is not installed.
    hidden = tmp_path / "hide"
    (hidden / "mlflow").mkdir(parents=True)
    (hidden / "mlflow" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'mlflow'\", name='mlflow')\n"
    )
    env = {**worker_env, "PYTHONPATH": os.pathsep.join([str(hidden), worker_env["PYTHONPATH"]])}
    study = yaml.safe_load((REPO / "examples/tracking-mlflow.yaml").read_text())
    study["metadata"]["name"] = "no-mlflow"
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    ran = kubetune(env, tmp_path, "run", str(path))
    assert ran.returncode == 3, ran.stdout + ran.stderr
    assert "spec.tracking.mlflow: the mlflow package is not installed" in ran.stderr
    assert "pip install 'kubetune[mlflow]'" in ran.stderr


def wandb_records(path: Path) -> list[Any]:
    """The records of an offline W&B run's ``.wandb`` file (a LevelDB-style log of
    protobuf records: 32 KiB blocks, each record a 7-byte header and a chunk)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, chunk, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if length == 0 and kind == 0:  # padding to the block's end
            pos += left - 7
            continue
        chunk += data[pos : pos + length]
        pos += length
        if kind in (1, 4):  # a full record, or a record's last chunk
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def test_wandb_offline_gets_one_run_per_trial_with_steps(
    worker_env: dict[str, str], tmp_path: Path, storage_url: str
) -> None:
    pytest.importorskip("wandb")
    env = {**worker_env, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    ran = kubetune(env, tmp_path, "run", str(REPO / "examples/tracking-wandb.yaml"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    study = optuna.load_study(study_name="curve-wandb", storage=storage_url)
    files = sorted((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == len(study.trials) == 6
    seen = {}
    for file in files:
        records = wandb_records(file)
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        tags = dict(tag.split("=", 1) for tag in run.tags)
        number = int(tags["kubetune.trial"])
        steps = {}
        for record in records:
            if record.WhichOneof("record_type") == "history":
                items = {i.nested_key[0]: json.loads(i.value_json) for i in record.history.item}
                steps[items["_step"]] = items["intermediate_value"]
        summary = {}
        for record in records:
            if record.WhichOneof("record_type") == "summary":
                for update in record.summary.update:
                    summary[update.key or update.nested_key[0]] = json.loads(update.value_json)
        seen[number] = (run, tags, steps, summary)
    assert set(seen) == {t.number for t in study.trials}
    for trial in study.trials:
        run, tags, steps, summary = seen[trial.number]
        assert run.display_name == f"curve-wandb-trial-{trial.number}"
        assert run.project == "kubetune-examples" and run.run_group == "curve-wandb"
        assert tags["kubetune.study"] == "curve-wandb"
        assert tags["kubetune.state"] == trial.state.name
        assert steps == pytest.approx(trial.intermediate_values)
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert summary["loss"] == pytest.approx(trial.value)
