"""Fixtures for the unit tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _close_the_reconcilers_storages() -> Iterator[None]:
    """The operator keeps one storage (one connection pool) per database for as long as
    it runs; here each test's reconciler uses a database of its own, so its pool is
    closed after the test (else the idle connections of every test run by one worker
    add up to the server's max_connections)."""
    yield
    reconciler = sys.modules.get("kubetune_operator.reconciler")
    if reconciler is None:
        return
    from kubetune.engine.storage import engine_of

    for storage in reconciler._STORAGES.values():
        engine = engine_of(storage)
        if engine is not None:
            engine.dispose()
    reconciler._STORAGES.clear()
