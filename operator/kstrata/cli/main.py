"""Entry point of the ``kstrata`` and ``kubectl-kstrata`` commands.

Exit codes (documented in docs/config-management-guide.md):
  0  success (for ``diff``: no differences)
  1  invalid input, validation failure (for ``diff``: differences found)
  2  usage error
  3  the cluster refused or failed a request
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from kstrata import __version__
from kstrata.errors import ClusterError, KstrataError, UsageError

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_CLUSTER = 3

Command = Callable[[argparse.Namespace, TextIO], int]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` maps every error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kstrata",
        description="Per-environment configuration and sealed secrets for Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"kstrata {__version__}")
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)",
    )
    parser.add_argument("--context", default=None, help="kubeconfig context to use")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    version = commands.add_parser("version", help="print the kstrata version")
    version.set_defaults(handler=_version)

    operator = commands.add_parser("operator", help="run the operator")
    operator_commands = operator.add_subparsers(dest="operator_command", parser_class=_Parser)
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
    run.set_defaults(handler=_operator_run)
    return parser


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
    ):
        if getattr(args, flag) is not None:
            overrides[name] = getattr(args, flag)
    if args.standalone:
        overrides["standalone"] = True
    settings = Settings().with_overrides(**overrides)
    cluster = connect(_kubeconfig(args), args.context)
    runner.run(runner.OperatorContext(settings=settings, cluster=cluster))
    return EXIT_OK


def _kubeconfig(args: argparse.Namespace) -> Path | None:
    """The edge where KUBECONFIG is read; None means in-cluster credentials."""
    if args.kubeconfig is not None:
        return Path(args.kubeconfig)
    from_env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if from_env:
        return Path(from_env)
    default = Path.home() / ".kube" / "config"
    return default if default.exists() else None


def exit_code_for(error: KstrataError) -> int:
    if isinstance(error, UsageError):
        return EXIT_USAGE
    if isinstance(error, ClusterError):
        return EXIT_CLUSTER
    return EXIT_INVALID


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one command; return its exit code.  The one place errors become messages."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        handler: Command = args.handler
        return handler(args, out)
    except KstrataError as error:
        print(f"error: {error}", file=err)
        return exit_code_for(error)
    except SystemExit as exit_request:
        # argparse's --help and --version exit; main() returns codes instead.
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_OK
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
