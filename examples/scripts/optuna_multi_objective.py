"""A multi-objective study (the Binh and Korn problem from Optuna's documentation):
two values to minimize at once, NSGA-II, and the Pareto front at the end."""

import optuna


def objective(trial):
    x = trial.suggest_float("x", 0, 5)
    y = trial.suggest_float("y", 0, 3)
    v0 = 4 * x**2 + 4 * y**2
    v1 = (x - 5) ** 2 + (y - 5) ** 2
    return v0, v1


study = optuna.create_study(
    directions=["minimize", "minimize"],
    sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=20),
)
study.optimize(objective, n_trials=60, n_jobs=2)

print("pareto front:", len(study.best_trials), "trials")
for trial in study.best_trials[:5]:
    print(f"  trial {trial.number}: values {trial.values} params {trial.params}")
