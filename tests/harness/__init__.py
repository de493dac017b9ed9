"""Test harness: an emulated Kubernetes API, a fake kubelet, and a real Kopf operator process.

Modules:

* :mod:`.apiserver` -- :class:`KubeEmulator` (a kmock ``KubernetesEmulator`` that behaves
  like a real API server where Kopf and our code care), :class:`EmulatorServer` (runs it
  on 127.0.0.1 in a background thread), :func:`write_kubeconfig`, :class:`KubeClient`.
* :mod:`.auth`, :mod:`.rbac`, :mod:`.admission`, :mod:`.validation`, :mod:`.schema`,
  :mod:`.tls`, :mod:`.errors` -- what the API server refuses and how it says so
  (authentication, RBAC, admission plugins, built-in and CRD schema validation, HTTPS).
* :mod:`.kubelet` -- :class:`FakeKubelet`, which runs pods as local processes.
* :mod:`.operator` -- :class:`KopfOperator`, a ``kopf run`` subprocess.
* :mod:`.fixtures` -- pytest fixtures built from the above (import them in a conftest).

The modules import each other relatively, so the package works both as ``harness``
(with ``tests/`` on ``sys.path``) and as ``tests.harness``.
"""

from .apiserver import (
    DEFAULT_CRDS,
    DEFAULT_RESOURCES,
    SUPERUSER_TOKEN,
    ApiError,
    EmulatorServer,
    KubeClient,
    KubeEmulator,
    ResourceSpec,
    write_kubeconfig,
)
from .kubelet import FakeKubelet
from .operator import KopfOperator

__all__ = [
    "DEFAULT_CRDS",
    "DEFAULT_RESOURCES",
    "SUPERUSER_TOKEN",
    "ApiError",
    "EmulatorServer",
    "FakeKubelet",
    "KopfOperator",
    "KubeClient",
    "KubeEmulator",
    "ResourceSpec",
    "write_kubeconfig",
]
