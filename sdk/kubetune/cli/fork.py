"""``kubetune fork``: a new Study that starts with the finished trials of another.

Example:
    $ kubetune fork study.yaml --set searchSpace.x.high=10 -o wider.yaml   # local
    $ kubetune run wider.yaml             # copies the trials that fit, then runs new ones
    $ kubetune fork lgbm --set sampler.name=gp --name lgbm-gp              # on the cluster
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kubetune.cli.base import app, console, errors
from kubetune.cli.output import (
    ContextOption,
    KubeconfigOption,
    NamespaceOption,
    connect,
    esc,
    handled,
)


@app.command()
def fork(
    study: Annotated[
        str,
        typer.Argument(
            help="The parent: a Study file (its local study) or a Study's name on the cluster.",
            show_default=False,
        ),
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A change of the spec: path.to.field=value, the value read as YAML "
            "(searchSpace.x.high=10, sampler.name=random, "
            "'searchSpace.depth={type: int, low: 1, high: 8}'); repeatable.",
        ),
    ] = None,
    default: Annotated[
        list[str] | None,
        typer.Option(
            "--default",
            help="name=value: the value the parent's trials had for a parameter the fork "
            "adds (spec.forkFrom.defaults); repeatable.",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The new Study's name (default: <study>-fork).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the fork: a Study file's (default: standard output), or a "
            "cluster Study's instead of creating it (kubectl apply -f it later).",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="A Study file: the storage its study is in (default: as kubetune run).",
            show_default=False,
        ),
    ] = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Fork a study: a new Study whose storage starts with every finished trial of the
    parent that fits its search space (the others are left out and counted).

    The way to widen a range, add a choice or a parameter, or change the sampler of a
    started study, which refuses those edits. A Study file's fork is written out for
    kubetune run, which copies the trials first; a cluster Study's fork is created, and
    the operator copies them (status.parent).
    """
    with handled():
        import yaml

        from kubetune.local.run import is_study_file

        defaults = _defaults(default or [])
        local = is_study_file(study)
        if local:
            document = _local(Path(study), set_ or [], name, defaults, storage)
        elif output is not None:  # written for kubectl apply later, not created now
            client = connect(namespace, kubeconfig, context)
            document = client.fork(study, set_ or [], name=name, defaults=defaults, submit=False)
        if local or output is not None:
            text = yaml.safe_dump(document.to_dict(), sort_keys=False, allow_unicode=True)
            if output is None:
                print(text, end="")
            else:
                output.write_text(text, encoding="utf-8")
                then = "kubetune run" if local else "kubectl apply -f"
                errors.print(f"wrote {esc(output)}: {then} {esc(output)}", highlight=False)
            return
        client = connect(namespace, kubeconfig, context)
        created = client.fork(study, set_ or [], name=name, defaults=defaults)
        console.print(
            f"study/{esc(created.metadata.name)} created: it forks {esc(study)}; the operator "
            "copies the finished trials that fit before its first trial (see its status.parent)",
            highlight=False,
        )


def _defaults(items: list[str]) -> dict[str, Any]:
    import yaml

    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not name=value", param_hint="--default")
        values[key.strip()] = yaml.safe_load(raw)
    return values


def _local(
    path: Path, sets: list[str], name: str | None, defaults: dict[str, Any], storage: str | None
) -> Any:
    """The fork of a Study file; says on standard error what ``kubetune run`` will copy."""
    from kubetune.client.forking import local_fork
    from kubetune.local.run import local_optuna_study

    with local_optuna_study(path, storage=storage) as parent_study:
        document, copied, left_out = local_fork(
            path, parent_study, sets, name=name, defaults=defaults
        )
    left = f", leaves out {left_out} (they do not fit the new search space)" if left_out else ""
    errors.print(
        f"{esc(document.metadata.name)} forks study {esc(parent_study.study_name)!r}: "
        f"kubetune run copies {copied} finished trial(s){left}, then runs up to "
        f"{document.spec.budget.max_trials - copied} new ones (maxTrials "
        f"{document.spec.budget.max_trials})",
        highlight=False,
    )
    return document
