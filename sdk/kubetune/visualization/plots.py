"""Figures of a study with Optuna's visualization module.

``.html`` files are interactive Plotly figures (``pip install 'kubetune[plot]'``,
which brings plotly); ``.png``, ``.svg`` and ``.pdf`` are drawn with
Optuna's matplotlib backend.

plotly.js (4.7 MB) is not copied into every figure: by default (``plotlyjs=
"directory"``) the figures load one shared ``plotly.min.js`` written beside them,
so a folder of figures opens with no network (in an air-gapped cluster's bastion
too) and each figure is the size of its data. ``"cdn"`` loads it from Plotly's
CDN instead (a figure alone, but it needs the network); ``"inline"`` embeds it
(one self-contained file to send, 4.7 MB more).

Kinds: ``history`` (value by trial, best so far), ``importance`` (fANOVA
parameter importances), ``parallel`` (parallel coordinates), ``pareto``
(multi-objective studies), ``intermediate`` (the values trials reported with
``trial.report``, pruned ones included). For a multi-objective study, the
other kinds show objective ``objective`` (default 0).

Example:
    >>> write_plot(study, "history", Path("history.html"))   # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.errors import KubetuneError

if TYPE_CHECKING:
    import optuna

KINDS = ("history", "importance", "parallel", "pareto", "intermediate")
SUFFIXES = (".html", ".png", ".svg", ".pdf")
#: Where an HTML figure finds plotly.js (Plotly's ``include_plotlyjs``).
PLOTLYJS = ("directory", "cdn", "inline")
#: Parallel coordinates, drawn with matplotlib: inches of width per axis (room for an
#: axis's tick labels before the next axis) and for the colour bar beside them.
AXIS_INCHES = 1.2
COLORBAR_INCHES = 1.6


class PlotError(KubetuneError, ValueError):
    """The figure cannot be drawn for this study; the message says why."""


def write_plot(
    study: optuna.Study,
    kind: str,
    path: Path,
    *,
    params: Sequence[str] | None = None,
    objective: int = 0,
    plotlyjs: str = "directory",
) -> Path:
    """Draw ``kind`` for ``study`` into ``path`` (format by its suffix); return the path.

    ``plotlyjs`` says where an HTML figure finds plotly.js: ``directory`` (one
    ``plotly.min.js`` beside the figures, written once), ``cdn`` or ``inline`` (see
    the module's doc). Raises :class:`PlotError` when the study has nothing to show
    for that kind, and ImportError with the package to install when plotly or
    matplotlib is missing.
    """
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise PlotError(f"{path}: use one of {', '.join(SUFFIXES)} (the suffix picks the format)")
    if plotlyjs not in PLOTLYJS:
        raise PlotError(f"plotlyjs {plotlyjs!r} is not one of {', '.join(PLOTLYJS)}")
    html = suffix == ".html"
    figure = draw_figure(study, kind, html=html, params=params, objective=objective)
    path.parent.mkdir(parents=True, exist_ok=True)
    if html:
        # "directory" writes plotly.min.js beside the file unless one is there already.
        include: str | bool = True if plotlyjs == "inline" else plotlyjs
        figure.write_html(str(path), include_plotlyjs=include, full_html=True)
    else:
        import matplotlib.pyplot as plt

        fig = _matplotlib_figure(figure)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return path


def draw_figure(
    study: optuna.Study,
    kind: str,
    *,
    html: bool,
    params: Sequence[str] | None = None,
    objective: int = 0,
) -> Any:
    """The figure :func:`write_plot` writes: a Plotly figure (``html``) or Optuna's
    matplotlib Axes, laid out to be read (see :func:`fit_parallel_labels`)."""
    from optuna.trial import TrialState

    if kind not in KINDS:
        raise PlotError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    multi = len(study.directions) > 1
    names = study.metric_names
    if kind == "pareto" and not multi:
        raise PlotError("a Pareto front needs a multi-objective study; try --kind history")
    if kind == "intermediate":
        if not any(t.intermediate_values for t in trials):
            raise PlotError("no trial reported intermediate values (trial.report)")
    elif not complete:
        raise PlotError(f"study {study.study_name!r} has no completed trial to plot")
    if kind == "importance" and len(complete) < 2:
        raise PlotError("parameter importances need at least 2 completed trials")
    if multi and not 0 <= objective < len(study.directions):
        raise PlotError(
            f"objective {objective} does not exist (the study has {len(study.directions)})"
        )

    target: Callable[[Any], float] | None = None
    target_name = "Objective Value"
    if multi and kind != "pareto":

        def target(t: Any) -> float:
            return float(t.values[objective])

        target_name = names[objective] if names else f"Objective {objective}"
    elif names:
        target_name = names[0]

    if html:
        try:
            import optuna.visualization as vis
            import plotly  # noqa: F401 - optuna's check fails late; fail early with the hint
        except ImportError:
            raise ImportError("HTML figures need plotly: pip install 'kubetune[plot]'") from None
    else:
        try:
            import matplotlib

            matplotlib.use("Agg")  # files only, no display
            import optuna.visualization.matplotlib as vis  # type: ignore[no-redef]
        except ImportError:
            raise ImportError(
                "PNG/SVG/PDF figures need matplotlib: pip install 'kubetune[plot]'"
            ) from None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's matplotlib backend is "experimental"
        figure = _draw(vis, study, kind, params, target, target_name, names)
    if kind == "parallel" and not html:
        fit_parallel_labels(figure)
    return figure


def _matplotlib_figure(drawn: Any) -> Any:
    """The Figure of what Optuna's matplotlib backend returns (an Axes or an array)."""
    import numpy

    return drawn.figure if hasattr(drawn, "figure") else numpy.ravel(drawn)[0].figure


def fit_parallel_labels(ax: Any) -> None:
    """Give each axis of a matplotlib parallel-coordinate plot room for its labels.

    Optuna draws every axis into a 6.4-inch figure and slants the parameter names
    by 30 degrees: past four or five parameters the names and the axes' tick labels
    run into each other. The figure grows by :data:`AXIS_INCHES` per axis, and the
    names slant more as they grow in number, each ending under its own axis.
    """
    labels = ax.get_xticklabels()
    figure = ax.figure
    width = max(figure.get_figwidth(), AXIS_INCHES * len(labels) + COLORBAR_INCHES)
    figure.set_size_inches(width, figure.get_figheight())
    for label in labels:
        label.set_rotation(30 if len(labels) <= 4 else 45)
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")


def _draw(
    vis: Any,
    study: optuna.Study,
    kind: str,
    params: Sequence[str] | None,
    target: Callable[[Any], float] | None,
    target_name: str,
    names: list[str] | None,
) -> Any:
    chosen = list(params) if params else None
    if kind == "history":
        return vis.plot_optimization_history(study, target=target, target_name=target_name)
    if kind == "importance":
        return vis.plot_param_importances(
            study, params=chosen, target=target, target_name=target_name
        )
    if kind == "parallel":
        return vis.plot_parallel_coordinate(
            study, params=chosen, target=target, target_name=target_name
        )
    if kind == "pareto":
        return vis.plot_pareto_front(study, target_names=names)
    return vis.plot_intermediate_values(study)
