"""Storage URLs as users write them: the driver kubetune has, passwords kept out of
messages, and a first connection that gives up quickly when asked to."""

from __future__ import annotations

import time

import pytest
from kubetune.engine.storage import (
    StorageUnavailable,
    is_connection_error,
    open_storage,
    redact,
    sqlalchemy_url,
)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        # What the Helm chart's Secret, Heroku and most consoles give: no driver named.
        ("postgresql://u:p@db:5432/optuna", "postgresql+psycopg2://u:p@db:5432/optuna"),
        ("postgres://u:p@db/optuna", "postgresql+psycopg2://u:p@db/optuna"),
        ("postgresql+psycopg2://u@/x?host=/s", "postgresql+psycopg2://u@/x?host=/s"),
        ("mysql+pymysql://u:p@db/optuna", "mysql+pymysql://u:p@db/optuna"),
        ("sqlite:///study.db", "sqlite:///study.db"),
    ],
)
def test_a_postgresql_url_without_a_driver_uses_psycopg2(given: str, used: str) -> None:
    # SQLAlchemy 2.1 would pick psycopg 3, which kubetune does not install.
    assert sqlalchemy_url(given) == used


def test_an_unreachable_storage_fails_within_the_first_connection_wait() -> None:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        open_storage("postgresql://tuner:s3cret-pw@127.0.0.1:1/optuna", retry_seconds=2)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith("cannot reach the storage at postgresql+psycopg2://tuner:***@")
    assert "s3cret" not in message
    assert redact("postgresql://tuner:s3cret-pw@db/x") == "postgresql://tuner:***@db/x"


def test_connection_errors_are_told_from_data_errors() -> None:
    import optuna
    import sqlalchemy.exc

    lost = sqlalchemy.exc.OperationalError(
        "SELECT 1", {}, Exception("server closed the connection")
    )
    wrapped = optuna.exceptions.StorageInternalError("An exception is raised during the commit.")
    wrapped.__cause__ = lost
    assert is_connection_error(lost)
    assert is_connection_error(wrapped)
    bad_data = sqlalchemy.exc.DataError("INSERT", {}, Exception("value too long"))
    assert not is_connection_error(bad_data)
    assert not is_connection_error(StorageUnavailable("gave up already"))
