"""A stand-alone training script that knows nothing of Optuna or kubetune.

It takes hyperparameters as argparse flags and prints one metric line per
epoch (``epoch=3 val_accuracy=0.95``): kubetune's command objective fills in
the flags, reports each epoch to the pruner, and stops the script when the
trial is pruned.

    python examples/train_mlp.py --lr 0.01 --hidden 64 --alpha 1e-4 --epochs 20
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--hidden", type=int, required=True)
    parser.add_argument("--alpha", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    features, labels = load_digits(return_X_y=True)
    x_train, x_valid, y_train, y_valid = train_test_split(
        features, labels, test_size=0.3, random_state=args.seed, stratify=labels
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_valid = scaler.transform(x_train), scaler.transform(x_valid)
    model = MLPClassifier(
        hidden_layer_sizes=(args.hidden,),
        learning_rate_init=args.lr,
        alpha=args.alpha,
        random_state=args.seed,
    )
    classes = np.unique(labels)
    accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(x_train, y_train, classes=classes)
        accuracy = model.score(x_valid, y_valid)
        print(f"epoch={epoch} val_accuracy={accuracy:.4f}", flush=True)
    print(f"val_accuracy={accuracy:.4f}")


if __name__ == "__main__":
    main()
