"""Pods for the chart's Deployments, as a ReplicaSet controller would make them.

The emulated API server runs no controllers, so a test that installs the chart
starts the pods of its Deployments with :func:`start_deployment_pods`: one pod per
replica, from the Deployment's own pod template (its service account, security
context, args, env, volumes, probes' ports), owned by the Deployment, created with
the test's (superuser) credentials as the controller-manager's would be. The fake
kubelet then runs them like any pod.

Example:
    >>> pods = start_deployment_pods(kube, "kubetune", "kubetune-operator")  # doctest: +SKIP
    >>> pods[0]["spec"]["serviceAccountName"]                                # doctest: +SKIP
    'kubetune-operator'
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

__all__ = ["start_deployment_pods"]


def start_deployment_pods(kube: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    """Create ``spec.replicas`` pods from the Deployment's template; returns them."""
    deployment = kube.get("deployments", name, namespace)
    template = deployment["spec"]["template"]
    # The pod-template-hash label, as the Deployment controller computes one per template.
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
    pods = []
    for _ in range(int(deployment["spec"].get("replicas", 1))):
        metadata = copy.deepcopy(template.get("metadata") or {})
        metadata["labels"] = {**(metadata.get("labels") or {}), "pod-template-hash": digest}
        metadata["generateName"] = f"{name}-{digest}-"
        metadata["namespace"] = namespace
        metadata["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": name,
                "uid": deployment["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": copy.deepcopy(template["spec"]),
        }
        pods.append(kube.create("pods", pod, namespace))
    return pods
