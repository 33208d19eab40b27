"""Entry point of the ``kstrata`` and ``kubectl-kstrata`` commands.

Exit codes (documented in docs/config-management-guide.md):
  0  success (for ``diff``: no differences)
  1  invalid input, validation failure (for ``diff``: differences found)
  2  usage error (also: a revision that is not in the history)
  3  the cluster refused or failed a request
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path
from typing import Final, TextIO

from kstrata import __version__
from kstrata.cli.common import (
    EXIT_CLUSTER,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    Parser,
    Subcommands,
)
from kstrata.errors import ClusterError, KstrataError, RevisionNotFoundError, UsageError

__all__ = ["EXIT_CLUSTER", "EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "exit_code_for", "main"]


#: The modules that register command groups, in the order ``--help`` lists them.
_GROUPS: Final = (
    "config_cmd",
    "history_cmd",
    "keys_cmd",
    "migrate_cmd",
    "operator_cmd",
    "profile_cmd",
    "reseal_cmd",
    "seal_cmd",
    "watch_cmd",
    "completion_cmd",
)
#: Which module registers each top-level command.  Building every group's
#: parser (and importing its module) costs an offline command ~15 ms of its
#: 200 ms budget, so a known command gets only its own group; anything else
#: (no command, ``--help`` first, a typo, a command missing here) gets them
#: all, which keeps help and error messages complete.  A unit test checks
#: this table against what the groups register.
COMMAND_GROUPS: Final = {
    "render": "config_cmd",
    "validate": "config_cmd",
    "history": "history_cmd",
    "diff": "history_cmd",
    "rollback": "history_cmd",
    "keys": "keys_cmd",
    "migrate": "migrate_cmd",
    "version": "operator_cmd",
    "operator": "operator_cmd",
    "list": "profile_cmd",
    "get": "profile_cmd",
    "set": "profile_cmd",
    "import": "profile_cmd",
    "reseal": "reseal_cmd",
    "seal": "seal_cmd",
    "unseal": "seal_cmd",
    "watch": "watch_cmd",
    "completion": "completion_cmd",
}
#: Global options that take a value (the word after them is not the command).
_GLOBAL_WITH_VALUE: Final = ("--kubeconfig", "--context")


def command_word(argv: Sequence[str]) -> str | None:
    """The top-level command in ``argv``, or None if there is none or help comes first."""
    expects_value = False
    for token in argv:
        if expects_value:
            expects_value = False
            continue
        if token in ("-h", "--help", "--"):
            return None
        if token.startswith("--") and "=" not in token:
            # argparse accepts unique prefixes of long options (--kube FILE).
            expects_value = any(option.startswith(token) for option in _GLOBAL_WITH_VALUE)
            continue
        if token.startswith("-"):
            continue
        return token
    return None


def _command_groups(command: str | None = None) -> list[Callable[[Subcommands], None]]:
    """Each command group registers its subcommands; heavy imports stay inside handlers."""
    group = COMMAND_GROUPS.get(command or "")
    modules = (group,) if group is not None else _GROUPS
    return [import_module(f"kstrata.cli.{module}").register for module in modules]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``'s command only, or for every command if ``argv`` is None."""
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

    if argv is not None and _version_only(argv):
        return parser  # argparse prints the version and exits before it needs a command
    for register in _command_groups(None if argv is None else command_word(argv)):
        register(commands)
    return parser


def _version_only(argv: Sequence[str]) -> bool:
    """``kstrata --version``: no command and no help, so no command group is needed.

    Building every group for it cost ~15 ms of imports; the version is a constant.
    """
    return "--version" in argv and command_word(argv) is None and not {"-h", "--help"} & set(argv)


def exit_code_for(error: KstrataError) -> int:
    # A revision that is not there is a wrong argument, and must not look like
    # `kstrata diff`'s "differences found" (exit 1).
    if isinstance(error, UsageError | RevisionNotFoundError):
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
        arguments = list(sys.argv[1:] if argv is None else argv)
        if arguments[:1] == ["__complete"]:  # hidden: what completion scripts call per TAB
            complete_words = import_module("kstrata.cli.completion_cmd").complete_words
            return int(complete_words(arguments[1:], out))
        args = build_parser(arguments).parse_args(arguments)
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
