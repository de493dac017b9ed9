"""What every ``kubetune`` command shares: the Typer app the commands register on,
the consoles (stdout, and stderr for errors), the exit codes and ``print_error``.

Exit codes, the same for every command, for scripts to rely on:

- 0 done;
- 1 the study failed (too many failed trials, trial pods that cannot run);
- 2 bad input (the message names the field or the file);
- 3 the command could not go on (cluster, database or objective unreachable;
  a request the API server refused; a missing optional package);
- 4 not found (the study, the pod, the trial, or no best trial yet);
- 5 refused (a started study's objective, search space, sampler or code changed);
- 6 timed out (``--timeout`` of ``submit --wait`` and ``watch``);
- 130 interrupted.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from kubetune.cli.display import make_console

app = typer.Typer(
    name="kubetune",
    help="Kubernetes-native hyperparameter tuning on Optuna.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped or redirected, no line is wrapped or cut (see make_console).
console = make_console()
errors = make_console(stderr=True)

EXIT_STUDY_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_RUN_ERROR = 3
EXIT_NOT_FOUND = 4
EXIT_REFUSED = 5
EXIT_TIMEOUT = 6
EXIT_INTERRUPTED = 130


def print_error(message: object) -> None:
    """``error: MESSAGE`` on stderr, "error:" in red; the message is printed as written,
    never read as Rich markup (it may hold brackets: a field path, a command line), and
    never wrapped: one error, one line (or the message's own lines)."""
    errors.print(f"[red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"kubetune {version('kubetune')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("kubetune (version unknown: the package is not installed)")
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    # Options of ``kubetune`` itself, before the command (the app's help= is its help).
    pass
