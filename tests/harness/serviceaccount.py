"""What Kubernetes mounts into a pod for its ServiceAccount, shared by the emulated API
server's admission (which adds it to pods) and the fake kubelet (which fills it in)."""

from __future__ import annotations

from typing import Any

#: Where in-cluster clients look for ``token``, ``ca.crt`` and ``namespace``.
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def token_volume(name: str) -> dict[str, Any]:
    """The projected volume ServiceAccount admission adds (``kube-api-access-*``)."""
    return {
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }
