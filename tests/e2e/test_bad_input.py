"""Bad input to the operator (issue 7, point 3): each bad Study gets a status
condition that names what to fix, the operator keeps running, and the other
studies proceed. And a database password appears nowhere the operator, the pods
or the API server show.

The command-line side is in ``tests/badinput/``. The reconciler's rules for invalid
specs (each message naming the field, names and labels too long for Kubernetes) are
unit tests: tests/unit/test_reconciler_rules.py.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from harness.apiserver import ApiError
from kubetune.engine.storage import open_storage
from optuna.trial import TrialState
from scenario import IMAGE, condition, create, live_pods, spec, status, wait_phase, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

BADINPUT_SUPPORT = Path(__file__).resolve().parents[1] / "badinput" / "support"
INTEGRATION_SUPPORT = Path(__file__).resolve().parents[1] / "integration" / "support"
REPO = Path(__file__).resolve().parents[2]
#: Trial pods that need the bad-input objectives get this PYTHONPATH.
#: The tests' own PYTHONPATH stays after them, so the pods import the code under test.
POD_PYTHONPATH = os.pathsep.join(
    p
    for p in (
        *map(str, (BADINPUT_SUPPORT, INTEGRATION_SUPPORT, REPO)),
        os.environ.get("PYTHONPATH"),
    )
    if p
)


def command_spec(argv: list[str], **changes: Any) -> dict[str, Any]:
    """A study whose trials run ``argv`` and read the metric ``loss``."""
    base = spec("quadratic", **changes)
    base["objective"] = {"direction": "minimize", "metric": "loss"}
    base["trial"] = {**base["trial"], "command": argv}
    del base["trial"]["python"]
    return base


def failed_condition(kube: Any, name: str, timeout: float = 60) -> dict[str, Any]:
    """The ``Failed`` condition of a study, once its phase is Failed."""
    final = wait_phase(kube, name, "Failed", timeout=timeout)
    return condition(final, "Failed")


def test_invalid_studies_fail_with_the_field_and_the_others_proceed(
    cluster: Any, kube: Any
) -> None:
    cluster.start()
    # What the CRD's schema can say, the API server refuses at once (422, naming the
    # field), as a real cluster does: no Study is made.
    refused: dict[str, tuple[dict[str, Any], str]] = {
        "wrong-type": (spec("quadratic", budget={"maxTrials": "ten"}), "spec.budget.maxTrials"),
        "unknown-sampler": (spec("quadratic", sampler={"name": "hyperopt"}), "spec.sampler.name"),
        "unknown-pruner": (spec("quadratic", pruner={"name": "asha"}), "spec.pruner.name"),
    }
    for name, (bad_spec, field) in refused.items():
        with pytest.raises(ApiError) as error:
            create(kube, name, bad_spec)
        assert error.value.status == 422, (name, error.value)
        assert field in str(error.value), (name, str(error.value))
        assert kube.get("studies", name, missing_ok=True) is None
    # What only kubetune knows, the operator says: the Study fails naming the field.
    invalid: dict[str, tuple[dict[str, Any], str]] = {
        "bad-range": (
            spec(
                "quadratic",
                searchSpace={"x": {"type": "float", "low": 3, "high": 1}},
            ),
            "spec.searchSpace.x.high: must be >= low (3.0)",
        ),
        "unknown-sampler-arg": (
            spec("quadratic", sampler={"name": "tpe", "args": {"n_startup": 3}}),
            "spec.sampler.args.n_startup: TPESampler has no argument 'n_startup'",
        ),
        "huge-choices": (
            spec(
                "quadratic",
                searchSpace={
                    "c": {"type": "categorical", "choices": [f"c{i}" for i in range(1001)]}
                },
            ),
            "spec.searchSpace.c.choices: has 1001 choices; at most 1000 are allowed",
        ),
    }
    for name, (bad_spec, _) in invalid.items():
        create(kube, name, bad_spec)
    create(kube, "good", spec("quadratic", budget={"maxTrials": 2}))
    for name, (_, expected) in invalid.items():
        failed = failed_condition(kube, name)
        assert failed["reason"] == "InvalidSpec", (name, failed)
        assert expected in failed["message"], (name, failed["message"])
        assert not live_pods(kube, name), name
    wait_phase(kube, "good", "Succeeded")
    assert cluster.operator.running
    # An invalid study is not retried over and over: one Event each, however long it sits.
    time.sleep(2)
    invalid_events = [e for e in kube.list("events", "default") if e.get("reason") == "InvalidSpec"]
    per_study = [e["involvedObject"]["name"] for e in invalid_events]
    assert sorted(per_study) == sorted(invalid), per_study
    assert all(int(e.get("count") or 1) == 1 for e in invalid_events), invalid_events


def test_trials_that_print_no_metric_or_nan_fail_with_reasons(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    cluster.start()
    script = str(BADINPUT_SUPPORT / "bad_metrics.py")
    create(
        kube,
        "metrics",
        command_spec(
            [sys.executable, script, "{trial_number}"],
            budget={"maxTrials": 7, "parallelism": 2},
            pruner={"name": "none"},
            trial={"trialsPerPod": 7},
        ),
    )
    create(
        kube,
        "no-program",
        command_spec(
            ["no-such-trainer", "--x={x}"],
            searchSpace={"x": {"type": "float", "low": 0, "high": 1}},
        ),
    )
    final = wait_phase(kube, "metrics", "Succeeded", timeout=90)
    assert final["trials"]["failed"] == 6
    assert final["trials"]["complete"] == 1
    assert final["bestTrial"]["value"] == 0.5
    study = optuna.load_study(study_name=final["studyName"], storage=storage_url)
    reasons = sorted(
        str(t.user_attrs.get("kubetune.fail_reason")).splitlines()[0]
        for t in study.trials
        if t.state == TrialState.FAIL
    )
    assert reasons == sorted(
        [
            "metric 'loss' was never printed (print a line such as 'loss=0.93' or "
            "'{\"loss\": 0.93}')",
            "objective returned NaN",
            "objective returned NaN",
            "objective returned inf",
            "objective returned inf",
            "objective returned -inf",
        ]
    )
    failed = failed_condition(kube, "no-program")
    assert (
        "spec.trial.command[0]: program 'no-such-trainer' is not found on PATH"
        in (failed["message"])
    )
    assert cluster.operator.running


# ------------------------------------------------------------------ storage and passwords

PASSWORD = "Wh1sper-t0-the-0perator"


@pytest.fixture
def password_url(url_with_password: Callable[[str], str]) -> str:
    return url_with_password(PASSWORD)


def secret(name: str, url: str) -> dict[str, Any]:
    """A Secret holding ``url`` under the key ``url``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"url": base64.b64encode(url.encode()).decode()},
    }


def storage_condition(kube: Any, name: str) -> dict[str, Any]:
    """The study's ``StorageReady`` condition ({} while there is none)."""
    return condition(status(kube, name), "StorageReady")


def test_a_storage_that_does_not_answer_is_a_condition_and_recovers(
    cluster: Any, kube: Any, storage_url: str
) -> None:
    cluster.start()
    kube.create("secrets", secret("db", "postgresql://tuner:hunter2-op@127.0.0.1:1/optuna"))
    create(
        kube,
        "unreachable",
        spec("quadratic", budget={"maxTrials": 2}, storage={"secretRef": {"name": "db"}}),
    )
    create(kube, "bystander", spec("quadratic", budget={"maxTrials": 2}))
    started = time.monotonic()
    waiting = wait_until(
        lambda: (
            storage_condition(kube, "unreachable").get("status") == "False"
            and storage_condition(kube, "unreachable")
        ),
        timeout=30,
    )
    took = time.monotonic() - started
    assert waiting["reason"] == "StorageUnavailable"
    assert (
        "cannot reach the storage at postgresql+psycopg2://tuner:***@127.0.0.1:1/optuna"
        in (waiting["message"])
    )
    assert "hunter2" not in json.dumps(kube.get("studies", "unreachable", "default"))
    assert not live_pods(kube, "unreachable")
    wait_phase(kube, "bystander", "Succeeded")  # the other study is not held up
    # Fixing the Secret is enough: the study starts on its own.
    kube.patch("secrets", "db", {"data": secret("db", storage_url)["data"]}, "default")
    wait_phase(kube, "unreachable", "Succeeded", timeout=90)
    assert storage_condition(kube, "unreachable")["status"] == "True"
    assert cluster.operator.running
    assert took < 20, f"the condition took {took:.0f} s to appear"


def test_a_whole_cluster_study_never_shows_the_password(
    cluster: Any,
    kube: Any,
    emulator_server: Any,
    password_url: str,
    tmp_path: Path,
) -> None:
    # The operator's default storage has the password (the chart puts it in its Secret).
    cluster.start(KUBETUNE_STORAGE_URL=password_url)
    kube.create("secrets", secret("db", password_url))
    pod_env = [
        {"name": "PYTHONPATH", "value": POD_PYTHONPATH},
        {"name": "KT_SLEEP", "value": "0.5"},
    ]
    # Odd trials fail quoting the URL they read from the environment.
    create(
        kube,
        "default-storage",
        spec(
            "quadratic",
            budget={"maxTrials": 4, "parallelism": 2},
            trial={"python": "kt_bad_objectives:leaks_the_url", "env": pod_env, "image": IMAGE},
        ),
    )
    create(
        kube,
        "secret-storage",
        spec(
            "sleeps",
            budget={"maxTrials": 2},
            storage={"secretRef": {"name": "db"}},
            trial={"env": [{"name": "KT_SLEEP", "value": "0.5"}]},
        ),
    )
    pods_seen: list[dict[str, Any]] = []
    pods_seen.extend(wait_until(lambda: live_pods(kube, "default-storage"), timeout=60))
    pods_seen.extend(wait_until(lambda: live_pods(kube, "secret-storage"), timeout=60))
    final = wait_phase(kube, "default-storage", "Succeeded", timeout=120)
    counts = {state: n for state, n in final["trials"].items() if n}
    assert counts == {"complete": 2, "failed": 2}, final["trials"]
    wait_phase(kube, "secret-storage", "Succeeded", timeout=120)

    # The URL reaches pods only through a secretKeyRef.
    for pod in pods_seen:
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert set(env["KUBETUNE_STORAGE_URL"]) == {"name", "valueFrom"}
        assert "secretKeyRef" in env["KUBETUNE_STORAGE_URL"]["valueFrom"]
    study = optuna.load_study(study_name=final["studyName"], storage=open_storage(password_url))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert all(
        "could not use postgresql://" in t.user_attrs["kubetune.fail_reason"] for t in failed
    )

    requests = emulator_server.call(lambda: [dict(e) for e in emulator_server.emulator.request_log])
    written = [
        f"{r['method']} {r['path']} {r['body']}"
        for r in requests
        if "/secrets" not in r["path"]  # a Secret is where the password belongs
    ]
    seen = {
        "objects written to the API server (statuses, events, pods, configmaps)": "\n".join(
            written
        ),
        "studies, pods, events and configmaps now": json.dumps(
            [kube.list(kind, "default") for kind in ("studies", "pods", "events", "configmaps")]
        ),
        "operator log": cluster.operator.log_text(),
        "pod logs and the kubelet's log": "\n".join(
            p.read_text(errors="replace") for p in sorted(Path(tmp_path).rglob("*.log"))
        ),
        "trial reasons and attributes": json.dumps(
            [(t.user_attrs, t.system_attrs) for t in study.trials], default=str
        ),
    }
    assert len(seen["pod logs and the kubelet's log"]) > 1000, "found the pod logs"
    leaks = [where for where, text in seen.items() if PASSWORD in text]
    assert not leaks, f"the password shows in: {leaks}"
