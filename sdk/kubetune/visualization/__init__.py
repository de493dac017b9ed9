"""Figures and the dashboard of a study: Optuna's plots written to files
(:mod:`~kubetune.visualization.plots`, ``pip install 'kubetune[plot]'``) and
optuna-dashboard served on its storage (:func:`~kubetune.visualization.dashboard.serve`,
``pip install 'kubetune[dashboard]'``). Both take an Optuna study or storage;
neither knows where the study ran.
"""

from __future__ import annotations

from kubetune._lazy import exports

_NAMES = {
    "write_plot": "kubetune.visualization.plots",
    "serve": "kubetune.visualization.dashboard",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = exports(__name__, _NAMES)
