"""Issue 16.2 in a cluster: ``kubetune run script.py --cluster --wait`` and its SDK
equivalent ``Client.tune_script(script, wait=True)`` through the real operator (a
``kopf run`` against the emulated API server, trial pods run by the fake kubelet).

The script is an unchanged Optuna script with a sibling module it imports. It is shipped
in the Study's code ConfigMap; the trial pods import it and run its objective, never its
own in-memory study; the study ends with the script's n_trials; then the script's code
after ``optimize`` runs once, here, against the finished cluster study. The Study's status
and one Event say the pods' import stopped at the script's own ``study.optimize``, which
``kubectl describe`` shows. The script's ``study.optimize`` callback runs in the pods,
after each of their trials."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from harness.studies import TRIAL_IMAGE
from kubetune.engine.recovery import WORKER_ATTR
from kubetune_cli import kubetune
from tune_cluster import code_mount_turn

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.slow(seconds=80)]

KUBECTL = Path(sys.executable).parent / "kubectl"
NOTE = "cluster_tune.py calls study.optimize at import; kubetune runs the trials instead"

SCRIPT = """\
import optuna
from cluster_helpers import shift


def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    # Which study ran it: kubetune's trials carry their pod's name, the script's own none.
    print("OBJECTIVE RAN FOR", trial.user_attrs.get("kubetune.worker"), flush=True)
    return (x - shift()) ** 2


def report(study, trial):
    print("CALLBACK AFTER", trial.number, trial.state.name, flush=True)


study = optuna.create_study(
    study_name="cluster tune", sampler=optuna.samplers.RandomSampler(seed=3)
)
study.optimize(objective, n_trials=6, n_jobs=2, callbacks=[report])
print("AFTER OPTIMIZE", study.study_name, len(study.trials), study.best_params, flush=True)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "cluster_tune.py").write_text(SCRIPT, encoding="utf-8")
    (folder / "cluster_helpers.py").write_text("def shift():\n    return 2.0\n")
    return folder


def pod_logs(cluster: Any) -> str:
    return "\n".join(p.read_text(errors="replace") for p in cluster.kubelet.log_dir.glob("*.log"))


def test_run_script_cluster_and_tune_script_through_the_operator(
    cluster: Any, client: Any, kube: Any, kubeconfig: Path, emulator_server: Any, project: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    with code_mount_turn():
        cluster.start()
        run_script_cluster(cluster, client, kube, kubeconfig, project)
        kubectl_describe_shows_the_note(emulator_server, tmp_path)
        tune_script_sdk(cluster, client, project, capsys)


def run_script_cluster(
    cluster: Any, client: Any, kube: Any, kubeconfig: Path, project: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBETUNE_STORAGE_URL")}
    done = kubetune(
        env, project, "run", "cluster_tune.py", "--cluster", "--kubeconfig", str(kubeconfig),
        "--image", f"{TRIAL_IMAGE}:test", "--wait", timeout=240,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output + pod_logs(cluster)

    study = kube.get("studies", "cluster-tune")
    assert study["status"]["phase"] == "Succeeded"
    assert study["status"]["trials"]["complete"] == 6  # n_trials became maxTrials
    assert study["spec"]["budget"]["parallelism"] == 2  # n_jobs became parallelism
    configmap = kube.get("configmaps", "cluster-tune-code")
    assert set(configmap["data"]) == {"cluster_tune.py", "cluster_helpers.py"}

    distributed = client.optuna_study("cluster-tune")
    trials = distributed.trials
    assert len(trials) == 6
    pods = {t.user_attrs[WORKER_ATTR] for t in trials}
    assert all(pod.startswith("cluster-tune-trial-") for pod in pods), pods

    # The code after optimize ran once, here, with the distributed study's results.
    (after,) = [line for line in output.splitlines() if line.startswith("AFTER OPTIMIZE")]
    assert after == f"AFTER OPTIMIZE {distributed.study_name} 6 {distributed.best_params}"
    # The pods ran kubetune's six trials and nothing of the script's own study, nor
    # the code after optimize.
    logs = pod_logs(cluster)
    ran = re.findall(r"^OBJECTIVE RAN FOR (\S+)$", logs, re.MULTILINE)
    assert len(ran) == 6 and set(ran) == pods, logs
    assert "AFTER OPTIMIZE" not in logs
    assert NOTE in logs
    # The script's callback ran in the pods, once after each of their trials.
    called = re.findall(r"^CALLBACK AFTER (\d+) (\w+)$", logs, re.MULTILINE)
    assert sorted(called) == sorted((str(t.number), "COMPLETE") for t in trials), logs

    # The operator said it in the status and in one Event.
    conditions = {c["type"]: c for c in study["status"]["conditions"]}
    noted = conditions["ScriptStudyIntercepted"]
    assert (noted["status"], noted["reason"], noted["message"]) == (
        "True",
        "OptimizeAtImport",
        NOTE,
    )
    events = [
        e
        for e in kube.list("events")
        if e.get("reason") == "OptimizeAtImport" and e["involvedObject"]["name"] == "cluster-tune"
    ]
    assert [e["message"] for e in events] == [NOTE]


def kubectl_describe_shows_the_note(emulator_server: Any, tmp_path: Path) -> None:
    admin = emulator_server.write_kubeconfig(tmp_path / "admin.kubeconfig", https=True)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["KUBECACHEDIR"] = str(tmp_path / "kube-cache")
    described = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(admin), "describe", "study", "cluster-tune"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert described.returncode == 0, described.stderr
    text = described.stdout
    status, events = text.split("\nEvents:", 1)
    assert re.search(r"Type:\s+ScriptStudyIntercepted", status), text
    assert NOTE in status and re.search(rf"Normal\s+OptimizeAtImport\s+.*{NOTE}", events), text


def tune_script_sdk(
    cluster: Any, client: Any, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same script from Python, under another name and a budget of 3: the script's
    rest runs in this process once the cluster study is done."""
    capsys.readouterr()
    tuned = client.tune_script(
        project / "cluster_tune.py",
        name="sdk-cluster-tune",
        max_trials=3,
        image=f"{TRIAL_IMAGE}:test",
        wait=True,
        wait_timeout=180,
        progress=False,
        best_params_file=project / "sdk_best.json",
    )
    assert tuned.metadata.name == "sdk-cluster-tune"
    assert tuned.status is not None and tuned.status.phase == "Succeeded"
    distributed = client.optuna_study("sdk-cluster-tune")
    assert len(distributed.trials) == 3
    assert tuned.best_params == distributed.best_params
    out = capsys.readouterr().out
    # Its own Optuna study, not the first Study's (the script's study_name named that one).
    assert distributed.study_name != client.optuna_study("cluster-tune").study_name
    assert f"AFTER OPTIMIZE {distributed.study_name} 3 {distributed.best_params}" in out
    # Optuna is itself again afterwards: a plain study runs here.
    plain = optuna.create_study()
    plain.optimize(lambda t: t.suggest_float("y", 0, 1), n_trials=1)
    assert len(plain.trials) == 1
