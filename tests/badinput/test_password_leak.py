"""A database password never shows up where kubetune writes: a whole local study
run with a URL that holds a password, and its error paths, scanned for it.

The test server trusts local connections, so the password is never checked;
what matters is that its text appears nowhere. (The cluster's side — statuses,
events, pod specs, operator and pod logs — is in ``tests/e2e/test_bad_input.py``.)
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest
from badinput_helpers import kubetune, write_study

pytestmark = pytest.mark.timeout(90)

PASSWORD = "Wh1sper-n0t-t3ll"
_roles = itertools.count()


@pytest.fixture
def password_url(postgres_server: Any, storage_url: str) -> Iterator[str]:
    """``storage_url`` as a role with a password would write it:
    ``postgresql://ROLE:PASSWORD@/DB?host=SOCKET`` (no driver named, as a Helm chart
    or a cloud console gives it)."""
    role = f"tuner_{os.getpid()}_{next(_roles)}"
    parts = urlsplit(storage_url)
    database = parts.path.lstrip("/")
    socket = parts.query.removeprefix("host=")
    connection = psycopg2.connect(postgres_server.get_uri())
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (PASSWORD,))
            cursor.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')
        yield f"postgresql://{role}:{PASSWORD}@/{database}?host={socket}"
    finally:
        inside = psycopg2.connect(postgres_server.get_uri(database=database))
        inside.autocommit = True
        with inside.cursor() as cursor:
            cursor.execute(f"REASSIGN OWNED BY {role} TO postgres")
        inside.close()
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{database}" OWNER TO postgres')
            cursor.execute(f"DROP ROLE {role}")
        connection.close()


def everything_stored(url: str) -> str:
    """Every attribute, name and value kubetune or Optuna stored, as one text."""
    connection = psycopg2.connect(url)
    texts: list[str] = []
    try:
        with connection.cursor() as cursor:
            for table in (
                "studies",
                "study_user_attributes",
                "study_system_attributes",
                "trial_user_attributes",
                "trial_system_attributes",
                "trial_params",
            ):
                cursor.execute(f"SELECT * FROM {table}")
                texts.extend(repr(row) for row in cursor.fetchall())
    finally:
        connection.close()
    return "\n".join(texts)


def files_under(directory: Path) -> str:
    return "\n".join(
        path.read_text(encoding="utf-8", errors="replace")
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    )


def test_a_whole_local_study_never_shows_the_password(
    cli_env: dict[str, str], password_url: str, tmp_path: Path
) -> None:
    spec = {
        "objective": {"direction": "minimize"},
        "sampler": {"name": "random", "seed": 0},
        "budget": {"maxTrials": 6, "parallelism": 2},
        # Odd trials fail with the URL in their exception, as a library that opens the
        # same database might put it there.
        "trial": {"python": "kt_bad_objectives:leaks_the_url"},
    }
    study_file = write_study(tmp_path, spec)
    first = kubetune(cli_env, tmp_path, "run", str(study_file), "--storage", password_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "3 complete, 0 pruned, 3 failed" in first.stdout
    # From the environment, and continuing the study (a second code path).
    env = {**cli_env, "KUBETUNE_STORAGE_URL": password_url}
    second = kubetune(env, tmp_path, "run", str(study_file), "--trials", "2")
    assert second.returncode == 0, second.stdout + second.stderr
    stored = everything_stored(password_url)
    assert "could not use postgresql://" in stored, "the failing trials ran"
    seen = {
        "output of kubetune run --storage": first.stdout + first.stderr,
        "output of kubetune run with $KUBETUNE_STORAGE_URL": second.stdout + second.stderr,
        "worker logs and best_params.json": files_under(tmp_path),
        "trial and study attributes in the storage": stored,
    }
    leaks = [where for where, text in seen.items() if PASSWORD in text]
    assert not leaks, f"the password shows in: {leaks}"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda url: url.replace("?host=", "_missing?host="), "does not exist"),
        (lambda url: url.split("?host=")[0] + "?host=/nonexistent/socket", "cannot reach"),
    ],
    ids=["no-such-database", "no-such-socket"],
)
def test_storage_errors_never_show_the_password(
    cli_env: dict[str, str], password_url: str, tmp_path: Path, change: Any, expected: str
) -> None:
    spec = {"budget": {"maxTrials": 1}, "trial": {"python": "kt_bad_objectives:quadratic"}}
    study_file = str(write_study(tmp_path, spec))
    result = kubetune(cli_env, tmp_path, "run", study_file, "--storage", change(password_url))
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert expected in output
    assert PASSWORD not in output
    assert ":***@" in output, "the message names the storage, password masked"
