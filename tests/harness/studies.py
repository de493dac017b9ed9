"""Study documents for the tests that create Studies in the emulated cluster.

Example:
    >>> study_document("quad", {"trial": {"python": "m:f"}})["metadata"]
    {'name': 'quad', 'namespace': 'default'}
"""

from __future__ import annotations

from typing import Any

__all__ = ["TRIAL_IMAGE", "study_document"]

#: The trial image the operator is given in the emulated cluster (the fake kubelet runs
#: its pods as local processes, so no image by this name needs to exist).
TRIAL_IMAGE = "ghcr.io/kubetune/trial"


def study_document(name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    """A ``Study`` as ``kubectl apply`` would send it."""
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
