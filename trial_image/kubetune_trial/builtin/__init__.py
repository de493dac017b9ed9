"""Built-in objectives: LightGBM, XGBoost and a Lightning MLP on a table,
with default search spaces, pruning, GPU use and the best model saved.

Nothing heavy is imported here: :func:`load_builtin` imports only the chosen
model's library, when a worker loads the objective.

Example:
    >>> from kubetune.study.spec import validate_spec
    >>> spec = validate_spec({
    ...     "objective": {"direction": "maximize", "metric": "auc"},
    ...     "trial": {"builtin": {"model": "lightgbm", "data": {"dataset": "sklearn:breast_cancer"},
    ...                           "maxEpochs": 20}},
    ... })
    >>> objective = load_builtin(spec, "cancer")   # doctest: +SKIP
    >>> objective(trial)                           # doctest: +SKIP
    0.995
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
from kubetune.study.spec import StudySpec


def load_builtin(spec: StudySpec, study_name: str | None = None) -> Callable[[optuna.Trial], float]:
    """The objective for ``spec.trial.builtin``, checked and with its data loaded.

    Raises :class:`kubetune_trial.objectives.ObjectiveNotLoadable` naming the
    spec field when something would make every trial fail.
    """
    from kubetune_trial.builtin.objective import BuiltinTrialObjective, study_name_from_env

    return BuiltinTrialObjective(spec, study_name or study_name_from_env())
