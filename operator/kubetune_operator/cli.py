"""``kubetune-operator``: run the operator (a thin layer over ``kopf run``).

kubetune-operator                       # watch every namespace, standalone
kubetune-operator --namespace team-a    # or only these
kubetune-operator --peering kubetune    # several replicas: one serves, the others wait

The options are Kopf's where Kopf has them (``--standalone``, ``--peering``,
``--namespace``, ``--all-namespaces``, ``--liveness``), so the chart's Deployment
reads like a ``kopf run`` command line.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubetune-operator",
        description="The kubetune operator: runs Study objects as trial pods on this cluster.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (default)"
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint for the Deployment's probes (default: %(default)s)",
    )
    coordination = parser.add_mutually_exclusive_group()
    coordination.add_argument(
        "--standalone",
        action="store_true",
        help="run alone, with no peering (default; only ever one replica)",
    )
    coordination.add_argument(
        "--peering", help="Kopf peering name, for several replicas (default: standalone)"
    )
    parser.add_argument("--verbose", action="store_true")
    return parser


def kopf_arguments(args: argparse.Namespace) -> list[str]:
    argv = ["run", "-m", "kubetune_operator.handlers", f"--liveness={args.liveness}"]
    argv += [f"--peering={args.peering}"] if args.peering else ["--standalone"]
    if args.namespace:
        for namespace in args.namespace:
            argv += ["--namespace", namespace]
    else:
        argv.append("--all-namespaces")
    if args.verbose:
        argv.append("--verbose")
    return argv


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.namespace:
        os.environ["KUBETUNE_NAMESPACED"] = "1"
    from kopf.cli import main as kopf_main

    sys.exit(kopf_main(args=kopf_arguments(args), prog_name="kubetune-operator"))


if __name__ == "__main__":
    main()
