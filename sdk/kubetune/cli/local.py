"""The commands that need no cluster: ``kubetune run STUDY.yaml`` runs a study on this
machine, ``kubetune validate`` checks a file, ``kubetune crd`` prints the
CustomResourceDefinition; and ``delete_local``, which ``kubetune delete STUDY.yaml``
uses.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

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
from kubetune.cli.display import LocalRunProgress


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
    path: Annotated[
        Path, typer.Argument(help="A Study YAML file, or an unchanged Optuna script (.py).")
    ],
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
    max_trials: Annotated[
        int | None,
        typer.Option(
            "--max-trials", min=1, help="The study's maxTrials (a script: instead of n_trials)."
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(help="The study's timeout: 90s, 30m, 2h (a script: instead of its own)."),
    ] = None,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster", help="A script: submit its study to the cluster, shipping its code."
        ),
    ] = False,
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="--cluster: the namespace.")
    ] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="--cluster: the kubeconfig file.")] = None,
    context: Annotated[str | None, typer.Option(help="--cluster: the kubeconfig context.")] = None,
    image: Annotated[str | None, typer.Option(help="--cluster: the trial image.")] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="--cluster: wait for the study, then run the script's rest."),
    ] = False,
) -> None:
    """Run a study on this machine with worker processes, until its budget is spent.

    The study is a Study file, or an Optuna script as it is: its study.optimize runs
    on kubetune's workers, then the script goes on with the finished study.
    Running it again continues the study; Ctrl-C (or SIGTERM, SIGHUP) stops the workers
    and keeps every finished trial.
    """
    from kubetune.local.signals import stop_on_termination

    # SIGTERM and SIGHUP stop the workers and the embedded server as Ctrl-C does.
    with stop_on_termination():
        if cluster and path.suffix != ".py":
            print_error(
                f"{path}: --cluster takes an Optuna script; "
                "submit a Study file with kubetune submit"
            )
            raise typer.Exit(EXIT_BAD_INPUT)
        if cluster:
            _submit_script(
                path,
                parallelism=parallelism,
                max_trials=max_trials,
                timeout=timeout,
                namespace=namespace,
                kubeconfig=kubeconfig,
                context=context,
                image=image,
                wait=wait,
                output=output,
            )
            return
        if path.suffix == ".py":
            _run_script(
                path,
                trials=trials,
                parallelism=parallelism,
                max_trials=max_trials,
                timeout=timeout,
                storage=storage,
                fresh=fresh,
                output=output,
            )
            return
        import optuna

        from kubetune.study.spec import Study

        study = _load(path)
        assert isinstance(study, Study)
        study = _with_budget(study, max_trials, timeout)
        _check_local_data(study.spec)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with contextlib.ExitStack() as stack:
            url = _local_storage(study, storage, stack)
            result, log_dir = _run_local(study, url, trials, parallelism, fresh, path)
        _report(result, output, log_dir, path)
        if result.interrupted:
            raise typer.Exit(EXIT_INTERRUPTED)
        if result.failed:
            raise typer.Exit(EXIT_STUDY_FAILED)


def _with_budget(study: Any, max_trials: int | None, timeout: str | None) -> Any:
    """``study`` with ``--max-trials`` and ``--timeout`` in its budget, validated."""
    from kubetune.study.spec import SpecError, load_study

    if max_trials is None and timeout is None:
        return study
    data = study.to_dict()
    budget = data["spec"].setdefault("budget", {})
    if max_trials is not None:
        budget["maxTrials"] = max_trials
    if timeout is not None:
        budget["timeout"] = int(timeout) if timeout.isdigit() else timeout
    try:
        return load_study(data)
    except SpecError as error:
        for field, reason in error.problems:
            print_error(f"{field}: {reason}")
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _run_local(
    study: Any,
    url: str,
    trials: int | None,
    parallelism: int | None,
    fresh: bool,
    path: Path,
) -> tuple[Any, Path]:
    """Run ``study`` with local workers and the live line; errors exit as documented."""
    from kubetune.engine.storage import StorageUnavailable
    from kubetune.errors import SpecChangeRefused
    from kubetune.local.run import LocalRun, LocalRunError
    from kubetune.study.spec import SpecError

    reporter = LocalRunProgress(study.metadata.name, console=console)
    # spec.verify's repeats, once the budget is spent: a line of their own below the
    # study's last one.
    verifying = LocalRunProgress(f"{study.metadata.name} verification", console=console)

    def on_verify_progress(progress: Any) -> None:
        reporter.close()
        verifying.start_once()
        verifying.update_local(progress, best=False)

    with reporter, contextlib.closing(verifying):
        local = LocalRun(
            study,
            url,
            trials=trials,
            parallelism=parallelism,
            fresh=fresh,
            source=path,
            on_progress=reporter.update_local,
            on_message=lambda text: (verifying if verifying.shown else reporter).message(text),
            on_verify_progress=on_verify_progress,
        )
        try:
            return local.run(), local.log_dir
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


def _derive(path: Path, record: Any, overrides: Any, *, out: Any = None) -> Any:
    """The Study the script's recorded calls describe; bad input exits 2."""
    from kubetune.engine.script_study import derive_study
    from kubetune.engine.scripts import ScriptError
    from kubetune.study.spec import SpecError

    try:
        derived = derive_study(record, path, overrides)
    except ScriptError as error:
        print_error(error)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except SpecError as error:
        print_error(f"{path.name}: its study is not one kubetune can run:")
        for field, reason in error.problems:
            errors.print(f"  {field}: {reason}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    out = out or console
    out.print(f"[dim]{escape(derived.summary)}[/]", soft_wrap=True, highlight=False)
    for warning in derived.warnings:
        out.print(f"[yellow]note:[/] {escape(warning)}", soft_wrap=True, highlight=False)
    return derived


def _execute(path: Path, on_optimize: Any) -> Any:
    """Execute the script with its study intercepted; its own errors exit 3 (before
    ``study.optimize``) or 1 (after it), with its traceback."""
    import traceback

    from kubetune.engine.scripts import ScriptError, run_script

    if not path.is_file():
        print_error(f"{path}: no such file")
        raise typer.Exit(EXIT_BAD_INPUT)
    reached: list[bool] = []

    def on_optimize_once(record: Any) -> Any:
        reached.append(True)
        return on_optimize(record)

    try:
        return run_script(path, on_optimize_once)
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        print_error(f"{path.name} was interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except ScriptError as error:
        print_error(error)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except Exception as error:
        tb = error.__traceback__
        script = str(path.resolve())
        while tb is not None and tb.tb_next is not None:
            if str(Path(tb.tb_frame.f_code.co_filename).resolve()) == script:
                break
            tb = tb.tb_next
        details = "".join(traceback.format_exception(type(error), error, tb)).rstrip()
        errors.print(details, markup=False, highlight=False, soft_wrap=True)
        when = "after study.optimize" if reached else "before study.optimize"
        print_error(f"{path.name} raised {type(error).__name__} {when}")
        raise typer.Exit(EXIT_STUDY_FAILED if reached else EXIT_RUN_ERROR) from None


def _submit_script(
    path: Path,
    *,
    parallelism: int | None,
    max_trials: int | None,
    timeout: str | None,
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None,
    image: str | None,
    wait: bool,
    output: Path,
) -> None:
    """``kubetune run script.py --cluster``: the script's study as a Study in the cluster,
    its code shipped in a ConfigMap (``Client.tune_script``)."""
    from kubetune.cli.output import connect, handled
    from kubetune.engine.scripts import ScriptError

    if not path.is_file():
        print_error(f"{path}: no such file")
        raise typer.Exit(EXIT_BAD_INPUT)

    def note(message: str) -> None:
        errors.print(escape(message), highlight=False, soft_wrap=True)

    try:
        with handled():
            client = connect(namespace, kubeconfig, context)
            tuned = client.tune_script(
                path,
                parallelism=parallelism,
                max_trials=max_trials,
                timeout=timeout,
                namespace=namespace,
                image=image,
                wait=wait,
                best_params_file=output,
                on_note=note,
            )
    except ScriptError as error:
        print_error(error)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    console.print(f"study [bold]{escape(tuned.metadata.name)}[/] submitted", highlight=False)


def _run_script(
    path: Path,
    *,
    trials: int | None,
    parallelism: int | None,
    max_trials: int | None,
    timeout: str | None,
    storage: str | None,
    fresh: bool,
    output: Path,
) -> None:
    """``kubetune run script.py``: the script runs here up to ``study.optimize``, whose
    study runs on local workers (as a Study file's would); the script then goes on
    with the finished study."""

    import optuna

    from kubetune.engine.script_study import Overrides
    from kubetune.engine.scripts import ScriptError, never_optimized
    from kubetune.engine.storage import dispose, load_stored_study
    from kubetune.local.script import script_storage, workers_find

    overrides = Overrides(max_trials=max_trials, parallelism=parallelism, timeout=timeout)
    outcome: list[Any] = []
    with contextlib.ExitStack() as stack:

        def on_optimize(record: Any) -> optuna.Study:
            derived = _derive(path, record, overrides)
            study = derived.study
            url = _local_storage(study, script_storage(derived, storage), stack, reading_hint=False)
            try:
                stack.enter_context(workers_find(derived))
            except ScriptError as error:
                print_error(error)
                raise typer.Exit(EXIT_BAD_INPUT) from None
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            result, log_dir = _run_local(study, url, trials, None, fresh, path)
            _report(result, output, log_dir, path)
            outcome.append(result)
            if result.interrupted:
                raise typer.Exit(EXIT_INTERRUPTED)
            if result.counts.complete == 0:
                print_error(
                    f"the code after study.optimize in {path.name} did not run: no trial completed"
                )
                raise typer.Exit(EXIT_STUDY_FAILED)
            finished = load_stored_study(url, result.study_name)
            stack.callback(dispose, finished)  # before the embedded server stops
            console.print(
                f"[dim]{escape(path.name)} goes on after study.optimize, with the finished "
                "study[/]",
                highlight=False,
            )
            return finished

        record = _execute(path, on_optimize)
    if record.optimize is None:
        print_error(never_optimized(path.name))
        raise typer.Exit(EXIT_BAD_INPUT)
    if outcome and outcome[0].failed:
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

    if path.suffix == ".py":
        from kubetune.local.script import study_of_script

        with handled():
            study, storage = study_of_script(path, storage)
    else:
        study = _load(path)
    assert isinstance(study, Study)
    with handled(), contextlib.ExitStack() as stack:
        url = _local_storage(study, storage, stack, reading_hint=False)
        count = delete_local_study(study, url, path)
    name = study.spec.storage.study_name or study.metadata.name
    console.print(f"study {name!r} deleted ({count} trials)", highlight=False)


def _report(result: object, output: Path, log_dir: Path, path: Path) -> None:
    """How the run ended: counts, why it stopped, why trials failed, the best trial."""
    from kubetune.local.run import LocalResult, write_best_params

    assert isinstance(result, LocalResult)
    counts = result.counts
    # Stopped by this run (Ctrl-C, or the study's end), not a study total: earlier runs'
    # stopped trials have run again since.
    stopped = len(result.requeued) + len(result.cut_off)
    console.print(
        f"study [bold]{escape(result.study_name)}[/]: {counts.complete} complete, "
        f"{counts.pruned} pruned, {counts.failed} failed"
        + (f", {stopped} stopped" if stopped else "")
        + (f"; spent {result.spend.summary()}" if result.spend else ""),
        highlight=False,
    )
    if result.interrupted:
        stopped = ", ".join(str(n) for n in result.requeued)
        console.print(
            f"[yellow]stopped by {result.stopped_by}[/]; finished trials are kept"
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
        if result.verified is not None:
            from kubetune.cli.verify import print_verified

            print_verified(result.verified, result.best_trials[0]["number"])
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


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="An unchanged Optuna script (.py).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the Study here (default: standard output)."),
    ] = None,
    parallelism: Annotated[
        int | None, typer.Option("--parallelism", "-p", min=1, help="Instead of n_jobs.")
    ] = None,
    max_trials: Annotated[
        int | None, typer.Option("--max-trials", min=1, help="Instead of n_trials.")
    ] = None,
    timeout: Annotated[
        str | None, typer.Option(help="Instead of optimize's timeout: 90s, 30m, 2h.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The Study's name (default: from the script).")
    ] = None,
) -> None:
    """Print the Study YAML that `kubetune run SCRIPT.py` would run.

    The script runs up to its study.optimize call (its output goes to standard
    error); what could not be carried over is listed on standard error.
    """
    import sys

    import yaml

    from kubetune.engine.script_study import Overrides
    from kubetune.engine.scripts import never_optimized

    if path.suffix != ".py":
        print_error(f"{path}: init takes an Optuna script (.py)")
        raise typer.Exit(EXIT_BAD_INPUT)

    def stop(_record: Any) -> None:
        return None  # stop the script at study.optimize

    overrides = Overrides(
        max_trials=max_trials, parallelism=parallelism, timeout=timeout, name=name
    )
    with contextlib.redirect_stdout(sys.stderr):  # the script's prints are not the YAML
        record = _execute(path, stop)
        if record.optimize is None:
            print_error(never_optimized(path.name))
            raise typer.Exit(EXIT_BAD_INPUT)
        derived = _derive(path, record, overrides, out=errors)
    document = derived.document(with_code_digest=False)
    # Named on purpose: `kubetune run study.yaml` continues the study `kubetune run
    # SCRIPT.py` ran (a study is otherwise bound to the one file that ran it).
    storage = document["spec"].setdefault("storage", {})
    storage.setdefault(
        "studyName", derived.study.spec.storage.study_name or derived.study.metadata.name
    )
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    if derived.storage_url is not None and derived.study.spec.storage.url is None:
        errors.print(
            "[yellow]note:[/] the script's storage URL holds a password, so the Study leaves "
            "it out: pass it with --storage or $KUBETUNE_STORAGE_URL (spec.storage.secretRef "
            "in a cluster)",
            highlight=False,
            soft_wrap=True,
        )
    if derived.folder != Path.cwd().resolve():
        errors.print(
            f"[yellow]note:[/] workers import {derived.module} from {escape(str(derived.folder))}:"
            " run the Study from there, or put that folder on PYTHONPATH",
            highlight=False,
            soft_wrap=True,
        )
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        errors.print(f"Study written to {escape(str(output))}", highlight=False)
