"""The commands that need no cluster: ``kubetune run STUDY.yaml`` runs a study on this
machine, ``kubetune validate`` checks a file, ``kubetune crd`` prints the
CustomResourceDefinition; and ``delete_local``, which ``kubetune delete STUDY.yaml``
uses.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kubetune.cli.base import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    EXIT_RUN_ERROR,
    EXIT_STUDY_FAILED,
    app,
    console,
    errors,
    print_error,
)
from kubetune.cli.display import StudyProgress


def _load(path: Path) -> object:
    from kubetune.study.spec import SpecError, load_study

    if not path.is_file():
        print_error(f"{path}: no such file")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        return load_study(path)
    except SpecError as error:
        print_error(f"{path} is not a valid Study:")
        for field, reason in error.problems:
            # A problem with the whole document has no field to name.
            line = f"  {field}: {reason}" if field else f"  {reason}"
            errors.print(line, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="A Study YAML file.")],
) -> None:
    """Check a Study file without running it (and a built-in's data file, if it is here)."""
    from kubetune.engine.bridge import check_buildable
    from kubetune.study.builtin_rules import check_local_data
    from kubetune.study.spec import SpecError, Study

    study = _load(path)
    assert isinstance(study, Study)
    try:
        check_buildable(study.spec)
        notes = check_local_data(study.spec)
    except SpecError as error:
        for field, reason in error.problems:
            print_error(f"{field}: {reason}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    for note in notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"{path}: valid Study [bold]{study.metadata.name}[/]")


@app.command()
def crd() -> None:
    """Print the Study CustomResourceDefinition (what crds/study.yaml holds)."""
    from kubetune.study.crd import crd_yaml

    typer.echo(crd_yaml(), nl=False)


@app.command()
def run(
    path: Annotated[Path, typer.Argument(help="A Study YAML file.")],
    trials: Annotated[
        int | None,
        typer.Option(
            "--trials", "-n", min=1, help="Run this many more trials (default: the budget)."
        ),
    ] = None,
    parallelism: Annotated[
        int | None,
        typer.Option("--parallelism", "-p", min=1, help="Worker processes (default: the spec's)."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="An Optuna storage URL (default: $KUBETUNE_STORAGE_URL, spec.storage.url, "
            "or the embedded PostgreSQL).",
            show_default=False,
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Delete the study's earlier trials and start over.")
    ] = False,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the best parameters.")
    ] = Path("best_params.json"),
) -> None:
    """Run a study on this machine with worker processes, until its budget is spent.

    Running it again continues the study; Ctrl-C stops the workers and keeps every
    finished trial.
    """
    import optuna

    from kubetune.engine.storage import StorageUnavailable
    from kubetune.errors import SpecChangeRefused
    from kubetune.local.run import LocalRun, LocalRunError
    from kubetune.study.spec import SpecError, Study

    study = _load(path)
    assert isinstance(study, Study)
    _check_local_data(study.spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with contextlib.ExitStack() as stack:
        url = _local_storage(study, storage, stack)
        reporter = _ProgressReporter(study.metadata.name, console=console)
        stack.enter_context(reporter)
        local = LocalRun(
            study,
            url,
            trials=trials,
            parallelism=parallelism,
            fresh=fresh,
            source=path,
            on_progress=reporter.update_local,
            on_message=reporter.message,
        )
        try:
            result = local.run()
        except SpecError as error:
            reporter.close()
            for field, reason in error.problems:
                print_error(f"{field}: {reason}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except SpecChangeRefused as error:
            reporter.close()
            print_error(error)
            raise typer.Exit(EXIT_REFUSED) from None
        except (LocalRunError, StorageUnavailable) as error:
            reporter.close()
            print_error(error)
            raise typer.Exit(EXIT_RUN_ERROR) from None
    _report(result, output, local.log_dir, path)
    if result.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.failed:
        raise typer.Exit(EXIT_STUDY_FAILED)


def _check_local_data(spec: object) -> None:
    """A built-in's data file, checked before any storage or worker starts: local
    workers read it from here, so a file that is not here is an error, not a note."""
    from kubetune.study.builtin_rules import check_local_data
    from kubetune.study.spec import SpecError, StudySpec

    assert isinstance(spec, StudySpec)
    try:
        missing = check_local_data(spec)
    except SpecError as error:
        for field, reason in error.problems:
            print_error(f"{field}: {reason}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if missing:
        builtin = spec.trial.builtin
        assert builtin is not None
        print_error(
            f"spec.trial.builtin.data.path: {builtin.data.path} does not exist on this "
            f"machine (relative to {Path.cwd()}, where the workers run)"
        )
        raise typer.Exit(EXIT_BAD_INPUT)


def _local_storage(
    study: object, storage: str | None, stack: contextlib.ExitStack, *, reading_hint: bool = True
) -> str:
    """A local study's storage URL: ``--storage``, ``$KUBETUNE_STORAGE_URL``,
    ``spec.storage.url``, else the embedded PostgreSQL, started for as long as
    ``stack`` lasts. ``reading_hint`` says how to read the study afterwards."""
    from kubetune.engine.storage import redact
    from kubetune.local.embedded import configured_storage, data_home, local_storage
    from kubetune.study.spec import Study

    assert isinstance(study, Study)
    if configured_storage(storage, study) is None:
        console.print("[dim]starting the embedded PostgreSQL…[/]")
        url = stack.enter_context(local_storage(storage, study))
        # Its URL (a socket of this run) dies with the command: say what outlives it.
        hint = (
            " (afterwards: kubetune best|trials|plot|dashboard STUDY.yaml; in Python, "
            "kubetune.local_storage())"
            if reading_hint
            else ""
        )
        console.print(
            f"[dim]storage: the embedded PostgreSQL in {escape(str(data_home() / 'postgres'))}, "
            f"up while this command runs{hint}[/]",
            soft_wrap=True,
            highlight=False,
        )
        return url
    url = stack.enter_context(local_storage(storage, study))
    console.print(f"[dim]storage: {escape(redact(url))}[/]", soft_wrap=True, highlight=False)
    return url


def delete_local(path: Path, storage: str | None) -> None:
    """``kubetune delete STUDY.yaml``: delete a local study and its trials."""
    from kubetune.cli.output import handled
    from kubetune.local.run import delete_local_study
    from kubetune.study.spec import Study

    study = _load(path)
    assert isinstance(study, Study)
    with handled(), contextlib.ExitStack() as stack:
        url = _local_storage(study, storage, stack, reading_hint=False)
        count = delete_local_study(study, url, path)
    name = study.spec.storage.study_name or study.metadata.name
    console.print(f"study {name!r} deleted ({count} trials)", highlight=False)


class _ProgressReporter(StudyProgress):
    """``kubetune run``'s live line, fed by :class:`kubetune.local.run.LocalRun`."""

    def update_local(self, progress: object) -> None:
        from kubetune.local.run import Progress

        assert isinstance(progress, Progress)
        self.update(
            total=progress.max_trials,
            counts=progress.counts,
            best=progress.best_values,
            best_number=progress.best_number,
        )


def _report(result: object, output: Path, log_dir: Path, path: Path) -> None:
    """How the run ended: counts, why it stopped, why trials failed, the best trial."""
    from kubetune.local.run import LocalResult, write_best_params

    assert isinstance(result, LocalResult)
    counts = result.counts
    console.print(
        f"study [bold]{escape(result.study_name)}[/]: {counts.complete} complete, "
        f"{counts.pruned} pruned, {counts.failed} failed"
        + (f", {len(result.requeued)} stopped" if result.requeued else ""),
        highlight=False,
    )
    if result.interrupted:
        stopped = ", ".join(str(n) for n in result.requeued)
        console.print(
            "[yellow]stopped by Ctrl-C[/]; finished trials are kept"
            + (
                f"; the running trial(s) {stopped} are queued to run again first"
                if result.requeued
                else ""
            )
            + ". Run the same command to continue.",
            highlight=False,
        )
    elif result.already_complete and result.stop is not None:
        # Nothing ran: say so, and show the best the study already has.
        ended = "already ended" if result.failed else "is already complete"
        console.print(
            f"study {escape(result.study_name)} {ended} "
            f"([bold]{result.stop.value}[/]: {escape(result.stop_message)}); nothing to run. "
            f"To run more trials: kubetune run {escape(str(path))} --trials N; to start "
            "over: --fresh.",
            highlight=False,
        )
    elif result.stop is not None:
        style = "red" if result.failed else "green"
        console.print(f"[{style}]{result.stop.value}[/]: {escape(result.stop_message)}")
    if result.failures:
        _print_failures(result.failures)
    if result.best_trials:
        table = Table(title="Best trial" if len(result.best_trials) == 1 else "Pareto front")
        # In a narrow terminal values and parameters fold onto more lines, never cut.
        table.add_column("trial", justify="right", no_wrap=True)
        table.add_column("value(s)", overflow="fold")
        table.add_column("params", overflow="fold")
        for trial in result.best_trials:
            table.add_row(
                str(trial["number"]),
                ", ".join(f"{v:.6g}" for v in trial["values"]),
                "\n".join(f"{k} = {v!r}" for k, v in trial["params"].items()),
            )
        console.print(table)
        if write_best_params(result, output):
            console.print(f"best parameters written to [bold]{escape(str(output))}[/]")
    else:
        console.print("[yellow]no trial completed; no best parameters to write[/]")
        if output.is_file():
            # An older file would pass for this study's result (kubetune run && train.py).
            output.unlink()
            console.print(
                f"[yellow]removed the earlier {escape(str(output))}[/]: it was not this "
                "study's result",
                highlight=False,
            )
    console.print(f"[dim]worker logs: {log_dir}[/]")


#: Reasons shown in the failed-trials table; the rest are counted in one line.
MAX_FAILURE_REASONS = 5


def _print_failures(failures: list[tuple[str, list[int]]]) -> None:
    """Why trials failed: each reason once, with how many and which trials."""
    table = Table(title="Failed trials")
    table.add_column("trials", justify="right", no_wrap=True)
    table.add_column("numbers", overflow="fold")
    table.add_column("reason", overflow="fold")
    for reason, numbers in failures[:MAX_FAILURE_REASONS]:
        shown = ", ".join(str(n) for n in numbers[:8]) + (", …" if len(numbers) > 8 else "")
        table.add_row(str(len(numbers)), shown, Text(reason))
    console.print(table)
    rest = failures[MAX_FAILURE_REASONS:]
    if rest:
        count = sum(len(numbers) for _, numbers in rest)
        console.print(f"and {count} trial(s) failed for {len(rest)} other reason(s)")
    console.print(
        "[dim]each reason's end: the trial's user attribute kubetune.fail_reason; "
        "all a trial printed: the worker logs[/]"
    )
