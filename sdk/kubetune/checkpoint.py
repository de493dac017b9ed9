"""Checkpoints for python objectives: a trial whose pod or worker is lost (evicted,
preempted, its node gone) goes on from its last checkpoint in a new one, with the same
parameters and the values it reported, counted once. Needs ``spec.trial.checkpoints``;
without it (a plain Optuna study) :func:`save` saves nothing and :func:`load` gives the
default, so one objective runs both ways.

Example:
    >>> from kubetune import checkpoint
    >>> def objective(trial):
    ...     lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    ...     state = checkpoint.load(trial) or {"epoch": 0, "model": new_model()}
    ...     for epoch in range(state["epoch"], 30):
    ...         state = {"epoch": epoch + 1, "model": train(state["model"], lr)}
    ...         checkpoint.save(trial, state)
    ...         trial.report(score(state["model"]), epoch)
    ...         if trial.should_prune():
    ...             raise optuna.TrialPruned()
    ...     return score(state["model"])  # doctest: +SKIP
"""

from kubetune.engine.checkpoints import directory, load, save

__all__ = ["directory", "load", "save"]
