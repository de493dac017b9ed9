"""What the CLI's cluster commands share: output formats, option types, the
mapping of errors to exit codes, and table rows for Studies.

Example:
    >>> age("2020-01-01T00:00:00Z", now=1577923200.0)
    '1d'
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from kubetune.study.spec import best_summary


class Output(str, enum.Enum):
    """``-o``: a table for people, JSON or YAML for scripts."""

    table = "table"
    json = "json"
    yaml = "yaml"


NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace", "-n", help="Namespace (default: the kubeconfig context's, else default)."
    ),
]
KubeconfigOption = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig",
        help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).",
        show_default=False,
    ),
]
ContextOption = Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="The study database's URL as reachable from here (default: read from the Study's "
        "Secret). Prefer --storage-host: the URL holds a password.",
        show_default=False,
    ),
]
ReadStorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="An Optuna storage URL. For a Study file (a local study): default "
        "$KUBETUNE_STORAGE_URL, spec.storage.url or the embedded PostgreSQL. For a name: the "
        "study of that name in this storage (no cluster needed), else the cluster Study's "
        "(default: its Secret's URL; prefer --storage-host, the URL holds a password).",
        show_default=False,
    ),
]
StorageHostOption = Annotated[
    str | None,
    typer.Option(
        "--storage-host",
        help="host:port to reach the database at, e.g. localhost:5432 through "
        "kubectl port-forward (the rest of the URL comes from the Study's Secret).",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="Output format: table, json or yaml.")
]


def connect(
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None,
    storage: str | None = None,
    storage_host: str | None = None,
) -> Any:
    """A :class:`~kubetune.client.client.Client` from the common options."""
    from kubetune.client.client import Client

    return Client(
        namespace,
        kubeconfig=kubeconfig,
        context=context,
        storage_url=storage,
        storage_host=storage_host,
    )


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Print the error (never a password) and exit with the documented code."""
    # Imported here: kubetune.cli imports the command modules, which import this one.
    from kubetune.cli.base import (
        EXIT_BAD_INPUT,
        EXIT_INTERRUPTED,
        EXIT_NOT_FOUND,
        EXIT_REFUSED,
        EXIT_RUN_ERROR,
        EXIT_STUDY_FAILED,
        EXIT_TIMEOUT,
        errors,
        print_error,
    )
    from kubetune.engine.scripts import ScriptError
    from kubetune.engine.storage import StorageUnavailable
    from kubetune.errors import (
        KubetuneError,
        NotFound,
        NotReady,
        SpecChangeRefused,
        StudyFailed,
        WaitTimeout,
    )
    from kubetune.study.spec import SpecError

    def fail(message: str, code: int) -> typer.Exit:
        print_error(message)
        return typer.Exit(code)

    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except ScriptError as error:  # an Optuna script kubetune cannot read its study from
        raise fail(str(error), EXIT_BAD_INPUT) from None
    except SpecError as error:
        errors.print("[red]error:[/]", highlight=False)
        for field, reason in error.problems:
            errors.print(f"  {field}: {reason}", markup=False, highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except StudyFailed as error:
        raise fail(str(error), EXIT_STUDY_FAILED) from None
    except (NotFound, NotReady) as error:
        raise fail(str(error), EXIT_NOT_FOUND) from None
    except SpecChangeRefused as error:
        raise fail(str(error), EXIT_REFUSED) from None
    except WaitTimeout as error:
        raise fail(str(error), EXIT_TIMEOUT) from None
    except (KubetuneError, StorageUnavailable) as error:
        raise fail(str(error), EXIT_RUN_ERROR) from None
    except ImportError as error:
        raise fail(str(error), EXIT_RUN_ERROR) from None
    except Exception as error:
        # A database error while reading trials: its first line, any URL password hidden.
        database_errors = getattr(sys.modules.get("sqlalchemy.exc"), "SQLAlchemyError", ())
        if not database_errors or not isinstance(error, database_errors):
            raise
        from kubetune.engine.storage import redact

        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise fail(f"the study's database: {redact(first)}", EXIT_RUN_ERROR) from None


def show(renderable: Any) -> None:
    """Print a table on standard output; piped, it keeps its full width (as kubectl's
    tables do) instead of folding to 80 columns."""
    from kubetune.cli.base import console

    console.print(renderable, width=None if console.is_terminal else 250)


def esc(text: Any) -> str:
    """``text`` safe to print with Rich markup on (``[min, max]`` would vanish as a tag)."""
    from rich.markup import escape

    return escape(str(text))


def emit(data: Any, output: Output) -> None:
    """Print ``data`` as JSON or YAML on standard output (plain text, no markup)."""
    if output is Output.json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


def clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A Study object without ``managedFields`` (noise for a reader)."""
    result = dict(obj)
    metadata = dict(result.get("metadata") or {})
    metadata.pop("managedFields", None)
    result["metadata"] = metadata
    return result


def _epoch(timestamp: str) -> float | None:
    text = timestamp.replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def age(timestamp: str | None, now: float | None = None) -> str:
    """kubectl's AGE: ``45s``, ``12m``, ``3h``, ``2d``."""
    if not timestamp:
        return "-"
    start = _epoch(timestamp)
    if start is None:
        return "-"
    seconds = max(0, int((now if now is not None else time.time()) - start))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def best_text(status: Mapping[str, Any]) -> str:
    """The status's ``best`` (a status written before it existed: the same from its
    ``bestTrial`` or ``paretoFront``), or ``-``."""
    return (
        status.get("best")
        or best_summary(status.get("bestTrial"), len(status.get("paretoFront") or []))
        or "-"
    )


STUDY_COLUMNS = (
    "NAME",
    "PHASE",
    "PROGRESS",
    "COMPLETE",
    "PRUNED",
    "FAILED",
    "RUNNING",
    "BEST",
    "AGE",
)


def study_row(obj: Mapping[str, Any], with_namespace: bool = False) -> list[str]:
    status = obj.get("status") or {}
    counts = status.get("trials") or {}
    meta = obj.get("metadata") or {}
    phase = status.get("phase") or "Pending"
    if meta.get("deletionTimestamp"):
        phase = "Terminating"
    row = [
        str(meta.get("name")),
        phase,
        str(status.get("progress") or "-"),
        *(str(counts.get(k, 0)) for k in ("complete", "pruned", "failed", "running")),
        best_text(status),
        age(meta.get("creationTimestamp")),
    ]
    row = [esc(cell) for cell in row]
    return [esc(meta.get("namespace", "")), *row] if with_namespace else row


def format_values(values: Any) -> str:
    if values is None:
        return "-"
    return ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values)


def format_params(params: Mapping[str, Any], limit: int | None = None) -> str:
    text = ", ".join(
        f"{k}={v!r}"
        if isinstance(v, str)
        else f"{k}={v:.6g}"
        if isinstance(v, float)
        else f"{k}={v}"
        for k, v in params.items()
    )
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text
