"""One plain Optuna worker, as Optuna's Kubernetes example runs them: load the study
from the shared storage and ``study.optimize(objective, n_trials=N)``.

``python _plain_worker.py URL STUDY N_TRIALS OBJECTIVE SEED``
"""

from __future__ import annotations

import sys

import bench_objectives
import optuna


def main() -> None:
    url, study_name, n_trials, objective, seed = sys.argv[1:6]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name,
        storage=url,
        sampler=optuna.samplers.RandomSampler(seed=int(seed)),
        pruner=optuna.pruners.NopPruner(),
    )
    study.optimize(getattr(bench_objectives, objective), n_trials=int(n_trials))


if __name__ == "__main__":
    main()
