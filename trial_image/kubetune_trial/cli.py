"""``kubetune-trial``: the entrypoint of trial pods and of local workers.

Configuration comes from the environment (see :mod:`kubetune.worker`); the
storage URL only from ``KUBETUNE_STORAGE_URL``, never from the command line,
where any user on the machine could read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from kubetune.engine.gang import Gang
from kubetune.engine.storage import StorageUnavailable, scrub
from kubetune.engine.worker import (
    DEFAULT_TERMINATION_LOG,
    EXIT_CONFIG_ERROR,
    EXIT_OK,
    EXIT_STORAGE_ERROR,
    STORAGE_URL_ENV,
    TERMINATION_LOG_ENV,
    WorkerConfig,
    WorkerConfigError,
    storage_url_from_env,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubetune-trial",
        description=(
            "Run trials of a kubetune study against its Optuna storage until the study's "
            f"budget is spent. The storage URL is read from ${STORAGE_URL_ENV}."
        ),
    )
    parser.add_argument("--study", help="Optuna study name (default: $KUBETUNE_STUDY_NAME)")
    parser.add_argument(
        "--spec", help="a Study YAML, used to create the study if it does not exist yet"
    )
    parser.add_argument(
        "--trials",
        type=int,
        help="stop after this many trials (default: until the budget is spent)",
    )
    parser.add_argument("--worker-name", help="where trials ran (default: the host name)")
    return parser


def _config(args: argparse.Namespace) -> WorkerConfig:
    env = dict(os.environ)
    if args.study:
        env["KUBETUNE_STUDY_NAME"] = args.study
    config = WorkerConfig.from_env(env)
    changes: dict[str, object] = {}
    if args.spec:
        changes["spec_file"] = args.spec
    if args.trials is not None:
        changes["max_trials"] = args.trials
    if args.worker_name:
        changes["worker_name"] = args.worker_name
    return dataclasses.replace(config, **changes)


def _last_words(message: str) -> None:
    """Print why the worker gives up, and leave it where Kubernetes shows it."""
    print(f"kubetune-trial: {message}", file=sys.stderr)
    path = Path(os.environ.get(TERMINATION_LOG_ENV, DEFAULT_TERMINATION_LOG))
    try:
        if path.exists():  # the kubelet creates it in a pod; elsewhere there is none
            path.write_text(message[-4000:], encoding="utf-8")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Imported here so that --help stays instant.
    import optuna
    from kubetune.study.spec import SpecError

    from kubetune_trial.objectives import ObjectiveFailed, ObjectiveNotLoadable
    from kubetune_trial.runner import Worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = ""
    try:
        config = _config(args)
        url = storage_url_from_env()
        gang = Gang.from_env()
        if gang.is_member:  # a multi-node trial's pod 1..N-1: it follows its leader
            from kubetune_trial.gang import serve

            return serve(config, url, gang)
        worker = Worker(config, url)
    except (WorkerConfigError, ObjectiveNotLoadable, ObjectiveFailed, SpecError) as error:
        _last_words(scrub(str(error), url))
        return EXIT_CONFIG_ERROR
    except StorageUnavailable as error:
        _last_words(str(error))
        return EXIT_STORAGE_ERROR
    try:
        summary = worker.run()
    except StorageUnavailable as error:
        _last_words(str(error))
        return EXIT_STORAGE_ERROR
    counts = ", ".join(f"{n} {s.lower()}" for s, n in summary.trials.items())
    ending = summary.stopped_by and f"stopped by {summary.stopped_by}"
    ending = ending or (summary.ended and f"the study ended: {summary.ended}")
    ending = ending or (summary.stop and f"budget: {summary.stop.value}") or "trial quota done"
    logging.getLogger("kubetune.trial").info(
        "worker %s ran %d trials (%s); %s", config.worker_name, summary.total, counts, ending
    )
    if summary.stopped_by is not None:
        return 128 + worker_signal(summary.stopped_by)
    return EXIT_OK


def worker_signal(name: str) -> int:
    import signal

    return int(signal.Signals[name])


if __name__ == "__main__":
    sys.exit(main())
