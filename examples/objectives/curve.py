"""A training curve with no ML library: the loss falls epoch by epoch, faster or
slower with the learning rate and momentum, and each epoch is reported (so the
pruner can stop a poor curve, and tracking shows it as steps)."""

import math

import optuna


def objective(trial: optuna.Trial) -> float:
    lr = trial.params["lr"]
    momentum = trial.params["momentum"]
    # Best near lr=0.03, momentum=0.9: too small learns slowly, too large diverges.
    speed = math.exp(-((math.log10(lr) + 1.5) ** 2)) * (0.5 + momentum / 2)
    loss = 1.0
    for epoch in range(10):
        loss = 0.05 + (loss - 0.05) * (1 - 0.5 * speed)
        trial.report(loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss
