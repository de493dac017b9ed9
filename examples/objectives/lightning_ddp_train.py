"""One rank of a DDP trial: run by ``torchrun`` from :mod:`examples.objectives.lightning_ddp`.

Every rank loads the study, attaches to the trial the runner claimed
(``optuna.trial.Trial(study, trial_id)``) and reads its parameters. The
study is loaded with the spec's pruner (from kubetune's bridge) so rank 0's
``should_prune`` is the study's. Rank 0 writes the outcome
(``{"value": ..., "pruned": ..., "epoch": ...}``) to the result file.

    python -m torch.distributed.run --standalone --nproc-per-node=2 \\
        -m examples.objectives.lightning_ddp_train --study S --trial-id 7 --result out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import warnings
from pathlib import Path

import lightning.pytorch as pl
import optuna
import torch
from kubetune.engine import bridge
from kubetune.engine.storage import open_storage
from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

EPOCHS = 5


class Classifier(pl.LightningModule):
    def __init__(self, n_features: int, hidden_size: int, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _i: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _i: int) -> None:
        x, y = batch
        # sync_dist: every rank logs the same mean, so the pruning verdict is global.
        self.log("val_loss", nn.functional.cross_entropy(self(x), y), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def _loaders() -> tuple[DataLoader, DataLoader]:
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    x_train, x_valid, y_train, y_valid = train_test_split(x, y, test_size=0.25, random_state=0)

    def loader(features, labels, shuffle: bool) -> DataLoader:  # type: ignore[no-untyped-def]
        data = TensorDataset(
            torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(labels)
        )
        return DataLoader(data, batch_size=64, shuffle=shuffle)

    # Lightning gives each rank its shard of both loaders (a DistributedSampler).
    return loader(x_train, y_train, True), loader(x_valid, y_valid, False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study", required=True)
    parser.add_argument("--trial-id", type=int, required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    # check_pruned() re-reports rank 0's values, which this rank's storage already has.
    warnings.filterwarnings("ignore", ".*is already reported.*")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    storage = open_storage(os.environ["KUBETUNE_STORAGE_URL"])
    spec = bridge.stored_spec(storage, storage.get_study_id_from_name(args.study))
    assert spec is not None, "not a kubetune study"
    study = optuna.load_study(
        study_name=args.study,
        storage=storage,
        sampler=bridge.build_sampler(spec),
        pruner=bridge.build_pruner(spec),
    )
    trial = optuna.trial.Trial(study, args.trial_id)
    torch.manual_seed(0)
    model = Classifier(30, trial.params["hidden_size"], trial.params["lr"])
    pruning = PyTorchLightningPruningCallback(trial, monitor="val_loss")
    trainer = pl.Trainer(
        accelerator=os.environ.get("KUBETUNE_DDP_ACCELERATOR", "cpu"),
        devices=int(os.environ["LOCAL_WORLD_SIZE"]),
        # torchrun's nodes: the pods of a multi-node trial (1 on one pod).
        num_nodes=int(os.environ["WORLD_SIZE"]) // int(os.environ["LOCAL_WORLD_SIZE"]),
        strategy="ddp",
        max_epochs=EPOCHS,
        callbacks=[pruning],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    train_loader, valid_loader = _loaders()
    trainer.fit(model, train_loader, valid_loader)
    outcome: dict[str, object] = {"value": float(trainer.callback_metrics["val_loss"])}
    try:
        pruning.check_pruned()  # every rank, right after fit
    except optuna.TrialPruned:
        outcome.update(pruned=True, epoch=trainer.current_epoch)
    if trainer.is_global_zero:
        trial.set_user_attr("ddp.world_size", trainer.world_size)
        outcome["world_size"] = trainer.world_size
        Path(args.result).write_text(json.dumps({"pruned": False, **outcome}))


if __name__ == "__main__":
    main()
