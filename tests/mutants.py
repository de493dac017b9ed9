"""Deliberate bugs ("mutants") and the tests that must catch each: see tests/MUTATIONS.md.

Each mutant is data: a file, a piece of its text, and what that text becomes. The script
never edits the checkout it runs from: it exports the committed tree (``git archive``)
into a fresh folder, applies one mutant there at a time, runs that mutant's tests with
the copy's code first on ``PYTHONPATH`` (and checks that the copy's code is what
imports), reverts it, and reports which mutants the tests caught.

    .venv/bin/python tests/mutants.py list
    .venv/bin/python tests/mutants.py run                    # every mutant
    .venv/bin/python tests/mutants.py run claim-lock --repeat 3
    .venv/bin/python tests/mutants.py run --baseline         # the tests pass unmutated first

A mutant is *caught* when its tests fail with it applied (pytest's exit code 1). Any
other outcome (they pass, or pytest cannot run them) is reported as not caught.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Where the importable packages live inside a checkout (first on the copy's PYTHONPATH).
PACKAGE_ROOTS = ("sdk", "trial_image", "operator")


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug: ``original`` (found exactly once in ``path``) becomes ``mutated``."""

    name: str
    why: str
    path: str
    original: str
    mutated: str
    tests: tuple[str, ...]


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="claim-lock",
        why="workers claim trials without the study's claim lock: the budget can be overrun",
        path="trial_image/kubetune_trial/runner.py",
        original="            claimed = self.lock.claim(\n",
        mutated="            claimed = (lambda run, before: run() if before() else None)(\n",
        tests=(
            "tests/integration/test_runner.py::test_parallel_workers_never_exceed_max_trials",
            "tests/integration/test_local.py::test_parallelism_option_runs_that_many_workers_within_the_budget",
        ),
    ),
    Mutant(
        name="sqlite-claim-lock",
        why="the claim lock takes no file lock on SQLite: the budget can be overrun",
        path="sdk/kubetune/engine/storage.py",
        original="            fcntl.flock(handle, fcntl.LOCK_EX)\n",
        mutated="            pass  # mutant: no file lock\n",
        tests=(
            "tests/integration/test_storage_backends.py::test_sqlite_url_from_the_spec_runs_the_exact_budget",
        ),
    ),
    Mutant(
        name="sigkill-after-sigterm",
        why="a pruned command that ignores SIGTERM is waited for instead of killed",
        path="trial_image/kubetune_trial/objectives.py",
        original="            os.killpg(process.pid, signal.SIGKILL)\n",
        mutated="            pass  # mutant: no SIGKILL\n",
        tests=(
            "tests/integration/test_runner.py::test_pruned_command_that_ignores_sigterm_is_killed",
        ),
    ),
    Mutant(
        name="command-booleans",
        why="a boolean parameter reaches a command as True/False, not true/false",
        path="trial_image/kubetune_trial/objectives.py",
        original='        return "true" if value else "false"\n',
        mutated="        return str(value)  # mutant: Python's spelling\n",
        tests=(
            "tests/integration/test_runner.py::test_command_gets_placeholders_booleans_and_kubetune_params",
        ),
    ),
    Mutant(
        name="dashboard-everywhere",
        why="kubetune dashboard listens on every interface, not only 127.0.0.1",
        path="sdk/kubetune/cli/tools.py",
        original='    ] = "127.0.0.1",\n',
        mutated='    ] = "0.0.0.0",  # mutant: every interface\n',
        tests=("tests/integration/test_dashboard_loopback.py",),
    ),
    Mutant(
        name="status-scrub",
        why="the operator writes its status patch without removing a database password",
        path="operator/kubetune_operator/reconciler.py",
        original='        safe = json.loads(scrub(json.dumps(patch), self._url or ""))\n',
        mutated="        safe = patch  # mutant: no scrub\n",
        tests=("tests/unit/test_status_scrub.py",),
    ),
    Mutant(
        name="lost-pod-reason",
        why="a lost pod's trial is failed with a generic reason, not why the pod ended",
        path="operator/kubetune_operator/reconciler.py",
        original='        reasons = {p["metadata"]["name"]: end_reason(p) for p in pods}\n',
        mutated="        reasons: dict[str, str] = {}  # mutant: no pod reasons\n",
        tests=(
            "tests/unit/test_reconciler_rules.py::test_an_oom_killed_pods_trial_fails_with_the_reason_and_runs_again",
        ),
    ),
    Mutant(
        name="best-params-configmap",
        why="a new best trial of a single-objective study is not written to the ConfigMap",
        path="operator/kubetune_operator/reconciler.py",
        original="            self._write_best_params(meta, best_params_document([best]))\n",
        mutated="            pass  # mutant: no best-params ConfigMap\n",
        tests=("tests/e2e/test_study_lifecycle.py::test_study_runs_to_succeeded_with_best_params",),
    ),
    Mutant(
        name="suspend-requeue",
        why="suspending a study fails its running trials without queueing them to run again",
        path="sdk/kubetune/engine/supervision.py",
        original='"the study was suspended" if situation.live_workers else None,\n'
        "            requeue=True,\n",
        mutated='"the study was suspended" if situation.live_workers else None,\n'
        "            requeue=False,\n",
        tests=(
            "tests/unit/test_reconciler_rules.py::test_suspend_stops_the_pods_requeues_their_trials_and_resume_carries_on",
        ),
    ),
    Mutant(
        name="timeout-edit",
        why="editing spec.budget.timeout of a running study does not move its deadline",
        path="operator/kubetune_operator/reconciler.py",
        original="            if in_force.budget.timeout != stored.budget.timeout:\n",
        mutated="            if False:  # mutant: timeout edits ignored\n",
        tests=(
            "tests/unit/test_reconciler_rules.py::test_editing_the_timeout_of_a_running_study_ends_it",
        ),
    ),
    Mutant(
        name="image-pull-condition",
        why="a pod in ImagePullBackOff is not reported (no PodsReady=False, no Event)",
        path="operator/kubetune_operator/pods.py",
        original='            "ImagePullBackOff",\n',
        mutated="",
        tests=(
            "tests/unit/test_reconciler_rules.py::test_a_pod_that_cannot_start_is_a_condition_and_one_event",
        ),
    ),
    Mutant(
        name="ctrl-c-requeue",
        why="Ctrl-C fails the running trials of kubetune run without queueing them again",
        path="trial_image/kubetune_trial/runner.py",
        original="retries=self.spec.trial.retries,\n                requeue=True,\n",
        mutated="retries=self.spec.trial.retries,\n                requeue=False,\n",
        tests=(
            "tests/integration/test_local.py::test_ctrl_c_stops_cleanly_and_loses_no_finished_trial",
        ),
    ),
    Mutant(
        name="pooler-lookup-any-database",
        why="the pooler's lookup answers for a role in any database it owns, not only this one",
        path="operator/kubetune_operator/tenants.py",
        original="      AND d.datname = pg_catalog.current_database()\n",
        mutated="",
        tests=(
            "tests/integration/test_tenants.py::test_the_pooler_role_learns_one_verifier_per_database_and_reads_no_data",
        ),
    ),
    Mutant(
        name="pooler-direct-pods",
        why="trial pods get their tenant's direct URL, not the pooler's",
        path="operator/kubetune_operator/reconciler.py",
        original='                "stringData": {"url": pod_url},\n',
        mutated='                "stringData": {"url": url},  # mutant: no pooler\n',
        tests=("tests/e2e/test_pooler.py",),
    ),
)


class StaleMutant(Exception):
    """A mutant's original text is no longer in its file (exactly once)."""


def export_tree(source: Path, destination: Path, ref: str) -> None:
    """The committed tree at ``ref`` of ``source``, written into ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(source), "archive", "--format=tar", ref],
        check=True,
        capture_output=True,
    )
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive.stdout, check=True)


def copy_env(copy: Path) -> dict[str, str]:
    """The environment the tests run in: the copy's packages first on PYTHONPATH."""
    env = dict(os.environ)
    paths = [str(copy / root) for root in PACKAGE_ROOTS]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def check_imports_from(copy: Path, env: dict[str, str]) -> None:
    """Refuse to go on unless ``kubetune``, the operator and the runner import from the copy."""
    code = (
        "import kubetune, kubetune_operator, kubetune_trial\n"
        "for m in (kubetune, kubetune_operator, kubetune_trial): print(m.__file__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=copy, capture_output=True, text=True, check=True
    ).stdout.split()
    stray = [path for path in out if not Path(path).resolve().is_relative_to(copy.resolve())]
    if stray:
        raise SystemExit(f"the copy's code is not what imports: {stray}")


def apply(copy: Path, mutant: Mutant) -> str:
    """Apply ``mutant`` in the copy; returns the file's text before, to revert with."""
    path = copy / mutant.path
    text = path.read_text(encoding="utf-8")
    count = text.count(mutant.original)
    if count != 1:
        raise StaleMutant(
            f"{mutant.name}: the original text occurs {count} times in {mutant.path} "
            "(the code changed; update the mutant in tests/mutants.py)"
        )
    path.write_text(text.replace(mutant.original, mutant.mutated), encoding="utf-8")
    return text


def run_tests(copy: Path, env: dict[str, str], tests: tuple[str, ...], basetemp: Path) -> int:
    """pytest's exit code for ``tests`` in the copy."""
    shutil.rmtree(basetemp, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--basetemp={basetemp}",
        "-q",
        "-x",
        *tests,
    ]
    print("  $", " ".join(command[3:]), flush=True)
    # Ctrl-C as a terminal gives it: a shell's background job inherits SIGINT ignored,
    # and the tests that press Ctrl-C on the CLI would then see it do nothing.
    return subprocess.run(command, env=env, cwd=copy, preexec_fn=_default_sigint).returncode


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the mutants and their tests")
    run = sub.add_parser("run", help="apply each mutant in a copy and run its tests")
    run.add_argument("names", nargs="*", help="mutants to run (default: all)")
    run.add_argument("--ref", default="HEAD", help="the commit to copy (default: HEAD)")
    run.add_argument("--repeat", type=int, default=1, help="runs per mutant (default: 1)")
    run.add_argument("--baseline", action="store_true", help="first run the tests unmutated")
    run.add_argument("--keep", action="store_true", help="keep the copy (its path is printed)")
    args = parser.parse_args(argv)

    if args.command == "list":
        for mutant in MUTANTS:
            print(f"{mutant.name}: {mutant.why}\n  {mutant.path}")
            for test in mutant.tests:
                print(f"    {test}")
        return 0

    by_name = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"no mutant named {unknown}; see `list`")
    chosen = [by_name[n] for n in args.names] if args.names else list(MUTANTS)
    work = Path(tempfile.mkdtemp(prefix="kubetune-mutants-"))
    copy = work / "repo"
    export_tree(REPO, copy, args.ref)
    env = copy_env(copy)
    check_imports_from(copy, env)
    print(f"copy of {args.ref} in {copy}", flush=True)
    results: list[tuple[str, list[bool]]] = []
    try:
        if args.baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            print("baseline (no mutant):", flush=True)
            code = run_tests(copy, env, tests, work / "pt")
            if code != 0:
                print(f"the tests fail without any mutant (exit code {code}); stopping")
                return 2
        for mutant in chosen:
            caught: list[bool] = []
            for attempt in range(args.repeat):
                print(f"{mutant.name} (run {attempt + 1}/{args.repeat}): {mutant.why}", flush=True)
                try:
                    before = apply(copy, mutant)
                except StaleMutant as stale:
                    print(f"  STALE: {stale}", flush=True)
                    caught.append(False)
                    break
                try:
                    caught.append(run_tests(copy, env, mutant.tests, work / "pt") == 1)
                finally:
                    (copy / mutant.path).write_text(before, encoding="utf-8")
            results.append((mutant.name, caught))
    finally:
        if args.keep:
            print(f"kept {copy}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\nmutant                  caught")
    for name, caught in results:
        print(f"{name:<23} {sum(caught)}/{len(caught)}")
    return 0 if all(all(c) for _, c in results) else 1


if __name__ == "__main__":
    sys.exit(main())
