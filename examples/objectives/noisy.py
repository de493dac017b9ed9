"""A noisy objective whose best single trial is lucky: the model ``jumpy`` scores 1.3 on
average but varies a lot, ``steady`` scores 1.0 and hardly varies. With enough trials
a jumpy one scores below 1.0 once and becomes the best trial; re-running the best
trials with other seeds (spec.verify) shows steady is the one to keep.

The noise is drawn from ``kubetune.seed(trial)``: the same seed for the study's own
trials, another in each verification repeat (as a training run's data shuffling or
initialization would be seeded).
"""

import random

import kubetune
import optuna


def objective(trial: optuna.Trial) -> float:
    model = trial.suggest_categorical("model", ["steady", "jumpy"])
    width = trial.suggest_int("width", 1, 2)
    # One draw per trial and per repeat; the trial number varies the study's own trials.
    noise = random.Random(f"{trial.number}-{kubetune.seed(trial)}").gauss(0.0, 1.0)
    if model == "steady":
        return 1.0 + 0.01 * width + 0.02 * noise
    return 1.3 + 0.01 * width + 0.5 * noise
