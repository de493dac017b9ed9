"""Fixtures for the unit tests."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from test_reconciler_rules import Study


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


@pytest.fixture
def make(storage_url: str) -> Callable[..., Study]:
    """``make(**spec_changes)``: a Study (the reconciler's test double) on a FakeKube of
    its own and the test's database. test_reconciler_rules has its own, on its ``fake``."""
    from test_reconciler import FakeKube
    from test_reconciler_rules import Study

    def made(**changes: Any) -> Study:
        return Study(FakeKube(), storage_url, **changes)

    return made
