"""The Python SDK: :class:`Client` and ``tune()``, on a cluster or on this machine.

:class:`~kubetune.client.client.Client` submits, waits for and queries Studies on
a cluster, and reads local studies from their Study file;
:mod:`~kubetune.client.tuning` turns a Python function into a Study and runs it
(locally through :mod:`kubetune.local`, or in a cluster through
:mod:`kubetune.cluster`); :mod:`~kubetune.client.sources` finds the Optuna study
behind what a user names (a Study file or a Study's name). Nothing here prints
with Rich: progress goes to a :class:`kubetune.engine.progress.ProgressDisplay`,
which the command line replaces with its live bar.

Example:
    >>> from kubetune.client import Client
    >>> Client().tune(objective, max_trials=20, local=True)   # doctest: +SKIP
"""

from __future__ import annotations

from kubetune._lazy import exports

_NAMES = {
    "Client": "kubetune.client.client",
    "TunedStudy": "kubetune.client.tuning",
    "TuneInsideTrial": "kubetune.client.tuning",
    "open_optuna_study": "kubetune.client.sources",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = exports(__name__, _NAMES)
