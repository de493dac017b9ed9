"""A database password never shows up where kubetune writes: a whole local study
run with a URL that holds a password, and its error paths, scanned for it.

The test server trusts local connections, so the password is never checked;
what matters is that its text appears nowhere. (The cluster's side — statuses,
events, pod specs, operator and pod logs — is in ``tests/e2e/test_bad_input.py``.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from badinput_helpers import kubetune, write_study

pytestmark = pytest.mark.timeout(90)

PASSWORD = "Wh1sper-n0t-t3ll"


@pytest.fixture
def password_url(url_with_password: Callable[[str], str]) -> str:
    return url_with_password(PASSWORD)


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
