"""A gang member: a pod of a multi-node trial other than its leader.

It claims nothing. It waits for its leader's running trial to publish its
``torchrun`` rendezvous (:mod:`kubetune.engine.gang`), starts the same ranks as its
own node, and waits for the leader's next trial. It runs until the operator
removes it with its leader (a gang ends together). If its ranks fail, it exits
with their exit code: the operator then fails the trial and the whole gang.

    KUBETUNE_NODES=2 KUBETUNE_NODE_RANK=1 KUBETUNE_GANG_LEADER=s-trial-ab12c-0 kubetune-trial
"""

from __future__ import annotations

import logging
import subprocess
import time
from typing import TYPE_CHECKING

from kubetune.engine.gang import LAUNCH_ATTR, Gang, Launch
from kubetune.engine.recovery import WORKER_ATTR
from kubetune.engine.storage import open_storage
from kubetune.engine.worker import WorkerConfig

if TYPE_CHECKING:
    import optuna

#: How often the storage is asked for the leader's next trial.
POLL_SECONDS = 0.5
#: How long this node's ranks may outlive the trial they serve before they are stopped
#: (they normally end with it; a rank left waiting for a rendezvous that will never come
#: would keep this pod from the leader's next trial).
LINGER_SECONDS = 30.0

log = logging.getLogger("kubetune.trial.gang")


def serve(config: WorkerConfig, url: str, gang: Gang) -> int:
    """Follow the leader's trials until stopped; 0, or the ranks' failing exit code."""
    import optuna

    storage = open_storage(url)
    study_id = storage.get_study_id_from_name(config.study_name)
    served: set[int] = set()
    log.info("node %d of %d, following %s", gang.node_rank, gang.nodes, gang.leader)
    while True:
        running = storage.get_all_trials(
            study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
        )
        launches = [
            (trial.number, trial._trial_id, trial.system_attrs[LAUNCH_ATTR])
            for trial in running
            if trial.user_attrs.get(WORKER_ATTR) == gang.leader
            and LAUNCH_ATTR in trial.system_attrs
            and trial._trial_id not in served
        ]
        if not launches:
            time.sleep(POLL_SECONDS)
            continue
        number, trial_id, attr = launches[0]
        served.add(trial_id)
        launch = Launch.from_attr(attr)
        log.info(
            "trial %d: node %d joins %s:%d", number, gang.node_rank, launch.address, launch.port
        )
        code = _run_ranks(storage, trial_id, launch.argv(gang.node_rank))
        if code:
            log.error("trial %d: the ranks of node %d exited with %d", number, gang.node_rank, code)
            return code


def _run_ranks(storage: optuna.storages.BaseStorage, trial_id: int, argv: list[str]) -> int:
    """Run this node's ranks; their exit code, or 0 if they were stopped because the
    trial had ended without them (its leader failed or was pruned before they joined)."""
    # The ranks inherit this process's output: the pod's log, as on the leader.
    ranks = subprocess.Popen(argv)
    ended_at: float | None = None
    while ranks.poll() is None:
        time.sleep(POLL_SECONDS)
        if ended_at is None and storage.get_trial(trial_id).state.is_finished():
            ended_at = time.monotonic()
        if ended_at is not None and time.monotonic() - ended_at > LINGER_SECONDS:
            log.warning("its trial ended %.0f s ago: stopping this node's ranks", LINGER_SECONDS)
            ranks.terminate()
            try:
                ranks.wait(timeout=10)
            except subprocess.TimeoutExpired:
                ranks.kill()
                ranks.wait()
            return 0
    return ranks.returncode
