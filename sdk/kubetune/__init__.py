"""kubetune: Kubernetes-native hyperparameter tuning on Optuna."""
