"""A PyTorch Lightning objective trained with DDP across several processes of
one trial pod, or across the pods of a multi-node trial (``spec.trial.nodes``),
pruned per epoch through the study's storage.

The trial runner claims the trial and suggests ``spec.searchSpace`` on it, as
for any python objective. This function then starts the ranks with
:func:`kubetune.engine.gang.torchrun`: ``processesPerNode`` processes on this
pod and, for a multi-node trial, as many on each of the trial's other pods
(they join this pod's rendezvous). Every rank attaches to the *same* trial by its id (it is
in the database) and reads the parameters from it, so no rank suggests
anything and no rank asks for a trial of its own. Rank 0 reports each
epoch's validation loss and asks the pruner; Lightning broadcasts the verdict
to every rank, and each rank calls ``PyTorchLightningPruningCallback.check_pruned()``
after ``fit`` (without it, a pruned DDP trial would be recorded as COMPLETE).
Rank 0 writes the outcome to a file, and this function raises
``optuna.TrialPruned`` for a pruned run. It does not import Lightning itself:
the runner process stays light, and the reports rank 0 wrote are already in
the storage, where the runner reads them when it records the pruned trial.

    kubetune run examples/lightning-ddp.yaml

``spec.trial.processesPerNode`` sets the number of processes per pod (on a GPU
pod, the number of GPUs, with ``KUBETUNE_DDP_ACCELERATOR=gpu``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import optuna
from kubetune.engine.gang import torchrun

TRAIN_MODULE = "examples.objectives.lightning_ddp_train"


def objective(trial: optuna.Trial) -> float:
    # Any parameter the ranks need must be suggested here, before they start.
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.suggest_int("hidden_size", 8, 64, log=True)
    with tempfile.TemporaryDirectory(prefix="kubetune-ddp-") as scratch:
        result_file = Path(scratch) / "result.json"
        args = [
            "-m",
            TRAIN_MODULE,
            "--study",
            trial.study.study_name,
            "--trial-id",
            str(trial._trial_id),
            "--result",
            str(result_file),
        ]
        # The ranks read the storage URL from KUBETUNE_STORAGE_URL, which every pod has.
        # Global rank 0 is on this pod: it writes the result file here.
        done = torchrun(trial, args)
        if done.returncode != 0:
            raise RuntimeError(f"torchrun exited with {done.returncode}:\n{done.stderr[-3000:]}")
        result = json.loads(result_file.read_text())
    ranks = result.get("world_size")
    if result["pruned"]:
        raise optuna.TrialPruned(f"pruned at epoch {result['epoch']} (DDP, {ranks} processes)")
    return float(result["value"])
