"""kubetune: Kubernetes-native hyperparameter tuning on Optuna.

The public surface is imported lazily, so ``import kubetune`` stays cheap (it
imports neither kubernetes, optuna, plotly nor pandas):

- :class:`Client` — submit, wait for and query Studies on a cluster; ``tune()``
  a Python function there or locally;
- :class:`Study`, :class:`StudySpec`, :func:`load_study`, :class:`SpecError` —
  the Study model, validated exactly as the CRD is;
- :func:`local_storage` — the storage URL of local studies (``kubetune run``),
  the embedded PostgreSQL running while the ``with`` block does, for
  ``optuna.load_study``;
- :func:`seed` — the seed an objective uses: another one in each verification repeat
  (``spec.verify``, ``kubetune verify``);
- :mod:`kubetune.space` — search-space helpers (``space.Float(1e-4, 0.1, log=True)``);
- the errors :class:`StudyFailed`, :class:`NotFound`, :class:`SpecChangeRefused`,
  :class:`WaitTimeout`.

Example:
    >>> import kubetune
    >>> client = kubetune.Client()                       # doctest: +SKIP
    >>> client.tune(objective, max_trials=50, local=True)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetune import space
    from kubetune.client.client import Client
    from kubetune.engine.trials import TrialRecord
    from kubetune.engine.verify import seed
    from kubetune.errors import (
        ClusterUnavailable,
        KubetuneError,
        NoBestTrial,
        NotFound,
        NotReady,
        SpecChangeRefused,
        StudyFailed,
        WaitTimeout,
    )
    from kubetune.local.embedded import local_storage
    from kubetune.study.spec import ObjectMeta, SpecError, Study, StudySpec, load_study

__version__ = "0.1.0"

_LAZY = {
    "Client": "kubetune.client.client",
    "Study": "kubetune.study.spec",
    "StudySpec": "kubetune.study.spec",
    "ObjectMeta": "kubetune.study.spec",
    "SpecError": "kubetune.study.spec",
    "load_study": "kubetune.study.spec",
    "local_storage": "kubetune.local.embedded",
    "TrialRecord": "kubetune.engine.trials",
    "KubetuneError": "kubetune.errors",
    "ClusterUnavailable": "kubetune.errors",
    "NotFound": "kubetune.errors",
    "NotReady": "kubetune.errors",
    "NoBestTrial": "kubetune.errors",
    "SpecChangeRefused": "kubetune.errors",
    "StudyFailed": "kubetune.errors",
    "WaitTimeout": "kubetune.errors",
    "seed": "kubetune.engine.verify",
}

__all__ = [
    "Client",
    "ClusterUnavailable",
    "KubetuneError",
    "NoBestTrial",
    "NotFound",
    "NotReady",
    "ObjectMeta",
    "SpecChangeRefused",
    "SpecError",
    "Study",
    "StudyFailed",
    "StudySpec",
    "TrialRecord",
    "WaitTimeout",
    "load_study",
    "local_storage",
    "seed",
    "space",
]


def __getattr__(name: str) -> Any:
    if name == "space":
        return importlib.import_module("kubetune.space")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kubetune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
