"""``kstrata version`` and ``kstrata operator run``."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from kstrata import __version__
from kstrata.cli.common import EXIT_OK, kubeconfig_path


def register(commands: Any) -> None:
    version = commands.add_parser("version", help="print the kstrata version")
    version.set_defaults(handler=_version)

    operator = commands.add_parser("operator", help="run the operator")
    operator_commands = operator.add_subparsers(
        dest="operator_command", parser_class=type(operator)
    )
    operator_commands.required = True
    run = operator_commands.add_parser("run", help="run the operator (kopf) in the foreground")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: cluster-wide",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch all namespaces (default)"
    )
    run.add_argument("--standalone", action="store_true", help="run without kopf peering")
    run.add_argument("--default-environment", default=None)
    run.add_argument("--operator-namespace", default=None)
    run.add_argument("--metrics-address", default=None, help="host:port for /metrics")
    run.add_argument("--liveness", default=None, help="liveness endpoint URL")
    run.add_argument(
        "--webhook-address", default=None, help="host:port the admission webhook listens on"
    )
    run.add_argument(
        "--webhook-url",
        default=None,
        help="base URL the API server calls (outside a cluster); default: the in-cluster Service",
    )
    run.add_argument("--no-webhook", action="store_true", help="serve no admission webhook")
    run.add_argument("--log-level", choices=("debug", "info", "warning"), default=None)
    run.add_argument("--log-format", choices=("text", "json"), default=None)
    run.set_defaults(handler=_operator_run)


def _version(args: argparse.Namespace, out: TextIO) -> int:
    print(f"kstrata {__version__}", file=out)
    return EXIT_OK


def _operator_run(args: argparse.Namespace, out: TextIO) -> int:
    from kstrata.controller import runner
    from kstrata.kube.connection import connect
    from kstrata.settings import Settings

    overrides: dict[str, object] = {"namespaces": tuple(args.namespaces)}
    for flag, name in (
        ("default_environment", "default_environment"),
        ("operator_namespace", "operator_namespace"),
        ("metrics_address", "metrics_address"),
        ("liveness", "liveness_endpoint"),
        ("log_level", "log_level"),
        ("log_format", "log_format"),
        ("webhook_address", "webhook_address"),
        ("webhook_url", "webhook_url"),
    ):
        if getattr(args, flag) is not None:
            overrides[name] = getattr(args, flag)
    if args.standalone:
        overrides["standalone"] = True
    kubeconfig = kubeconfig_path(args)
    if args.no_webhook or (kubeconfig is not None and args.webhook_url is None):
        # Outside a cluster the API server cannot reach the in-cluster Service the
        # default configuration names; registering it would block every apply.
        if not args.no_webhook:
            print(
                "admission webhook disabled outside the cluster; pass --webhook-url to enable it",
                file=sys.stderr,
            )
        overrides["webhook_address"] = None
    settings = Settings().with_overrides(**overrides)
    cluster = connect(kubeconfig, args.context)
    runner.run(runner.OperatorContext(settings=settings, cluster=cluster))
    return EXIT_OK
