"""Finding a study's Optuna study from what a user types: a Study file or a name.

``kubetune best``, ``trials``, ``plot`` and ``dashboard`` take either. A path to
a YAML file is a local study (``kubetune run``): its storage is ``--storage``,
``$KUBETUNE_STORAGE_URL``, ``spec.storage.url`` or the embedded PostgreSQL
(started for as long as it is needed). A name with ``--storage`` is the Optuna
study of that name in that storage (no cluster needed). Anything else is the
name of a Study on the cluster, whose storage the
:class:`~kubetune.client.client.Client` finds.

Example:
    >>> with open_optuna_study("examples/quickstart.yaml") as study:   # doctest: +SKIP
    ...     print(len(study.trials))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kubetune.client.client import Client
from kubetune.local.run import is_study_file, local_optuna_study

if TYPE_CHECKING:
    import optuna


@contextlib.contextmanager
def open_optuna_study(
    target: str,
    *,
    storage: str | None = None,
    storage_host: str | None = None,
    namespace: str | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
) -> Iterator[optuna.Study]:
    """The Optuna study behind ``target``, usable while the block runs.

    - a Study file: the local study ``kubetune run`` made from it, in ``storage``,
      ``$KUBETUNE_STORAGE_URL``, ``spec.storage.url`` or the embedded PostgreSQL
      (started for as long as the block runs);
    - a name, with ``storage``: the Optuna study of that name in that storage, with
      no cluster involved; failing that, the cluster's Study of that name;
    - a name: the cluster's Study, found with the :class:`~kubetune.client.client.Client`.
    """
    if is_study_file(target):
        with local_optuna_study(Path(target), storage=storage) as study:
            yield study
        return
    with Client(
        namespace, kubeconfig=kubeconfig, context=context, storage_url=storage,
        storage_host=storage_host,
    ) as client:  # fmt: skip
        yield client.optuna_study(target)
