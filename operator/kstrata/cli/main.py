"""Entry point of the ``kstrata`` and ``kubectl-kstrata`` commands.

Exit codes (documented in docs/config-management-guide.md):
  0  success (for ``diff``: no differences)
  1  invalid input, validation failure (for ``diff``: differences found)
  2  usage error
  3  the cluster refused or failed a request
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from kstrata import __version__
from kstrata.cli.common import (
    EXIT_CLUSTER,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    Parser,
)
from kstrata.errors import ClusterError, KstrataError, UsageError

__all__ = ["EXIT_CLUSTER", "EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "exit_code_for", "main"]


def _command_groups() -> list[Callable[[Any], None]]:
    """Each command group registers its subcommands; heavy imports stay inside handlers."""
    from kstrata.cli import (
        config_cmd,
        history_cmd,
        keys_cmd,
        operator_cmd,
        profile_cmd,
        seal_cmd,
        watch_cmd,
    )

    return [
        config_cmd.register,
        history_cmd.register,
        keys_cmd.register,
        operator_cmd.register,
        profile_cmd.register,
        seal_cmd.register,
        watch_cmd.register,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    for register in _command_groups():
        register(commands)
    return parser


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
