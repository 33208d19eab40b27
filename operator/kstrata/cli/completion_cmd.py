"""``kstrata completion bash|zsh|fish`` and the hidden ``kstrata __complete``.

The shell only: ``completion`` prints :func:`kstrata.app.completion.script`;
``__complete`` (called by those scripts, and by kubectl through
``kubectl_complete-kstrata``, at each TAB, never by people, so it is not a
registered command and not in ``--help``) builds the full parser and
prints what :func:`kstrata.app.completion.complete` finds, one item a line.
It must answer in well under 200 ms: neither kopf nor the ``kubernetes``
client is imported, and any failure prints no candidates rather than an error.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import TextIO

from kstrata.app.completion import NAMES_DEADLINE, SHELLS, complete, script
from kstrata.cli.common import EXIT_OK, Subcommands, kubeconfig_path

#: The hidden command the completion scripts call.
COMPLETE: str = "__complete"
#: Seconds the cluster lookup of one TAB may take (default 0.12): a cluster
#: far away (three round trips: TCP, TLS, the GET) needs more to give names.
TIMEOUT_VARIABLE: str = "KSTRATA_COMPLETION_TIMEOUT"
_MAX_TIMEOUT = 10.0
#: ``kstrata __complete --kubectl``: answer as kubectl's plugin completion expects.
KUBECTL_FLAG: str = "--kubectl"
#: The directive numbers kubectl's completion (cobra) understands: no file
#: completion (4) after our own words, default file completion (0), directories (16).
_KUBECTL_DIRECTIVES = {"words": 4, "files": 0, "dirs": 16}

_EPILOG = """\
Commands, flags and choices are completed from the installed kstrata, names
of ConfigProfiles, SealedSecrets and namespaces from the cluster of the
current kubeconfig context (or --kubeconfig/--context/-n on the line) when it
answers within 0.12 s ($KSTRATA_COMPLETION_TIMEOUT seconds, for a distant
cluster); nothing is completed when it does not, and no plugin (exec,
auth-provider) is ever run for a completion.
The scripts also complete `kubectl-kstrata`; `kubectl kstrata` completes
(kubectl 1.26+) when `kubectl_complete-kstrata` is on PATH (plugins/krew/).
"""


def register(commands: Subcommands) -> None:
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print a script that completes kstrata's commands, flags and the names "
        "of ConfigProfiles and SealedSecrets in the shell named.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    completion.set_defaults(handler=_completion)


def _completion(args: argparse.Namespace, out: TextIO) -> int:
    out.write(script(args.shell))
    return EXIT_OK


def complete_words(words: list[str], out: TextIO) -> int:
    """``kstrata __complete [--kubectl] WORD...``: print what may come next; never fail.

    ``--kubectl``: in the format kubectl (1.26+) expects from a plugin's
    ``kubectl_complete-NAME`` program: candidates, then ``:DIRECTIVE``.
    """
    from kstrata.cli.main import build_parser

    for_kubectl = words[:1] == [KUBECTL_FLAG]
    words = words[1:] if for_kubectl else words
    # The words before the cursor name the command: only its group's parser is built.
    parser = build_parser(words[:-1])
    found = complete(parser, words, kubeconfig_path(argparse.Namespace()), _deadline())
    lines = found.lines()
    if for_kubectl:
        lines = [*found.words, f":{_KUBECTL_DIRECTIVES[found.directive]}"]
    out.write("".join(f"{line}\n" for line in lines))
    return EXIT_OK


def kubectl_complete() -> None:
    """Entry point of ``kubectl_complete-kstrata``, which kubectl runs for ``kubectl kstrata``."""
    import sys

    sys.exit(complete_words([KUBECTL_FLAG, *sys.argv[1:]], sys.stdout))


def _deadline() -> float:
    """$KSTRATA_COMPLETION_TIMEOUT if it is a sensible number of seconds, else the default."""
    try:
        seconds = float(os.environ.get(TIMEOUT_VARIABLE, ""))
    except ValueError:
        return NAMES_DEADLINE
    return seconds if math.isfinite(seconds) and 0 < seconds <= _MAX_TIMEOUT else NAMES_DEADLINE
