"""The ``kubetune`` command line: the only layer that prints with Rich and parses
with Typer.

``kubetune run STUDY.yaml`` runs a study on this machine; ``kubetune crd``
prints the CustomResourceDefinition; ``kubetune validate`` checks a file
(:mod:`kubetune.cli.local`). The cluster commands (``submit``, ``get``, ``list``,
``describe``, ``watch``, ``best``, ``trials``, ``logs``, ``delete``, ``suspend``,
``resume``, ``enqueue``) are in :mod:`kubetune.cli.cluster`; ``convert``, ``plot``
and ``dashboard`` in :mod:`kubetune.cli.tools`. The app, the consoles and the exit
codes every command shares are in :mod:`kubetune.cli.base`.
"""

from __future__ import annotations

import sys

try:
    import rich  # noqa: F401 - the commands print with it
    import typer
except ModuleNotFoundError as missing:  # pip install kubetune, without the cli extra
    print(
        f"error: the kubetune command needs the cli extra ({missing.name} is not installed): "
        "pip install 'kubetune[cli]'",
        file=sys.stderr,
    )
    raise SystemExit(3) from None

# The commands register themselves on ``app`` when their modules are imported.
from kubetune.cli import cluster, fork, local, tools, verify  # noqa: F401
from kubetune.cli.base import EXIT_BAD_INPUT, app, errors, print_error

__all__ = ["app", "main"]


def main() -> None:
    """The ``kubetune`` command: the console script, and ``python -m kubetune.cli``."""
    from typer.main import get_command

    try:
        # Not standalone: a command-line mistake comes back here, to be shown as below.
        code = get_command(app).main(standalone_mode=False)
    except typer.Abort:
        print_error("aborted")
        raise SystemExit(1) from None
    except typer.TyperException as error:  # Click's errors: usage, bad parameter
        _usage_error(error)
        raise SystemExit(getattr(error, "exit_code", EXIT_BAD_INPUT)) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def _usage_error(error: typer.TyperException) -> None:
    """A mistake on the command line (an unknown option, a bad value): in a terminal,
    Typer's box; piped, plain lines that are never wrapped, the error on one line."""
    if type(error).__name__ == "NoArgsIsHelpError":
        return  # its message is the help, printed already
    if errors.is_terminal:
        from typer import rich_utils

        rich_utils.rich_format_error(error)  # type: ignore[arg-type]
        return
    ctx = getattr(error, "ctx", None)
    if ctx is not None:
        errors.print(ctx.get_usage(), markup=False, highlight=False)
        errors.print(f"Try '{ctx.command_path} --help' for help.", markup=False, highlight=False)
    format_message = getattr(error, "format_message", None)
    print_error(format_message() if format_message is not None else error)
