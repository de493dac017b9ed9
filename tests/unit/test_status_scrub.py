"""The operator's last line of defence for passwords: the status patch is scrubbed.

Every tested path already removes the password before a message reaches the status
(``open_storage`` scrubs its own errors), so only a direct test shows whether the
status writer itself still does (tests/MUTATIONS.md, mutant ``status-scrub``). Here a
storage error quotes the database URL verbatim, as a driver that prints its DSN would.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubetune.engine.storage import StorageUnavailable
from kubetune_operator import reconciler as reconciler_module
from kubetune_operator.config import OperatorConfig
from kubetune_operator.reconciler import StudyReconciler

PASSWORD = "s3cr3t-Pa55"
URL = f"postgresql://tuner:{PASSWORD}@db.example:5432/optuna"


def test_a_storage_error_quoting_the_url_reaches_the_status_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: list[dict[str, Any]] = []

    def unreachable(url: str, **_: Any) -> Any:
        raise StorageUnavailable(f"driver said: could not connect using {url}")

    monkeypatch.setattr(reconciler_module.kube, "read_secret_value", lambda *_: URL)
    monkeypatch.setattr(
        reconciler_module.kube,
        "patch_study_status",
        lambda namespace, name, status: written.append(status),
    )
    monkeypatch.setattr(reconciler_module, "open_storage", unreachable)
    events: list[tuple[str, str, str]] = []
    reconciler = StudyReconciler(OperatorConfig(), emit=lambda *event: events.append(event))
    body = {
        "metadata": {"name": "leaky", "namespace": "default", "uid": "u-1", "generation": 1},
        "spec": {
            "trial": {"python": "m:f"},
            "storage": {"secretRef": {"name": "db", "key": "url"}},
        },
        "status": {},
    }

    assert reconciler.tick(body) is False  # not finished: the storage may come back
    assert written, "the status was not written"
    text = json.dumps(written)
    assert PASSWORD not in text
    storage = [
        c for patch in written for c in patch.get("conditions", []) if c["type"] == "StorageReady"
    ]
    assert storage and storage[-1]["status"] == "False"
    assert "could not connect using postgresql://tuner:***@db.example" in storage[-1]["message"]
