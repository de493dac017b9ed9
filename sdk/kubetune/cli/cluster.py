"""The ``kubetune`` commands that work on a cluster's Studies, kubectl-style.

``submit``, ``get``, ``list``, ``describe``, ``watch``, ``best``, ``trials``,
``logs``, ``delete``, ``suspend``, ``resume``, ``enqueue``. Each takes
``-n/--namespace``, ``--kubeconfig`` and ``--context``; the ones that read
trials take ``--storage``/``--storage-host``. Output is a table, or ``-o json``
/ ``-o yaml`` for scripts; exit codes are listed in :mod:`kubetune.cli`.

``best``, ``trials`` and ``delete`` also take a Study file: the local study
``kubetune run`` made from it, on its storage (the embedded PostgreSQL, started
while the command runs), with no cluster; ``best`` and ``trials`` take a study's
name with ``--storage`` without a cluster too.

Example:
    $ kubetune submit examples/quickstart-cluster.yaml --wait
    $ kubetune best lgbm-breast-cancer -o json      # also writes best_params.json
    $ kubetune trials examples/quickstart.yaml      # a local study
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kubetune.cli.base import EXIT_STUDY_FAILED, EXIT_TIMEOUT, app, console, errors
from kubetune.cli.display import StudyProgress
from kubetune.cli.output import (
    STUDY_COLUMNS,
    ContextOption,
    KubeconfigOption,
    NamespaceOption,
    Output,
    OutputOption,
    ReadStorageOption,
    StorageHostOption,
    StorageOption,
    age,
    best_text,
    clean,
    connect,
    emit,
    esc,
    format_params,
    format_values,
    handled,
    show,
    study_row,
)

NameArgument = Annotated[str, typer.Argument(help="The Study's name.", show_default=False)]
ReadArgument = Annotated[
    str,
    typer.Argument(
        help="A Study YAML file or an Optuna script (the local study kubetune run made "
        "from it, no cluster needed), a study's name in --storage, or a Study's name on the "
        "cluster.",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option("--timeout", help="Give up after this many seconds (exit code 6).", min=0),
]


def _study_table(objects: list[dict[str, Any]], with_namespace: bool = False) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in (("NAMESPACE",) if with_namespace else ()) + STUDY_COLUMNS:
        table.add_column(column, no_wrap=column != "BEST")
    for obj in objects:
        table.add_row(*study_row(obj, with_namespace))
    return table


# ------------------------------------------------------------------ submit


@app.command()
def submit(
    path: Annotated[Path, typer.Argument(help="A Study YAML file.", show_default=False)],
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    enqueue: Annotated[
        Path | None,
        typer.Option(
            "--enqueue",
            help="Try these parameters first (best_params.json, or a JSON/YAML list of dicts).",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until the study finishes (exit 1 if it fails).")
    ] = False,
    timeout: TimeoutOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Create a Study, or update it when it exists (like kubectl apply).

    A study that has started refuses changes to its objective, search space,
    sampler and objective code (exit code 5).
    """
    with handled():
        client = connect(namespace, kubeconfig, context)
        study, action = client._apply(path, namespace, enqueue)
        name = study.metadata.name
        if output is Output.table:
            console.print(f"study.kubetune.io/{name} {action}", highlight=False)
        if wait:
            study = client.wait(name, timeout, StudyProgress, namespace=study.metadata.namespace)
        if output is not Output.table:
            emit(study.to_dict(), output)
        elif wait:
            _print_outcome(client.get_object(name, namespace=study.metadata.namespace))


# ------------------------------------------------------------- get, list


@app.command()
def get(
    name: NameArgument,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Show one Study: phase, progress, counts, best value (or the whole object with -o)."""
    with handled():
        obj = connect(namespace, kubeconfig, context).get_object(name)
        if output is Output.table:
            show(_study_table([obj]))
        else:
            emit(clean(obj), output)


@app.command("list")
def list_studies(
    namespace: NamespaceOption = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Studies of every namespace.")
    ] = False,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = Output.table,
) -> None:
    """List the Studies of a namespace (or of all of them with -A)."""
    with handled():
        objects = connect(namespace, kubeconfig, context).list_objects(
            all_namespaces=all_namespaces
        )
        if output is not Output.table:
            emit([clean(o) for o in objects], output)
        elif not objects:
            errors.print("no studies found", highlight=False)
        else:
            show(_study_table(objects, all_namespaces))


# ---------------------------------------------------------------- describe


@app.command()
def describe(
    name: NameArgument,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Everything about a Study: spec summary, counts, best trial, conditions, recent events."""
    with handled():
        client = connect(namespace, kubeconfig, context)
        obj = client.get_object(name)
        events = client.events(name, namespace=obj["metadata"].get("namespace"), limit=10)
        if output is not Output.table:
            emit({"study": clean(obj), "events": events}, output)
            return
        _describe(obj, events)


def _describe(obj: dict[str, Any], events: list[dict[str, Any]]) -> None:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    objective = spec.get("objective") or {}
    budget = spec.get("budget") or {}
    trial = spec.get("trial") or {}
    sampler = spec.get("sampler") or {"name": "tpe"}
    pruner = spec.get("pruner") or {}
    counts = status.get("trials") or {}

    def line(label: str, value: Any) -> None:
        console.print(f"[bold]{label + ':':<14}[/]{esc(value)}", highlight=False, soft_wrap=True)

    line("Name", meta["name"])
    line("Namespace", meta.get("namespace", ""))
    phase = status.get("phase") or "Pending"
    line("Phase", phase + (f" ({status['message']})" if status.get("message") else ""))
    line("Optuna study", status.get("studyName") or "-")
    line(
        "Created",
        f"{meta.get('creationTimestamp', '-')} ({age(meta.get('creationTimestamp'))} ago)",
    )
    line("Started", status.get("startTime") or "-")
    line("Completed", status.get("completionTime") or "-")
    parent = status.get("parent") or {}
    if parent or spec.get("forkFrom"):
        line(
            "Forked from",
            f"{parent.get('name', (spec.get('forkFrom') or {}).get('study'))}: "
            + (
                f"{parent.get('trialsCopied', 0)} trials copied, "
                f"{parent.get('trialsLeftOut', 0)} left out (they do not fit its search space)"
                if parent
                else "its trials are not copied yet"
            ),
        )
    directions = objective.get("directions") or [objective.get("direction") or "minimize"]
    metrics = objective.get("metrics") or ([objective["metric"]] if objective.get("metric") else [])
    text = ", ".join(
        f"{d} {m}" for d, m in zip(directions, metrics or ["value"] * len(directions), strict=False)
    )
    if objective.get("goal") is not None:
        text += f" (goal {objective['goal']:g})"
    line("Objective", text)
    line(
        "Sampler",
        sampler.get("name", "tpe")
        + (f", seed {sampler['seed']}" if sampler.get("seed") is not None else "")
        + (f", {json.dumps(sampler['args'])}" if sampler.get("args") else ""),
    )
    line(
        "Pruner",
        (pruner.get("name") or "default (median; none for multi-objective)")
        + (f", {json.dumps(pruner['args'])}" if pruner.get("args") else ""),
    )
    line(
        "Budget",
        f"maxTrials {budget.get('maxTrials', 100)}, parallelism {budget.get('parallelism', 1)}"
        + (f", maxFailedTrials {budget['maxFailedTrials']}" if "maxFailedTrials" in budget else "")
        + (f", timeout {budget['timeout']}" if budget.get("timeout") else "")
        + "".join(
            f", {key} {budget[key]:g}"
            for key in ("maxGpuHours", "maxCpuHours", "maxCost")
            if budget.get(key) is not None
        )
        + (f", stopWhen {json.dumps(budget['stopWhen'])}" if budget.get("stopWhen") else ""),
    )
    kind = next((k for k in ("python", "command", "builtin") if trial.get(k)), "?")
    shown = trial.get(kind)
    shown = (
        " ".join(shown) if kind == "command" else json.dumps(shown) if kind == "builtin" else shown
    )
    line("Trial", f"{kind}: {shown}" + (f" (image {trial['image']})" if trial.get("image") else ""))
    line("Suspended", "yes" if spec.get("suspend") else "no")
    line(
        "Trials",
        f"{status.get('progress') or '-'} finished: "
        + ", ".join(
            f"{counts.get(k, 0)} {k}"
            for k in ("complete", "pruned", "failed", "running", "waiting")
        ),
    )
    spend = status.get("spend")
    if spend:
        line(
            "Spent",
            f"{spend.get('gpuHours', 0):.4g} GPU-hours, {spend.get('cpuHours', 0):.4g} CPU-hours "
            f"over {spend.get('trialHours', 0):.4g} trial-hours"
            + (f", cost {spend['cost']:.4g}" if spend.get("cost") is not None else ""),
        )
    best = status.get("bestTrial")
    if best:
        line("Best trial", f"#{best['number']} value {best.get('value'):.6g}")
        for key, value in (best.get("params") or {}).items():
            console.print(f"{'':<16}{esc(key)} = {esc(repr(value))}", highlight=False)
    elif status.get("paretoFront"):
        line("Pareto front", f"{len(status['paretoFront'])} trial(s)")
        for entry in status["paretoFront"]:
            console.print(
                f"{'':<16}#{entry['number']} values {format_values(entry.get('values'))}: "
                f"{esc(format_params(entry.get('params') or {}))}",
                highlight=False,
            )
    else:
        line("Best trial", "none yet")
    verified = status.get("verified")
    if verified:  # spec.verify: the best trials re-run, the winner on the mean
        line(
            "Verified",
            (f"winner #{verified['winner']}" if verified.get("winner") is not None else "no winner")
            + ("" if verified.get("done") else " (repeats still running)"),
        )
        for row in verified.get("trials") or []:
            interval = (
                f" [{row['low']:.6g}, {row['high']:.6g}]" if row.get("low") is not None else ""
            )
            mean = f"mean {row['mean']:.6g}{interval}" if row.get("mean") is not None else "no mean"
            console.print(
                f"{'':<16}#{row['number']} {mean} over {row.get('repeats', 0)} repeats",
                highlight=False,
            )
    conditions = status.get("conditions") or []
    console.print("[bold]Conditions:[/]")
    if conditions:
        table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 2))
        for column in ("TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"):
            table.add_column(column, overflow="fold")
        for c in conditions:
            table.add_row(
                esc(c.get("type", "")),
                esc(c.get("status", "")),
                esc(c.get("reason", "")),
                age(c.get("lastTransitionTime")),
                esc(c.get("message", "")),
            )
        show(table)
    else:
        console.print("  none")
    console.print("[bold]Events:[/]")
    if events:
        table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 2))
        for column in ("AGE", "TYPE", "REASON", "MESSAGE"):
            table.add_column(column, overflow="fold")
        for event in events:
            stamp = (
                event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
            )
            table.add_row(
                age(stamp),
                esc(event.get("type", "")),
                esc(event.get("reason", "")),
                esc(event.get("message", "")),
            )
        show(table)
    else:
        console.print("  none")


# ------------------------------------------------------------------- watch


@app.command()
def watch(
    name: NameArgument,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Follow a Study until it finishes: a progress bar, new best trials, condition changes.

    Exit code 0 when it succeeds, 1 when it fails, 6 on --timeout.
    """
    with handled():
        client = connect(namespace, kubeconfig, context)
        seen: dict[str, tuple[str, str]] = {}

        def on_update(obj: dict[str, Any]) -> None:
            """Print each condition that changes, and at first only the ones that mean trouble."""
            for condition in (obj.get("status") or {}).get("conditions") or []:
                key = condition.get("type", "")
                state = (condition.get("status", ""), condition.get("reason", ""))
                trouble = (key, state[0]) in _TROUBLE
                if seen.get(key) != state and (key in seen or trouble):
                    errors.print(
                        f"[cyan]•[/] {esc(key)}={esc(state[0])} ({esc(state[1])}): "
                        + esc(condition.get("message", "")),
                        highlight=False,
                    )
                seen[key] = state

        try:
            client.wait(name, timeout, StudyProgress, on_update=on_update)
        except Exception as error:
            from kubetune.errors import StudyFailed, WaitTimeout

            if isinstance(error, StudyFailed):
                _print_outcome(client.get_object(name))
                raise typer.Exit(EXIT_STUDY_FAILED) from None
            if isinstance(error, WaitTimeout):
                errors.print(f"[yellow]{esc(error)}[/]", highlight=False)
                raise typer.Exit(EXIT_TIMEOUT) from None
            raise
        _print_outcome(client.get_object(name))


#: Conditions ``watch`` shows even when they were already so when it started (what
#: keeps a study from making progress: Queued is a wait for a Kueue queue's admission).
_TROUBLE = {
    ("SpecChangeRefused", "True"),
    ("PodsReady", "False"),
    ("StorageReady", "False"),
    ("Queued", "True"),
}


def _print_outcome(obj: dict[str, Any]) -> None:
    status = obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    style = "green" if phase == "Succeeded" else "red" if phase == "Failed" else "yellow"
    kind = {"Succeeded": "Complete", "Failed": "Failed"}.get(phase)
    reason = next(
        (c.get("reason") for c in status.get("conditions") or [] if c.get("type") == kind), None
    )
    console.print(
        f"study [bold]{esc(obj['metadata']['name'])}[/] [{style}]{phase}[/]"
        + (f" ({esc(reason)})" if reason else "")
        + (f": {esc(status['message'])}" if status.get("message") else ""),
        highlight=False,
    )
    console.print(f"best: {best_text(status)}", highlight=False)


# -------------------------------------------------------------------- best


@app.command()
def best(
    name: ReadArgument,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    storage: ReadStorageOption = None,
    output: OutputOption = Output.table,
    file: Annotated[
        Path,
        typer.Option("--file", "-f", help="Where -o json writes the parameters."),
    ] = Path("best_params.json"),
) -> None:
    """The best trial's parameters (or the Pareto front).

    ``-o json`` prints best_params.json and writes it to --file; exit code 4 while
    no trial has completed. For a Study file (kubetune best study.yaml), the local
    study: the embedded PostgreSQL runs while the command does.
    """
    with handled(), connect(namespace, kubeconfig, context, storage) as client:
        if output is Output.table:
            trials = client.best_trials(name)
            table = Table(title="Best trial" if len(trials) == 1 else "Pareto front")
            table.add_column("trial", justify="right")
            table.add_column("value(s)")
            table.add_column("params")
            for trial in trials:
                values = [trial.value] if trial.value is not None else trial.values
                table.add_row(
                    str(trial.number),
                    format_values(values),
                    esc("\n".join(f"{k} = {v!r}" for k, v in trial.params.items())),
                )
            show(table)
            return
        params = client.best_params(name)
        if output is Output.json:
            text = json.dumps(params, indent=2, ensure_ascii=False) + "\n"
            file.write_text(text, encoding="utf-8")
            typer.echo(text, nl=False)
            errors.print(f"written to {file}", highlight=False)
        else:
            emit(params, output)


# ------------------------------------------------------------------ trials


@app.command()
def trials(
    name: ReadArgument,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    storage: ReadStorageOption = None,
    storage_host: StorageHostOption = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="Only trials in this state (COMPLETE, PRUNED, FAIL, STOPPED, RUNNING, WAITING).",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Only the last N trials.", min=1)
    ] = None,
    output: OutputOption = Output.table,
) -> None:
    """Every trial from the study's storage: state, values, duration, pod, params, fail reason.

    For a Study file (kubetune trials study.yaml), the local study's trials.
    """
    with handled():
        from kubetune.engine.trials import STATES

        for s in state or []:
            if s.upper() not in STATES:
                raise typer.BadParameter(
                    f"{s!r} is not one of {', '.join(STATES)}", param_hint="--state"
                )
        with connect(namespace, kubeconfig, context, storage, storage_host) as client:
            rows = client.trials(name, states=state or None)
        if limit is not None:
            rows = rows[-limit:]
        if output is not Output.table:
            emit([r.to_dict() for r in rows], output)
            return
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("#", "STATE", "VALUE", "DURATION", "POD", "PARAMS", "FAIL REASON"):
            table.add_column(column, overflow="fold", justify="right" if column == "#" else "left")
        colors = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "STOPPED": "cyan"}
        for row in rows:
            color = colors.get(row.state, "cyan")
            table.add_row(
                str(row.number),
                f"[{color}]{row.state}[/]",
                format_values(row.values),
                f"{row.duration:.1f}s" if row.duration is not None else "-",
                esc(row.pod or "-"),
                esc(format_params(row.params, 80)),
                esc(_first_line(row.fail_reason or "", 300)),
            )
        show(table)


def _first_line(text: str, limit: int) -> str:
    lines = text.strip().splitlines() or [""]
    first = lines[0]
    if len(first) > limit or len(lines) > 1:
        return first[: limit - 1] + "…"
    return first


# -------------------------------------------------------------------- logs


@app.command()
def logs(
    name: NameArgument,
    trial: Annotated[
        int | None, typer.Option("--trial", "-t", help="The log of the pod that ran this trial.")
    ] = None,
    tail: Annotated[
        int | None, typer.Option("--tail", help="Only the last N lines.", min=0)
    ] = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    storage: StorageOption = None,
    storage_host: StorageHostOption = None,
) -> None:
    """Print a trial pod's log (without --trial: every pod of the study)."""
    with handled():
        client = connect(namespace, kubeconfig, context, storage, storage_host)
        typer.echo(client.logs(name, trial, tail=tail), nl=False)


# ------------------------------------------------- delete, suspend, resume


@app.command()
def delete(
    name: Annotated[
        str,
        typer.Argument(
            help="The Study's name, or a Study YAML file or an Optuna script (a local study, "
            "kubetune run), or with --storage a study's name in that storage.",
            show_default=False,
        ),
    ],
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="Return once the Study is gone.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds --wait waits.")] = 60.0,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="An Optuna storage URL. For a Study file: default $KUBETUNE_STORAGE_URL, "
            "spec.storage.url or the embedded PostgreSQL. For a name: the study of that name in "
            "this storage is deleted (no cluster needed), else the cluster's Study.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Delete a Study; its pods stop and their running trials fail.

    Its trials stay in the database unless spec.storage.onDelete is delete.
    For a Study file, delete the local study and its trials (kubetune run starts
    it afresh); so for a name with --storage that the storage holds.
    """
    from kubetune.errors import ClusterUnavailable, NotFound
    from kubetune.local.run import is_study_file

    if is_study_file(name):
        from kubetune.cli.local import delete_local

        delete_local(Path(name), storage)
        return
    with handled():
        missing: NotFound | None = None
        if storage:
            try:
                count = _delete_stored(name, storage)
            except NotFound as error:
                missing = error
            else:
                console.print(f"study {name!r} deleted ({count} trials)", highlight=False)
                return
        try:
            connect(namespace, kubeconfig, context).delete(name, wait=wait, timeout=timeout)
        except ClusterUnavailable:
            if missing is not None:
                raise missing from None  # what was asked of the storage: it holds none
            raise
        console.print(f"study.kubetune.io/{name} deleted", highlight=False)


def _delete_stored(name: str, storage: str) -> int:
    """Delete the Optuna study ``name`` and its trials from ``storage``; how many it had.

    NotFound (naming what the storage holds) when there is none."""
    import optuna

    from kubetune.engine.storage import dispose, load_stored_study

    study = load_stored_study(storage, name)
    try:
        count = len(study.get_trials(deepcopy=False))
        optuna.delete_study(study_name=name, storage=study._storage)
    finally:
        dispose(study)
    return count


@app.command()
def suspend(
    name: NameArgument,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Stop starting trials; running ones stop and are queued to run again on resume."""
    with handled():
        connect(namespace, kubeconfig, context).suspend(name)
        console.print(f"study.kubetune.io/{name} suspended", highlight=False)


@app.command()
def resume(
    name: NameArgument,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Start trials again after suspend."""
    with handled():
        connect(namespace, kubeconfig, context).resume(name)
        console.print(f"study.kubetune.io/{name} resumed", highlight=False)


# ----------------------------------------------------------------- enqueue


@app.command()
def enqueue(
    name: NameArgument,
    params_file: Annotated[
        Path | None,
        typer.Argument(
            help="best_params.json, or a JSON/YAML file with a dict or a list of dicts.",
            show_default=False,
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="One parameter of one more set: name=value (repeatable)."),
    ] = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    storage: StorageOption = None,
    storage_host: StorageHostOption = None,
) -> None:
    """Queue parameter sets to be tried next (warm start).

    For example an earlier study's best_params.json. Sets already tried or queued are skipped.
    """
    with handled():
        import yaml

        from kubetune.engine.warmstart import param_sets

        sets: list[dict[str, Any]] = list(param_sets(params_file)) if params_file else []
        if set_:
            one: dict[str, Any] = {}
            for item in set_:
                key, sep, raw = item.partition("=")
                if not sep or not key:
                    raise typer.BadParameter(f"{item!r} is not name=value", param_hint="--set")
                one[key.strip()] = yaml.safe_load(raw) if raw.strip() else raw
            sets.append(one)
        if not sets:
            raise typer.BadParameter("give a file or --set name=value", param_hint="PARAMS_FILE")
        client = connect(namespace, kubeconfig, context, storage, storage_host)
        added = client.enqueue(name, sets)
        skipped = len(sets) - added
        console.print(
            f"enqueued {added} parameter set(s) into study {name}"
            + (f" ({skipped} already tried or queued)" if skipped else ""),
            highlight=False,
        )
