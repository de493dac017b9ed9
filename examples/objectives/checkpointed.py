"""A training loop that survives a lost pod or worker: a linear model fitted by
mini-batch gradient descent, one epoch at a time, its state saved after each epoch with
``kubetune.checkpoint``. A trial whose pod is evicted or preempted goes on from its
last epoch in a new pod (with ``spec.trial.checkpoints``); in a plain Optuna study
``save`` saves nothing and the loop simply runs."""

import numpy as np
import optuna
from kubetune import checkpoint

EPOCHS = 20


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(512, 8))
    target = features @ np.linspace(-1, 1, 8) + rng.normal(scale=0.1, size=512)
    return features, target


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-3, 0.3, log=True)
    batch_size = trial.suggest_categorical("batch_size", [16, 64, 256])
    features, target = _data()
    # Where the last pod stopped, or the start.
    state = checkpoint.load(trial) or {"epoch": 0, "weights": np.zeros(8)}
    weights = state["weights"]
    for epoch in range(state["epoch"], EPOCHS):
        # Shuffled by the epoch's number: a resumed trial ends as an uninterrupted one.
        order = np.random.default_rng(epoch).permutation(len(target))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            error = features[rows] @ weights - target[rows]
            weights = weights - lr * features[rows].T @ error / len(rows)
        loss = float(np.mean((features @ weights - target) ** 2))
        checkpoint.save(trial, {"epoch": epoch + 1, "weights": weights})
        trial.report(loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss
