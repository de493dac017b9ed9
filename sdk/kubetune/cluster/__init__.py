"""The cluster: Kubernetes API calls and shipping code to trial pods.

:class:`~kubetune.cluster.api.KubeApi` is a thin, dict-based layer over the
official ``kubernetes`` client (``pip install 'kubetune[client]'``) that finds the
cluster as kubectl does; :mod:`~kubetune.cluster.shipping` packs an objective
function's source for the pods. It builds on :mod:`kubetune.study`; the
:class:`kubetune.Client` above it is what users call.
"""

from __future__ import annotations

from kubetune._lazy import exports

_NAMES = {
    "KubeApi": "kubetune.cluster.api",
    "ShippedCode": "kubetune.cluster.shipping",
    "ship": "kubetune.cluster.shipping",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = exports(__name__, _NAMES)
