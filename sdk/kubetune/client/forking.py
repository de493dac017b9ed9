"""``Client.fork``: a new Study that starts from the finished trials of another.

Locally (a Study file) the fork is a new Study document: ``kubetune run`` of it
copies the parent's trials that fit its search space from the same storage
before its first trial. On a cluster the fork is submitted as a Study with
``spec.forkFrom``; the operator copies the trials when it creates the fork's
storage and shows what it copied in ``status.parent``.

Example:
    >>> client = kubetune.Client()                                   # doctest: +SKIP
    >>> new = client.fork("study.yaml", ["searchSpace.x.high=10"])   # doctest: +SKIP
    >>> Path("wider.yaml").write_text(yaml.safe_dump(new.to_dict()))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.engine.fork import fork_document, plan_fork
from kubetune.study.spec import Study, load_study

if TYPE_CHECKING:
    import optuna


def local_fork(
    path: Path,
    parent_study: optuna.Study,
    sets: Iterable[str],
    *,
    name: str | None,
    defaults: Mapping[str, Any] | None,
) -> tuple[Study, int, int]:
    """The fork of the Study file ``path`` whose local study is ``parent_study``, and
    how many of its trials ``kubetune run`` will copy and leave out."""
    parent = load_study(path)
    sets = list(sets)
    ref = parent.spec.storage.study_name or parent.metadata.name
    draft = fork_document(parent, sets, name=name, parent_ref=ref, defaults=defaults)
    plan = plan_fork(
        ref,
        parent_study.get_trials(deepcopy=False),
        draft.spec,
        parent_directions=[d.name for d in parent_study.directions],
    )
    document = fork_document(
        parent, sets, name=name, parent_ref=ref, defaults=defaults, trials_copied=len(plan.copies)
    )
    return document, len(plan.copies), len(plan.left_out)


def cluster_fork(
    parent: Study,
    sets: Iterable[str],
    *,
    name: str | None,
    defaults: Mapping[str, Any] | None,
) -> Study:
    """The fork of the cluster Study ``parent``; its budget is raised by the parent's
    finished trials (COMPLETE or PRUNED), the most the operator can copy."""
    counts = parent.status.trials if parent.status is not None else None
    finished = counts.complete + counts.pruned if counts is not None else 0
    return fork_document(
        parent,
        sets,
        name=name,
        parent_ref=parent.metadata.name,
        defaults=defaults,
        trials_copied=finished,
    )
