"""Multi-node trials' gangs of pods, as the reconciler sees them.

A gang (``spec.trial.nodes`` pods, labelled with the gang's name and each pod's
rank) is one worker: its leader, pod 0, claims and records the trials; the other
pods follow it. So the policy counts leaders only, and the gang lives and dies
together: a member that fails or goes fails the leader's trial and stops the
gang; a leader that is gone takes its members with it.

Example:
    >>> leader = {"metadata": {"name": "g-0", "labels": {GANG_LABEL: "g", NODE_RANK_LABEL: "0"}},
    ...           "status": {"phase": "Running"}}
    >>> member = {"metadata": {"name": "g-1", "labels": {GANG_LABEL: "g", NODE_RANK_LABEL: "1"}},
    ...           "status": {"phase": "Failed"}}
    >>> [(p["metadata"]["name"], why) for p, why in broken_gangs([leader, member], nodes=2)]
    [('g-0', 'pod g-1 ended (Failed)')]
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

from kubetune_operator.labels import GANG_LABEL, NODE_RANK_LABEL, gang_name
from kubetune_operator.pods import GangPlace, end_reason, has_ended, is_live

Pod = Mapping[str, Any]


def new_gang(study: str, nodes: int) -> list[GangPlace]:
    """The places of a new gang's pods, leader first (a random 5-character suffix, as
    the API server's generateName makes)."""
    alphabet = string.ascii_lowercase + string.digits
    name = gang_name(study, "".join(secrets.choice(alphabet) for _ in range(5)))
    return [GangPlace(name, rank, nodes) for rank in range(nodes)]


def _labels(pod: Pod) -> Mapping[str, str]:
    return pod["metadata"].get("labels") or {}


def is_member(pod: Pod) -> bool:
    """A gang's pod other than its leader."""
    return GANG_LABEL in _labels(pod) and _labels(pod).get(NODE_RANK_LABEL) != "0"


def leaders(pods: Sequence[Pod]) -> list[Pod]:
    """The pods that are workers: single trial pods and gang leaders."""
    return [p for p in pods if not is_member(p)]


def _gangs(pods: Sequence[Pod]) -> dict[str, list[Pod]]:
    gangs: dict[str, list[Pod]] = {}
    for pod in pods:
        if GANG_LABEL in _labels(pod):
            gangs.setdefault(_labels(pod)[GANG_LABEL], []).append(pod)
    return gangs


def broken_gangs(pods: Sequence[Pod], *, nodes: int) -> list[tuple[Pod, str]]:
    """(live leader, why) for each gang a member of which has ended, is being deleted
    or is missing: the whole gang must stop."""
    broken: list[tuple[Pod, str]] = []
    for gang, members in _gangs(pods).items():
        leader = next((p for p in members if not is_member(p)), None)
        if leader is None or not is_live(leader):
            continue
        lost = [p for p in members if is_member(p) and not is_live(p)]
        if lost:
            pod = lost[0]
            why = (
                end_reason(pod) if has_ended(pod) else f"pod {pod['metadata']['name']} was deleted"
            )
            broken.append((leader, why))
        elif len(members) < nodes:
            present = {_labels(p).get(NODE_RANK_LABEL) for p in members}
            rank = next(r for r in range(nodes) if str(r) not in present)
            broken.append((leader, f"pod {gang}-{rank} is gone"))
    return broken


def orphans(pods: Sequence[Pod]) -> list[Pod]:
    """Members whose leader is gone or no longer live: removed with it."""
    found: list[Pod] = []
    for members in _gangs(pods).values():
        leader = next((p for p in members if not is_member(p)), None)
        if leader is None or not is_live(leader):
            found += [
                p for p in members if is_member(p) and not p["metadata"].get("deletionTimestamp")
            ]
    return found
