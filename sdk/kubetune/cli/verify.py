"""``kubetune verify``: re-run the best trials of a finished study with other seeds.

Example:
    $ kubetune verify study.yaml --top 3 --repeats 5
    $ kubetune verify study.yaml --top 5 --repeats 10 -o best_params.json   # more later
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kubetune.cli.base import app, console, errors
from kubetune.cli.output import (
    ContextOption,
    KubeconfigOption,
    NamespaceOption,
    connect,
    esc,
    handled,
    show,
)
from kubetune.study.spec import VerifiedStatus


@app.command()
def verify(
    study: Annotated[
        str,
        typer.Argument(
            help="A Study file whose local study ran (kubetune run), or a finished "
            "Study's name on the cluster.",
            show_default=False,
        ),
    ],
    top: Annotated[
        int, typer.Option("--top", min=1, max=100, help="How many of the best trials to re-run.")
    ] = 3,
    repeats: Annotated[
        int,
        typer.Option(
            "--repeats",
            min=2,
            max=1000,
            help="How many times to re-run each (2 or more: an interval needs two values).",
        ),
    ] = 5,
    parallelism: Annotated[
        int | None,
        typer.Option("--parallelism", "-p", min=1, help="Worker processes (default: the spec's)."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="The storage its study is in (default: as kubetune run).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the winner's parameters.")
    ] = Path("best_params.json"),
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="A cluster Study: seconds to wait for its repeats."),
    ] = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Verify a finished study: re-run its TOP best trials REPEATS times each with other
    seeds (kubetune.seed(trial); $KUBETUNE_SEED for commands) and choose the winner on
    the mean, shown with its 95% confidence interval.

    The repeats run in a study of their own (<study>.verify), so they count against no
    budget and the sampler never sees them; repeats that ran before are not run again.
    The winner's parameters are written to --output, as kubetune run writes the best.
    A cluster Study gets spec.verify: the operator runs the repeats in trial pods.
    """
    with handled():
        from kubetune.engine.trials import best_of
        from kubetune.local.run import is_study_file

        if not is_study_file(study):
            client = connect(namespace, kubeconfig, context)
            errors.print(
                f"study/{esc(study)}: spec.verify set; the operator runs the repeats in trial "
                "pods (kubectl get study shows the condition Verifying)",
                highlight=False,
            )
            verified = client.verify(study, top=top, repeats=repeats, timeout=timeout)
            best = client.best_trials(study)
            print_verified(verified, best[0].number if best else None)
            _write_winner(verified, output)
            return
        import optuna

        from kubetune.cli.display import LocalRunProgress
        from kubetune.engine.storage import dispose, load_stored_study
        from kubetune.local.embedded import local_storage
        from kubetune.local.run import verify_local
        from kubetune.study.spec import load_study

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # as kubetune run: our own lines
        document = load_study(Path(study))
        line = LocalRunProgress(f"{document.metadata.name} verification", console=errors)
        with local_storage(storage, document) as url, contextlib.closing(line):

            def on_progress(progress: Any) -> None:
                line.start_once()
                line.update_local(progress, best=False)

            verified = verify_local(
                document,
                url,
                top=top,
                repeats=repeats,
                parallelism=parallelism,
                source=Path(study),
                on_progress=on_progress,
                on_message=lambda message: (
                    line.message(message)
                    if line.shown
                    else errors.print(esc(message), highlight=False)
                ),
            )
            name = document.spec.storage.study_name or document.metadata.name
            stored = load_stored_study(url, name)
            try:
                best = [t.model_dump() for t in best_of(stored)]
            finally:
                dispose(stored)
        print_verified(verified, best[0]["number"] if best else None)
        _write_winner(verified, output)


def _write_winner(verified: VerifiedStatus, output: Path) -> None:
    """best_params.json with the winner's parameters (nothing without a winner)."""
    from kubetune.engine.trials import best_params_document

    params = best_params_document([], verified.model_dump())
    if verified.winner is None or params is None:
        return
    output.write_text(json.dumps(params, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    console.print(f"the winner's parameters written to [bold]{esc(output)}[/]")


def print_verified(verified: VerifiedStatus, best_number: int | None = None) -> None:
    """The re-run trials, best mean first: their own value, the mean of their repeats
    and its 95% interval; says when the winner is not the best single trial."""
    table = Table(title="Verified: the best trials re-run with other seeds")
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("own value", justify="right")
    table.add_column("mean", justify="right")
    table.add_column("95% interval", no_wrap=True)
    table.add_column("repeats", justify="right")
    table.add_column("params", overflow="fold")
    for row in verified.trials:
        marker = " *" if row.number == verified.winner else ""
        table.add_row(
            f"{row.number}{marker}",
            _number(row.value),
            _number(row.mean),
            f"[{_number(row.low)}, {_number(row.high)}]" if row.low is not None else "-",
            str(row.repeats),
            ", ".join(f"{k}={v!r}" for k, v in row.params.items()),
        )
    show(table)
    if verified.winner is None:
        console.print("[yellow]no repeat completed: no verified winner[/]")
        return
    if best_number is not None and verified.winner != best_number:
        console.print(
            f"winner on the verified mean: trial [bold]{verified.winner}[/], not the best "
            f"single trial {best_number} (its value was luckier than its mean)",
            highlight=False,
        )
    else:
        console.print(f"winner on the verified mean: trial [bold]{verified.winner}[/]")
    if not verified.done:
        console.print("[yellow]some repeats did not end: run kubetune verify again[/]")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
