"""``kstrata completion bash|zsh|fish`` and the hidden ``kstrata __complete``.

The shell only: ``completion`` prints :func:`kstrata.app.completion.script`;
``__complete`` (called by those scripts at each TAB, never by people, so it
is not a registered command and not in ``--help``) builds the full parser and
prints what :func:`kstrata.app.completion.complete` finds, one item a line.
It must answer in well under 200 ms: neither kopf nor the ``kubernetes``
client is imported, and any failure prints no candidates rather than an error.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any, TextIO

from kstrata.app.completion import NAMES_DEADLINE, SHELLS, complete, script
from kstrata.cli.common import EXIT_OK, kubeconfig_path

#: The hidden command the completion scripts call.
COMPLETE: str = "__complete"
#: Seconds the cluster lookup of one TAB may take (default 0.12): a cluster
#: far away (three round trips: TCP, TLS, the GET) needs more to give names.
TIMEOUT_VARIABLE: str = "KSTRATA_COMPLETION_TIMEOUT"
_MAX_TIMEOUT = 10.0

_EPILOG = """\
examples:
  source <(kstrata completion bash)       # bash, this shell only
  kstrata completion bash > ~/.local/share/bash-completion/completions/kstrata
  source <(kstrata completion zsh)        # zsh, after compinit
  kstrata completion zsh > "${fpath[1]}/_kstrata"
  kstrata completion fish > ~/.config/fish/completions/kstrata.fish

Commands, flags and choices are completed from the installed kstrata, names
of ConfigProfiles, SealedSecrets and namespaces from the cluster of the
current kubeconfig context (or --kubeconfig/--context/-n on the line) when it
answers within 0.12 s ($KSTRATA_COMPLETION_TIMEOUT seconds, for a distant
cluster); nothing is completed when it does not, and no plugin (exec,
auth-provider) is ever run for a completion.
The scripts also complete `kubectl-kstrata` (the krew plugin's name).
"""


def register(commands: Any) -> None:
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
    """``kstrata __complete WORD...``: print the directive and candidates; never fail."""
    from kstrata.cli.main import build_parser

    # The words before the cursor name the command: only its group's parser is built.
    parser = build_parser(words[:-1])
    found = complete(parser, words, kubeconfig_path(argparse.Namespace()), _deadline())
    out.write("".join(f"{line}\n" for line in found.lines()))
    return EXIT_OK


def _deadline() -> float:
    """$KSTRATA_COMPLETION_TIMEOUT if it is a sensible number of seconds, else the default."""
    try:
        seconds = float(os.environ.get(TIMEOUT_VARIABLE, ""))
    except ValueError:
        return NAMES_DEADLINE
    return seconds if math.isfinite(seconds) and 0 < seconds <= _MAX_TIMEOUT else NAMES_DEADLINE
