"""PyTorch Lightning as a built-in model: an MLP for tabular data, pruned per
epoch with ``PyTorchLightningPruningCallback``.

Inputs are standardized with the training rows' mean and deviation (kept in
the checkpoint, so a saved model takes raw rows) and missing values become
zero after standardization (the training mean). Regression targets are
standardized too and predictions scaled back. After every validation epoch
the module logs ``val_<metric>``, which the pruning callback reports.

Under k-fold the folds train one after another: fold 0 is pruned per epoch
(a fold's epochs are comparable across trials, so the pruner's verdict means
the same), the other folds run to the end, and the value is the mean.

Example:
    >>> outcome = train(trial, {"lr": 0.01, "hidden_size": 64}, problem)  # doctest: +SKIP
    >>> outcome.value
    0.97
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import optuna
import torch
from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kubetune_trial.builtin.metrics import METRICS
from kubetune_trial.builtin.problem import Outcome, Problem
from kubetune_trial.builtin.resuming import Rounds
from kubetune_trial.builtin.space import LIGHTNING_DEFAULTS as DEFAULTS

MODEL_FILE = "model.ckpt"
DEFAULT_ROUNDS = 20

# Lightning announces its accelerators and warns about data loader workers on
# every fit: noise in a trial's log, where the table is tiny and in memory.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")


class TabularMLP(pl.LightningModule):
    """A feed-forward network for a table: ``n_layers`` hidden layers with ReLU and dropout.

    Load a saved model with ``TabularMLP.load_from_checkpoint(path)`` and call
    ``predict(rows)`` on raw feature rows.
    """

    def __init__(
        self,
        *,
        n_features: int,
        n_outputs: int,
        task: str,
        metric: str,
        mean: list[float],
        scale: list[float],
        target_mean: float = 0.0,
        target_scale: float = 1.0,
        hidden_size: int = 64,
        n_layers: int = 2,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        layers: list[nn.Module] = []
        width = n_features
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden_size), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden_size
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self._outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.net(torch.nan_to_num((rows - self.mean) / self.scale, nan=0.0))

    def _loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.hparams["task"] == "regression":
            standardized = (target - self.hparams["target_mean"]) / self.hparams["target_scale"]
            return nn.functional.mse_loss(output.squeeze(-1), standardized)
        return nn.functional.cross_entropy(output, target)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _index: int) -> torch.Tensor:
        rows, target = batch
        return self._loss(self(rows), target)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _index: int) -> None:
        rows, target = batch
        self._outputs.append((self.predict_tensor(rows), target))

    def on_validation_epoch_end(self) -> None:
        predictions = torch.cat([p for p, _ in self._outputs]).cpu().numpy()
        target = torch.cat([t for _, t in self._outputs]).cpu().numpy()
        self._outputs.clear()
        value = METRICS[self.hparams["metric"]].compute(target, predictions)
        self.log(f"val_{self.hparams['metric']}", value, prog_bar=False)

    def predict_tensor(self, rows: torch.Tensor) -> torch.Tensor:
        """Positive-class probability (binary), class probabilities, or values."""
        output = self(rows)
        if self.hparams["task"] == "regression":
            return output.squeeze(-1) * self.hparams["target_scale"] + self.hparams["target_mean"]
        probabilities = torch.softmax(output, dim=-1)
        return probabilities[:, 1] if self.hparams["n_outputs"] == 2 else probabilities

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.eval()
        with torch.no_grad():
            tensor = torch.as_tensor(np.asarray(rows, dtype=np.float32), device=self.device)
            return self.predict_tensor(tensor).cpu().numpy()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )


def _loader(problem: Problem, rows: np.ndarray, batch_size: int, shuffle: bool) -> DataLoader:
    features, target = problem.rows(rows)
    target_tensor = (
        torch.as_tensor(target, dtype=torch.float32)
        if problem.task == "regression"
        else torch.as_tensor(target, dtype=torch.long)
    )
    data = TensorDataset(torch.as_tensor(features, dtype=torch.float32), target_tensor)
    generator = torch.Generator().manual_seed(problem.seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)


def _module(problem: Problem, rows: np.ndarray, params: dict[str, Any]) -> TabularMLP:
    features, target = problem.rows(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column
        mean = np.nan_to_num(np.nanmean(features, axis=0))
        scale = np.nan_to_num(np.nanstd(features, axis=0), nan=1.0)
    scale[scale == 0] = 1.0
    regression = problem.task == "regression"
    torch.manual_seed(problem.seed)
    return TabularMLP(
        n_features=features.shape[1],
        n_outputs=1 if regression else problem.table.n_classes,
        task=problem.task,
        metric=problem.metric.name,
        mean=mean.tolist(),
        scale=scale.tolist(),
        target_mean=float(target.mean()) if regression else 0.0,
        target_scale=float(target.std() or 1.0) if regression else 1.0,
        **{k: v for k, v in params.items() if k != "batch_size"},
    )


def _trainer(problem: Problem, callbacks: list[pl.Callback], validate: bool) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=problem.rounds,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if validate else 0,
        **problem.device.params,
    )


def _fit_fold(
    trial: optuna.Trial | None,
    params: dict[str, Any],
    problem: Problem,
    train_rows: np.ndarray,
    valid_rows: np.ndarray | None,
) -> tuple[float, pl.Trainer]:
    """Train on ``train_rows``; return the last validation value (NaN without validation)."""
    module = _module(problem, train_rows, params)
    monitor = f"val_{problem.metric.name}"
    pruning = PyTorchLightningPruningCallback(trial, monitor) if trial is not None else None
    rounds = Rounds.of(trial) if trial is not None and valid_rows is not None else None
    callbacks: list[pl.Callback] = [pruning] if pruning else []
    if rounds is not None:
        callbacks.append(_Checkpoints(rounds))
    trainer = _trainer(problem, callbacks, validate=valid_rows is not None)
    batch_size = int(params["batch_size"])
    train_loader = _loader(problem, train_rows, batch_size, shuffle=True)
    if valid_rows is None:
        trainer.fit(module, train_loader)
        return float("nan"), trainer
    valid_loader = _loader(problem, valid_rows, max(batch_size, 1024), shuffle=False)
    saved = None if rounds is None else rounds.saved()
    with tempfile.TemporaryDirectory() as scratch:
        resume_from = None
        if rounds is not None and saved is not None:
            resume_from = Path(scratch) / "resume.ckpt"
            resume_from.write_bytes(saved)
            rounds.resuming(int(torch.load(resume_from, weights_only=False)["epoch"]) + 1)
        trainer.fit(module, train_loader, valid_loader, ckpt_path=resume_from)
    if pruning is not None:
        # Without this a pruned DDP trial would be recorded COMPLETE; harmless otherwise.
        pruning.check_pruned()
    return float(trainer.callback_metrics[monitor]), trainer


class _Checkpoints(pl.Callback):
    """Checkpoints the trainer (model, optimizer, epoch) every ``everyRounds`` epochs,
    after the epoch's validation, as Lightning's own ModelCheckpoint would."""

    def __init__(self, rounds: Rounds) -> None:
        self.rounds = rounds

    def on_validation_end(self, trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.rounds.due(
            trainer.current_epoch + 1, trainer.max_epochs or 0
        ):
            return
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "trial.ckpt"
            trainer.save_checkpoint(path)
            self.rounds.save(path.read_bytes())


def train(trial: optuna.Trial, params: dict[str, Any], problem: Problem) -> Outcome:
    full = {**DEFAULTS, **problem.fixed, **params}
    if problem.is_cv:
        values = [
            _fit_fold(trial if index == 0 else None, full, problem, train_rows, valid_rows)[0]
            for index, (train_rows, valid_rows) in enumerate(problem.folds)
        ]

        def refit(path: Path) -> None:
            rows = np.arange(len(problem.table.target))
            _fit_fold(None, full, problem, rows, None)[1].save_checkpoint(str(path))

        return Outcome(float(np.mean(values)), refit)
    train_rows, valid_rows = problem.folds[0]
    value, trainer = _fit_fold(trial, full, problem, train_rows, valid_rows)
    return Outcome(value, lambda path: trainer.save_checkpoint(str(path)))
