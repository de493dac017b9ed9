"""Which ended pods the cluster took from their trial (their trial resumes from its
checkpoint) and which failed by themselves (their trial fails)."""

from __future__ import annotations

from typing import Any

import pytest
from kubetune_operator.pods import taken_away


def pod(status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", **meta}, "status": status}


def terminated(reason: str, code: int) -> list[dict[str, Any]]:
    return [{"state": {"terminated": {"reason": reason, "exitCode": code}}}]


@pytest.mark.parametrize(
    ("ended", "expected"),
    [
        (pod({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}), True),
        (
            pod(
                {
                    "phase": "Failed",
                    "conditions": [
                        {
                            "type": "DisruptionTarget",
                            "status": "True",
                            "reason": "PreemptionByScheduler",
                        }
                    ],
                }
            ),
            True,
        ),
        (pod({"phase": "Failed", "reason": "Terminated", "message": "node shutdown"}), True),
        (pod({"phase": "Running"}, deletionTimestamp="2026-01-01T00:00:00Z"), True),
        (pod({"phase": "Failed", "containerStatuses": terminated("OOMKilled", 137)}), False),
        (pod({"phase": "Failed", "containerStatuses": terminated("Error", 1)}), False),
        (pod({"phase": "Failed"}, deletionTimestamp="2026-01-01T00:00:00Z"), False),
    ],
    ids=["evicted", "preempted", "node-shutdown", "deleted", "oomkilled", "crashed", "ended"],
)
def test_taken_away(ended: dict[str, Any], expected: bool) -> None:
    assert taken_away(ended) is expected
