"""Turning ``spec.trial`` into a callable that takes an ``optuna.Trial``.

- python: ``package.module:function``, imported as is (the working directory
  is on ``sys.path``);
- command: a program run without a shell, parameters filled into ``{name}``
  placeholders, metrics read from its standard output;
- builtin: a ready-made model trainer from :mod:`kubetune_trial.builtin`.

A problem that would make every trial fail (the module does not import, the
program is not found) raises :class:`ObjectiveNotLoadable` before any trial
is claimed.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import optuna
from kubetune.engine import bridge, checkpoints, scripts
from kubetune.engine.lifeline import ends_with_parent
from kubetune.engine.scripts import NOTE_ATTR
from kubetune.engine.verify import REPEAT_ATTR, seed
from kubetune.engine.worker import IN_TRIAL_ENV, WORKER_NAME_ENV
from kubetune.study.spec import PLACEHOLDER, StudySpec
from optuna.trial import FrozenTrial

from kubetune_trial.errors import ObjectiveNotLoadable
from kubetune_trial.metrics import parse_line

Objective = Callable[[optuna.Trial], Any]

#: Seconds a pruned or stopped command gets to exit after SIGTERM before SIGKILL.
TERMINATE_GRACE = 5.0
_STDERR_TAIL_LINES = 20


class ObjectiveFailed(Exception):
    """A trial's objective failed; the message is the reason stored on the trial."""


def load_objective(spec: StudySpec, study_name: str) -> Objective:
    """The objective the spec describes, checked as far as it can be before a trial."""
    trial = spec.trial
    if trial.python is not None:
        with inside_trial(study_name):
            function, note = _load_python_noting(trial.python)
        untold = [note] if note else []

        @functools.wraps(function)
        def objective(optuna_trial: optuna.Trial) -> Any:
            if untold:  # once: the supervisor says it where the user looks
                optuna_trial.set_user_attr(NOTE_ATTR, untold.pop())
            with inside_trial(study_name), _stop_allowed(optuna_trial.study, "the objective"):
                return function(optuna_trial)

        return objective
    if trial.command is not None:
        names = spec.objective.metric_names
        assert names is not None  # the spec requires metric names for commands
        return CommandObjective(trial.command, names, study_name)
    assert trial.builtin is not None
    try:
        from kubetune_trial.builtin import load_builtin
    except ImportError as error:  # the builtin package needs optional extras
        raise ObjectiveNotLoadable("spec.trial.builtin", f"not available here: {error}") from None
    return load_builtin(spec, study_name)


@contextlib.contextmanager
def inside_trial(study_name: str) -> Iterator[None]:
    """While an objective's module is imported and while it runs, ``$KUBETUNE_IN_TRIAL``
    names the study: tune() called there (a script's top level, the objective itself)
    refuses to start a study of its own instead of spawning workers. Only then: a
    process that runs a worker in-process (a test) is not a trial afterwards."""
    previous = os.environ.get(IN_TRIAL_ENV)
    os.environ[IN_TRIAL_ENV] = study_name
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(IN_TRIAL_ENV, None)
        else:
            os.environ[IN_TRIAL_ENV] = previous


#: What runs after each trial a worker ran: the script's ``study.optimize`` callbacks.
AfterTrial = Callable[[optuna.Study, FrozenTrial], None]


def script_callbacks(spec: StudySpec, study_name: str) -> AfterTrial | None:
    """The callbacks the objective's script passed to ``study.optimize(callbacks=[...])``
    (seen when the worker imported it), run as Optuna runs them: in the process that ran
    the trial, after it ended, with the study (the whole distributed study) and the
    finished trial. None when there are none.

    ``study.stop()`` in a callback stops the study, not just this worker: no trial
    starts after it in any worker (running ones finish), and the study ends with
    ``StudyStopped``. A ``MaxTrialsCallback`` is left out: it is the study's
    ``maxTrials`` already. A callback that raises is logged; the trial stands and the
    worker goes on.
    """
    if spec.trial.python is None:
        return None
    module_name = spec.trial.python.partition(":")[0]
    # Imported by load_objective already: this gives what its import recorded.
    _, record = scripts.import_module(module_name)
    if record is None or record.optimize is None:
        return None
    callbacks = [c for c in record.optimize.callbacks if type(c).__name__ != "MaxTrialsCallback"]
    if not callbacks:
        return None
    logger = logging.getLogger("kubetune.trial")
    names = ", ".join(getattr(c, "__qualname__", None) or type(c).__name__ for c in callbacks)
    logger.info("after each trial: %s's study.optimize callbacks %s", record.display_name, names)

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        for callback in callbacks:
            name = getattr(callback, "__qualname__", None) or type(callback).__name__
            try:
                with inside_trial(study_name), _stop_allowed(study, f"callback {name}"):
                    callback(study, trial)
            except Exception as error:
                logger.error(
                    "trial %d: callback %s raised\n%s",
                    trial.number,
                    name,
                    "".join(traceback.format_exception(error)).rstrip(),
                )

    return after_trial


@contextlib.contextmanager
def _stop_allowed(study: optuna.Study, caller: str) -> Iterator[None]:
    """``study.stop()`` works meanwhile, as in ``study.optimize``: it stops the whole
    study (every worker, see :func:`kubetune.engine.bridge.request_stop`), saying who
    called it."""
    local = study._thread_local
    was_in_loop, local.in_optimize_loop = local.in_optimize_loop, True
    study._stop_flag = False
    try:
        yield
    finally:
        local.in_optimize_loop = was_in_loop
        if study._stop_flag:
            study._stop_flag = False
            worker = os.environ.get(WORKER_NAME_ENV, "a worker")
            bridge.request_stop(
                study._storage,
                study._study_id,
                f"study.stop() was called by {caller} (in {worker}); the running trials "
                "finished, no other started",
            )


def _load_python(entry: str) -> Objective:
    """The objective ``module:function`` names (``module`` alone: the function the module
    passes to ``study.optimize``)."""
    return _load_python_noting(entry)[0]


def _load_python_noting(entry: str) -> tuple[Objective, str | None]:
    """:func:`_load_python`'s objective, and what to say when importing the module stopped
    at its own ``study.optimize`` (a script's study never runs in a worker)."""
    module_name, _, function_name = entry.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module, record = scripts.import_module(module_name)
    except scripts.ScriptError as error:
        raise ObjectiveNotLoadable("spec.trial.python", str(error)) from None
    except Exception as error:
        # Where in the module it broke: in the worker's log (the pod log, worker-N.log),
        # unless the module is simply not there.
        if not scripts.is_own_module_missing(module_name, error):
            logging.getLogger("kubetune.trial").error(
                "cannot import %r:\n%s",
                module_name,
                "".join(traceback.format_exception(error)).rstrip(),
            )
        # The runner's own frames are not where the user's code broke.
        runner = os.path.dirname(os.path.abspath(__file__))
        raise ObjectiveNotLoadable(
            "spec.trial.python", scripts.import_failure(module_name, error, skip=[runner])
        ) from None
    optimized = record.optimize if record is not None else None
    note = record.note if record is not None and optimized is not None else None
    if note:
        logging.getLogger("kubetune.trial").warning("%s", note)
    if not function_name:
        if optimized is None:
            raise ObjectiveNotLoadable(
                "spec.trial.python",
                f"{module_name!r} does not call study.optimize when imported, so it gives "
                f"no objective; name the function: {module_name}:FUNCTION",
            )
        return optimized.func, note
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ObjectiveNotLoadable(
            "spec.trial.python", f"{module_name!r} has no function {function_name!r}"
        )
    return function, note


def format_value(value: Any) -> str:
    """A parameter as a command-line word: ``true``/``false``/``null`` like YAML and Hydra."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def fill_placeholders(argv: Sequence[str], values: dict[str, Any]) -> list[str]:
    """``argv`` with each ``{name}`` replaced by its value."""
    return [PLACEHOLDER.sub(lambda m: format_value(values[m.group(1)]), arg) for arg in argv]


class CommandObjective:
    """Runs a program per trial and reads its metrics from standard output.

    A metric line with a step is reported to the pruner; when the pruner says
    stop, the program's process group gets SIGTERM (then SIGKILL) and the trial
    ends PRUNED. A non-zero exit, a metric never printed, or a NaN ends it FAIL
    with the reason and the tail of standard error.
    """

    def __init__(self, argv: Sequence[str], metric_names: Sequence[str], study_name: str) -> None:
        self.argv = list(argv)
        self.metric_names = list(metric_names)
        self.study_name = study_name
        program = self.argv[0]
        if not PLACEHOLDER.search(program) and shutil.which(program, path=_search_path()) is None:
            raise ObjectiveNotLoadable(
                "spec.trial.command[0]", f"program {program!r} is not found on PATH"
            )

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        values = dict(trial.params)
        values.update(
            trial_number=trial.number, trial_id=trial._trial_id, study_name=self.study_name
        )
        # Kept where a lost pod's trial finds it again when it resumes in another pod.
        checkpoint_dir = checkpoints.directory(trial)
        values["checkpoint_dir"] = "" if checkpoint_dir is None else str(checkpoint_dir)
        argv = fill_placeholders(self.argv, values)
        env = dict(os.environ)
        if checkpoint_dir is not None:
            env[checkpoints.CHECKPOINT_DIR_ENV] = str(checkpoint_dir)
        env["PATH"] = _search_path()
        env["KUBETUNE_PARAMS"] = json.dumps(trial.params)
        env[IN_TRIAL_ENV] = self.study_name  # a tune() in the program refuses to start
        env["KUBETUNE_TRIAL_NUMBER"] = str(trial.number)
        # A verification repeat (spec.verify) is told so, to draw other seeds or folds.
        env["KUBETUNE_REPEAT"] = str(trial.user_attrs.get(REPEAT_ATTR, 0))
        env["KUBETUNE_SEED"] = str(seed(trial))
        try:
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
                env=env,
                # A process group of its own, so a prune stops all of it, in the worker's
                # session, so a local supervisor can end what a killed worker left; and
                # the worker killed outright (SIGKILL, the OOM killer) stops it too.
                preexec_fn=ends_with_parent(signal.SIGTERM, own_process_group=True),
            )
        except OSError as error:
            raise ObjectiveFailed(f"cannot start {argv[0]!r}: {error}") from None
        stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        reader = threading.Thread(target=_pump_stderr, args=(process, stderr_tail), daemon=True)
        reader.start()
        latest: dict[str, float] = {}
        primary = self.metric_names[0]
        single = len(self.metric_names) == 1
        try:
            assert process.stdout is not None
            for line in process.stdout:
                sys.stdout.write(line)
                parsed = parse_line(line)
                if parsed is None:
                    continue
                latest.update(parsed.values)
                if single and parsed.step is not None and primary in parsed.values:
                    trial.report(parsed.values[primary], parsed.step)
                    if trial.should_prune():
                        _terminate(process)
                        raise optuna.TrialPruned(f"pruned at step {parsed.step}")
            returncode = process.wait()
        finally:
            if process.poll() is None:
                _terminate(process)
            reader.join(timeout=2.0)
        tail = "".join(stderr_tail).strip()
        if returncode != 0:
            how = (
                f"was killed by {signal.Signals(-returncode).name}"
                if returncode < 0 and -returncode in signal.Signals._value2member_map_
                else f"exited with code {returncode}"
            )
            raise ObjectiveFailed(_with_tail(f"command {how}", tail))
        missing = [name for name in self.metric_names if name not in latest]
        if missing:
            raise ObjectiveFailed(
                _with_tail(
                    f"metric {missing[0]!r} was never printed (print a line such as "
                    f"'{missing[0]}=0.93' or '{{\"{missing[0]}\": 0.93}}')",
                    tail,
                )
            )
        result = [latest[name] for name in self.metric_names]
        return result[0] if single else result


def _search_path() -> str:
    """PATH with the runner's own environment first: ``python`` in a command means the
    interpreter (and packages) the runner runs on, in a virtualenv as in the image."""
    own = os.path.dirname(sys.executable)
    return os.pathsep.join([own, os.environ.get("PATH", "")])


#: The most characters a stored reason (``kubetune.fail_reason``) holds, and its first line.
MAX_REASON_CHARS = 2000
MAX_HEADLINE_CHARS = 500


def failure_reason(headline: str, details: str = "", *, label: str = "") -> str:
    """A trial's reason as stored and shown: a first line that says what went wrong on
    its own (live lines, tables and ``kubetune trials`` show it), then ``label`` and the
    last lines of ``details`` (a traceback, the end of standard error), bounded to
    :data:`MAX_REASON_CHARS` by dropping the oldest lines, never the first line."""
    headline = " ".join(headline.split())
    if len(headline) > MAX_HEADLINE_CHARS:
        headline = headline[: MAX_HEADLINE_CHARS - 1] + "…"
    lines = [line.rstrip() for line in details.strip("\n").splitlines()]
    if not any(lines):
        return headline
    room = MAX_REASON_CHARS - len(headline) - len(label) - 2
    kept: list[str] = []
    for line in reversed(lines):
        if len(line) > MAX_HEADLINE_CHARS:
            line = line[: MAX_HEADLINE_CHARS - 1] + "…"
        if len(line) + 1 > room:
            break
        kept.append(line)
        room -= len(line) + 1
    kept.reverse()
    if len(kept) < len(lines):
        kept.insert(0, "…")
    return "\n".join([headline, *([label] if label else []), *kept])


def _with_tail(message: str, tail: str) -> str:
    """``message``, with the last line of standard error on the first line (the
    exception, "can't open file ...") and the lines before it below."""
    lines = [line for line in tail.strip().splitlines() if line.strip()]
    if not lines:
        return message
    headline = f"{message}: {lines[-1].strip()}"
    if len(lines) == 1:
        return failure_reason(headline)
    return failure_reason(headline, "\n".join(lines), label="stderr ends with:")


def _pump_stderr(process: subprocess.Popen[str], tail: collections.deque[str]) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        sys.stderr.write(line)
        tail.append(line)


def _terminate(process: subprocess.Popen[str]) -> None:
    """SIGTERM the program's process group, then SIGKILL after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=TERMINATE_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
