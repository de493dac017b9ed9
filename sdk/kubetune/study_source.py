"""Finding a study's Optuna study from what a user types: a Study file or a name.

``kubetune plot`` and ``kubetune dashboard`` take either. A path to a YAML
file is a local study (``kubetune run``): its storage is ``--storage``,
``$KUBETUNE_STORAGE_URL``, ``spec.storage.url`` or the embedded PostgreSQL
(started for as long as it is needed). Anything else is the name of a Study on
the cluster, whose storage the :class:`~kubetune.client.Client` finds.

Example:
    >>> with open_optuna_study("examples/quickstart.yaml") as study:   # doctest: +SKIP
    ...     print(len(study.trials))
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kubetune.errors import NotFound

if TYPE_CHECKING:
    import optuna


def is_study_file(target: str) -> bool:
    return Path(target).is_file() or target.endswith((".yaml", ".yml", ".json"))


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
    """The Optuna study behind ``target`` (a Study file, or a Study's name on the cluster)."""
    import optuna

    if is_study_file(target):
        from kubetune.spec import SpecError, load_study
        from kubetune.storage import open_storage

        if not Path(target).is_file():
            raise SpecError([(target, "no such file")])
        document = load_study(Path(target))
        name = document.spec.storage.study_name or document.metadata.name
        with contextlib.ExitStack() as stack:
            url = storage or os.environ.get("KUBETUNE_STORAGE_URL") or document.spec.storage.url
            if url is None:
                from kubetune.embedded import embedded_postgres

                url = stack.enter_context(embedded_postgres())
            opened = open_storage(url, retry_seconds=10)
            try:
                study = optuna.load_study(study_name=name, storage=opened)
            except KeyError:
                raise NotFound(
                    "optuna study", name, hint=f"run it first: kubetune run {target}"
                ) from None
            yield study
        return
    from kubetune.client import Client

    with Client(
        namespace, kubeconfig=kubeconfig, context=context, storage_url=storage,
        storage_host=storage_host,
    ) as client:  # fmt: skip
        yield client.optuna_study(target)
