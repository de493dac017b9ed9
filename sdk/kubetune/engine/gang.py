"""Multi-node trials: one trial run by a gang of pods with a ``torchrun`` rendezvous.

With ``spec.trial.nodes: N`` the operator runs each trial as N pods created
together. Pod 0, the leader, runs the trial runner as any trial pod does: it
claims a trial, suggests its parameters and calls the objective. The objective
starts the trial's ranks with :func:`torchrun`, which starts ``torchrun`` as
node 0 and publishes how to join it (its arguments and the leader's address) on
the trial in the storage. Pods 1..N-1 serve the leader: each waits for the
leader's trial to publish, then starts the same ``torchrun`` as its own node,
and waits for the next (:mod:`kubetune_trial.gang`). Global rank 0 is on the
leader and is the one that reports to the pruner; every rank learns a pruning
verdict through the training framework (Lightning broadcasts it) and stops.

Locally, and for a one-node trial, :func:`torchrun` starts ``--standalone``
with ``processesPerNode`` processes: the same objective runs unchanged.

Example (an objective; ``train`` is the module every rank runs):
    >>> def objective(trial):                                          # doctest: +SKIP
    ...     trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    ...     done = torchrun(trial, ["-m", "train", "--study", trial.study.study_name,
    ...                             "--trial-id", str(trial._trial_id)])
    ...     ...
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

#: How many pods run one trial (``spec.trial.nodes``).
NODES_ENV = "KUBETUNE_NODES"
#: This pod's place in its gang: 0 for the leader.
NODE_RANK_ENV = "KUBETUNE_NODE_RANK"
#: Processes ``torchrun`` starts on each pod (``spec.trial.processesPerNode``).
PROCESSES_PER_NODE_ENV = "KUBETUNE_PROCESSES_PER_NODE"
#: The leader pod's name: the worker its trials record, which the other pods follow.
GANG_LEADER_ENV = "KUBETUNE_GANG_LEADER"
#: This pod's address (the downward API's status.podIP): where the others reach node 0.
POD_IP_ENV = "KUBETUNE_POD_IP"
#: The trial system attribute where the leader publishes its rendezvous.
LAUNCH_ATTR = "kubetune.gang.launch"
#: Seconds ``torchrun`` waits for every node to join (its ``--rdzv-timeout``'s part).
JOIN_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class Gang:
    """This process's place in a gang, read from its environment."""

    nodes: int = 1
    node_rank: int = 0
    processes_per_node: int | None = None
    """None where no operator set it (a local run): the study's spec says."""
    leader: str = ""
    address: str = "127.0.0.1"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Gang:
        env = os.environ if env is None else env
        return cls(
            nodes=int(env.get(NODES_ENV) or 1),
            node_rank=int(env.get(NODE_RANK_ENV) or 0),
            processes_per_node=int(env[PROCESSES_PER_NODE_ENV])
            if env.get(PROCESSES_PER_NODE_ENV)
            else None,
            leader=env.get(GANG_LEADER_ENV, ""),
            address=env.get(POD_IP_ENV) or "127.0.0.1",
        )

    @property
    def is_member(self) -> bool:
        """A pod that follows its leader's trials instead of claiming its own."""
        return self.nodes > 1 and self.node_rank > 0


@dataclass(frozen=True)
class Launch:
    """What the leader published: the ranks' arguments and where node 0 listens."""

    args: tuple[str, ...]
    address: str
    port: int
    nodes: int
    processes_per_node: int

    def to_attr(self) -> dict[str, Any]:
        return {
            "args": list(self.args),
            "address": self.address,
            "port": self.port,
            "nodes": self.nodes,
            "processesPerNode": self.processes_per_node,
        }

    @classmethod
    def from_attr(cls, value: Mapping[str, Any]) -> Launch:
        return cls(
            args=tuple(value["args"]),
            address=str(value["address"]),
            port=int(value["port"]),
            nodes=int(value["nodes"]),
            processes_per_node=int(value["processesPerNode"]),
        )

    def argv(self, node_rank: int) -> list[str]:
        """``torchrun`` for node ``node_rank`` (static rendezvous at node 0's address)."""
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nnodes={self.nodes}",
            f"--nproc-per-node={self.processes_per_node}",
            f"--node-rank={node_rank}",
            f"--master-addr={self.address}",
            f"--master-port={self.port}",
            *self.args,
        ]


def _spec_processes(trial: optuna.Trial) -> int:
    """``spec.trial.processesPerNode`` of the trial's study (1 for a plain Optuna study)."""
    from kubetune.engine import bridge

    spec = bridge.stored_spec(trial.storage, trial.study._study_id)
    return spec.trial.processes_per_node if spec is not None else 1


def free_port(address: str = "") -> int:
    """A TCP port free on this pod now, for node 0's rendezvous store."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def torchrun(
    trial: optuna.Trial,
    args: Sequence[str],
    *,
    processes: int | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``torchrun <args>`` for ``trial`` on every node of its gang; returns when
    node 0's ranks are done (output captured).

    ``args`` is what follows torchrun's own options (``["-m", "module", ...]`` or a
    script and its arguments). ``processes`` per node defaults to
    ``spec.trial.processesPerNode``. On a multi-node trial this publishes the
    rendezvous on the trial first, so the gang's other pods start the same ranks.
    """
    gang = Gang.from_env(env)
    per_node = processes or gang.processes_per_node or _spec_processes(trial)
    if gang.nodes <= 1:
        argv = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={per_node}",
            *args,
        ]
    else:
        launch = Launch(
            args=tuple(args),
            address=gang.address,
            port=free_port(),
            nodes=gang.nodes,
            processes_per_node=per_node,
        )
        trial.storage.set_trial_system_attr(trial._trial_id, LAUNCH_ATTR, launch.to_attr())
        argv = launch.argv(node_rank=0)
    return subprocess.run(argv, capture_output=True, text=True, check=False)
