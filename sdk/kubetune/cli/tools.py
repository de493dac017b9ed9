"""``kubetune convert``, ``kubetune plot`` and ``kubetune dashboard``.

Example:
    $ kubetune convert wandb sweep.yaml > study.yaml      # warnings on stderr
    $ kubetune plot examples/quickstart.yaml --kind history -o history.html
    $ kubetune dashboard lgbm-breast-cancer --storage-host localhost:5432
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer

from kubetune.cli.base import EXIT_BAD_INPUT, EXIT_RUN_ERROR, app, console, errors, print_error
from kubetune.cli.output import (
    ContextOption,
    KubeconfigOption,
    NamespaceOption,
    ReadStorageOption,
    StorageHostOption,
    esc,
    handled,
)

StudyArgument = Annotated[
    str,
    typer.Argument(
        help="A Study YAML file or an Optuna script (the local study kubetune run made from "
        "it), a study's name in --storage, or a Study's name on the cluster.",
        show_default=False,
    ),
]


class SourceKind(str, enum.Enum):
    wandb = "wandb"
    katib = "katib"
    hydra = "hydra"


class Format(str, enum.Enum):
    yaml = "yaml"
    json = "json"


class PlotlyJs(str, enum.Enum):
    directory = "directory"
    cdn = "cdn"
    inline = "inline"


class PlotKind(str, enum.Enum):
    history = "history"
    importance = "importance"
    parallel = "parallel"
    pareto = "pareto"
    intermediate = "intermediate"


@app.command()
def convert(
    source: Annotated[SourceKind, typer.Argument(help="What the file is: wandb, katib or hydra.")],
    path: Annotated[Path, typer.Argument(help="The sweep, Experiment or Hydra config file.")],
    name: Annotated[
        str | None, typer.Option("--name", help="The Study's name (default: from the file).")
    ] = None,
    image: Annotated[str | None, typer.Option("--image", help="The trial image.")] = None,
    program: Annotated[
        str | None, typer.Option("--program", help="hydra: the script the trials run.")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="hydra: the name the task prints its result under."),
    ] = None,
    output: Annotated[Format, typer.Option("--output", "-o", help="yaml or json.")] = Format.yaml,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 2 when anything could not be carried over.")
    ] = False,
) -> None:
    """Print a Study converted from a W&B sweep, a Katib Experiment or a Hydra config.

    What cannot be carried over is listed on standard error, never dropped silently.
    """
    from kubetune.convert import ConversionError
    from kubetune.convert import convert as run_conversion

    if not path.is_file():
        print_error(f"{path}: no such file")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        result = run_conversion(
            source.value, path, name=name, image=image, program=program, metric=metric
        )
    except ConversionError as error:
        print_error(f"{path}: {error}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if output is Format.json:
        typer.echo(json.dumps(result.study, indent=2, ensure_ascii=False))
    else:
        typer.echo(result.to_yaml(), nl=False)
    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/] {esc(warning)}", highlight=False, soft_wrap=True)
    if strict and result.warnings:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def plot(
    study: StudyArgument,
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="The figure file: .html (interactive), .png, .svg or .pdf."
        ),
    ],
    kind: Annotated[PlotKind, typer.Option("--kind", "-k", help="Which figure.")] = (
        PlotKind.history
    ),
    params: Annotated[
        list[str] | None,
        typer.Option("--param", help="importance/parallel: only these parameters (repeatable)."),
    ] = None,
    objective: Annotated[
        int, typer.Option("--objective", help="Multi-objective studies: which objective (0-based).")
    ] = 0,
    plotlyjs: Annotated[
        PlotlyJs,
        typer.Option(
            "--plotlyjs",
            help=".html: where the figure loads plotly.js from. directory: one plotly.min.js "
            "written beside the figures (opens offline); cdn: Plotly's CDN (needs the network); "
            "inline: inside the figure (one file to send, 4.7 MB more).",
        ),
    ] = PlotlyJs.directory,
    storage: ReadStorageOption = None,
    storage_host: StorageHostOption = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Draw a figure of a study with Optuna's visualization module.

    An .html figure loads plotly.js from plotly.min.js beside it (written once for
    the folder's figures), so each figure holds only its data; see --plotlyjs.
    """
    from kubetune.client.sources import open_optuna_study
    from kubetune.visualization.plots import PlotError, write_plot

    with handled():
        try:
            with open_optuna_study(
                study,
                storage=storage,
                storage_host=storage_host,
                namespace=namespace,
                kubeconfig=str(kubeconfig) if kubeconfig else None,
                context=context,
            ) as optuna_study:
                write_plot(
                    optuna_study,
                    kind.value,
                    output,
                    params=params,
                    objective=objective,
                    plotlyjs=plotlyjs.value,
                )
        except PlotError as error:
            print_error(error)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        shared = output.suffix.lower() == ".html" and plotlyjs is PlotlyJs.directory
        console.print(
            f"{kind.value} of {esc(study)} written to [bold]{esc(output)}[/]"
            + (" (it loads plotly.min.js beside it)" if shared else ""),
            highlight=False,
        )


@app.command()
def dashboard(
    study: StudyArgument,
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8080,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback: only this machine).")
    ] = "127.0.0.1",
    storage: ReadStorageOption = None,
    storage_host: StorageHostOption = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Serve optuna-dashboard on a study's storage from this machine, until Ctrl-C.

    For a cluster study, forward the database's port first, e.g.
    kubectl -n kubetune port-forward svc/kubetune-postgresql 5432:5432, then pass
    --storage-host localhost:5432.
    """
    from kubetune.client.sources import open_optuna_study
    from kubetune.visualization.dashboard import serve, study_url

    with (
        handled(),
        open_optuna_study(
            study,
            storage=storage,
            storage_host=storage_host,
            namespace=namespace,
            kubeconfig=str(kubeconfig) if kubeconfig else None,
            context=context,
        ) as optuna_study,
    ):
        console.print(
            f"optuna-dashboard for study [bold]{optuna_study.study_name}[/]: "
            f"{study_url(host, port, optuna_study._study_id)}  (Ctrl-C stops it)",
            highlight=False,
            soft_wrap=True,
        )
        try:
            serve(optuna_study._storage, host=host, port=port)
        except KeyboardInterrupt:
            pass  # the way to stop it (bottle's own server usually swallows it first)
        except OSError as error:
            print_error(f"cannot serve on {host}:{port}: {error}")
            raise typer.Exit(EXIT_RUN_ERROR) from None
        console.print("dashboard stopped")
