"""Shell completion: what can come next on a ``kstrata`` command line.

Why one Python function behind three small shell scripts: the commands,
flags and choices are read from the same argparse parser that parses the
command, at every TAB, so completion never lists a flag that is gone or
misses a new one, and nothing is maintained by hand per shell.  The scripts
(``kstrata completion bash|zsh|fish``) only hand the words typed so far to
the hidden ``kstrata __complete`` and show what it prints.

Names of ConfigProfiles, SealedSecrets and namespaces come from the cluster
when one is reachable, through :mod:`kstrata.kube.names` (one plain HTTPS
GET with a hard deadline, not the ``kubernetes`` client, whose import alone
costs more than a prompt can wait).  Contexts come from the kubeconfig file.

What ``kstrata __complete WORD...`` prints, one item a line: first a
directive (``words``: the candidates follow; ``files`` or ``dirs``: let the
shell complete paths), then the candidates, already filtered by the word
being completed.  The last WORD is the word under the cursor (empty after a
space).  Bash splits ``--output=js`` into ``--output``, ``=``, ``js``; a lone
``=`` after an option is skipped here, so all three shells share one protocol.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

SHELLS: Final = ("bash", "zsh", "fish")
#: What the whole cluster lookup of one TAB may take (Python's start is extra).
NAMES_DEADLINE: Final = 0.12

#: Commands whose NAME argument is a kstrata object, and which kinds it may be
#: (``--kind`` narrows these down when it is on the line).  A unit test checks
#: each entry against the parser.
NAMED_OBJECTS: Final = {
    "get": ("profile",),
    "set": ("profile",),
    "history": ("profile", "secret"),
    "diff": ("profile", "secret"),
    "rollback": ("profile", "secret"),
}
_NAME_METAVAR: Final = "NAME"
_NAMESPACE_DESTS: Final = ("namespace", "namespaces")
_FILE_DESTS: Final = ("files", "filename", "kubeconfig", "cert", "out", "merge_into", "pidfile")


@dataclass(frozen=True)
class Completion:
    """A directive (``words``, ``files`` or ``dirs``) and the candidate words."""

    directive: str = "words"
    words: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [self.directive, *self.words]


@dataclass
class _State:
    """What the words before the cursor said: the command, option values, positionals."""

    parser: argparse.ArgumentParser
    command: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    positionals: int = 0
    pending: argparse.Action | None = None
    only_positionals: bool = False


def complete(
    parser: argparse.ArgumentParser,
    words: Sequence[str],
    default_kubeconfig: Path | None,
    deadline: float = NAMES_DEADLINE,
) -> Completion:
    """What may replace ``words[-1]`` on the line ``kstrata words...``."""
    typed = list(words) or [""]
    state = _read(parser, typed[:-1])
    if state is None:
        return Completion()
    lookup = _Lookup(state, default_kubeconfig, deadline)
    current = typed[-1]
    if state.pending is not None:
        return _values(state.pending, "" if current == "=" else current, "", lookup)
    if current.startswith("-") and not state.only_positionals:
        return _option_word(state, current, lookup)
    positional = _positional(state)
    if isinstance(positional, argparse._SubParsersAction):
        names = [name for name in positional.choices if not name.startswith("_")]
        return Completion(words=_matching(names, current))
    if positional is not None:
        return _values(positional, current, "", lookup)
    # Nothing positional is left: after a space, offer the flags.
    flags = not current and not state.only_positionals
    return Completion(words=_options(state.parser) if flags else [])


def _option_word(state: _State, current: str, lookup: _Lookup) -> Completion:
    """``--out`` (an option's name) or ``--output=j`` (its value, kept whole)."""
    name, equals, value = current.partition("=")
    if not equals:
        return Completion(words=_matching(_options(state.parser), current))
    action = _option(state.parser, name)
    if action is None or action.nargs == 0:
        return Completion()
    return _values(action, value, name + "=", lookup)


def _read(parser: argparse.ArgumentParser, before: Sequence[str]) -> _State | None:
    """Follow the words before the cursor through the parser; None if they lead nowhere."""
    state = _State(parser)
    for word in before:
        if state.pending is not None:
            if word == "=":  # bash's split of --option=value
                continue
            state.values[state.pending.dest] = word
            state.pending = None
            continue
        if word == "--" and not state.only_positionals:
            state.only_positionals = True
            continue
        if word.startswith("-") and word != "-" and not state.only_positionals:
            name, equals, value = word.partition("=")
            action = _option(state.parser, name)
            if action is not None and action.nargs != 0:
                if equals:
                    state.values[action.dest] = value
                else:
                    state.pending = action
            continue
        positional = _positional(state)
        if isinstance(positional, argparse._SubParsersAction):
            chosen = positional.choices.get(word)
            if chosen is None:
                return None
            state = _State(chosen, [*state.command, word], state.values)
            continue
        if positional is not None and positional.nargs not in ("+", "*", argparse.REMAINDER):
            state.positionals += 1
        elif positional is not None and positional.nargs == argparse.REMAINDER:
            state.only_positionals = True
    return state


def _positional(state: _State) -> argparse.Action | None:
    """The positional argument the next word fills, if any is left."""
    positionals = [action for action in state.parser._actions if not action.option_strings]
    if state.positionals < len(positionals):
        return positionals[state.positionals]
    if positionals and positionals[-1].nargs in ("+", "*"):
        return positionals[-1]
    return None


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        name
        for action in parser._actions
        if action.help is not argparse.SUPPRESS
        for name in action.option_strings
    ]


def _option(parser: argparse.ArgumentParser, name: str) -> argparse.Action | None:
    """The option ``name`` means, exactly or as argparse's unique long prefix."""
    exact = parser._option_string_actions.get(name)
    if exact is not None or not name.startswith("--"):
        return exact
    matches = {
        action
        for option, action in parser._option_string_actions.items()
        if option.startswith(name)
    }
    return matches.pop() if len(matches) == 1 else None


def _matching(candidates: Sequence[str], current: str, prefix: str = "") -> list[str]:
    return [prefix + word for word in candidates if word.startswith(current)]


class _Lookup:
    """Cluster and kubeconfig look-ups, sharing one deadline; the client is never imported."""

    def __init__(self, state: _State, default_kubeconfig: Path | None, deadline: float) -> None:
        given = state.values.get("kubeconfig")
        self.kubeconfig = Path(given) if given else default_kubeconfig
        self.context = state.values.get("context")
        self.namespace = state.values.get("namespace")
        self.kind = state.values.get("kind")
        self.command = state.command
        self.stop = time.monotonic() + deadline

    def contexts(self) -> list[str]:
        if self.kubeconfig is None:
            return []
        from kstrata.kube.names import contexts

        return contexts(self.kubeconfig)

    def names(self, kinds: Sequence[str]) -> list[str]:
        if self.kubeconfig is None:
            return []
        from kstrata.kube.names import (
            CONFIG_PROFILES,
            NAMESPACES,
            SEALED_SECRETS,
            list_names,
            read_target,
        )

        resources = {"profile": CONFIG_PROFILES, "secret": SEALED_SECRETS, "ns": NAMESPACES}
        target = read_target(self.kubeconfig, self.context)
        if target is None:
            return []
        found: set[str] = set()
        for kind in kinds:
            left = self.stop - time.monotonic()
            if left <= 0:
                break
            found.update(list_names(target, resources[kind], self.namespace, left))
        return sorted(found)

    def object_kinds(self) -> tuple[str, ...]:
        kinds = NAMED_OBJECTS.get(self.command[0] if len(self.command) == 1 else "", ())
        return (self.kind,) if self.kind in kinds else kinds


def _values(action: argparse.Action, current: str, prefix: str, lookup: _Lookup) -> Completion:
    """Candidates for the value of ``action`` (an option or a positional)."""
    if action.choices is not None:
        return Completion(words=_matching([str(c) for c in action.choices], current, prefix))
    if action.metavar == "DIR":
        return Completion("dirs")
    if action.type is Path or action.metavar == "FILE" or action.dest in _FILE_DESTS:
        return Completion("files")
    return Completion(words=_matching(_from_elsewhere(action, lookup), current, prefix))


def _from_elsewhere(action: argparse.Action, lookup: _Lookup) -> list[str]:
    """Values only the cluster or the kubeconfig knows: namespaces, contexts, object names."""
    if action.dest in _NAMESPACE_DESTS:
        return lookup.names(("ns",))
    if action.dest == "context":
        return lookup.contexts()
    if not action.option_strings and action.metavar == _NAME_METAVAR:
        return lookup.names(lookup.object_kinds())
    return []


def script(shell: str) -> str:
    """The completion script for ``shell`` (one of :data:`SHELLS`)."""
    return _SCRIPTS[shell]


_BASH = r"""# bash completion for kstrata and kubectl-kstrata.
#
#   source <(kstrata completion bash)                      # this shell
#   kstrata completion bash > ~/.local/share/bash-completion/completions/kstrata
#
# Commands, flags and choices come from the installed kstrata at each TAB
# (the hidden `kstrata __complete`), so this script does not go stale on upgrade;
# names of ConfigProfiles, SealedSecrets and namespaces come from the cluster
# when it answers within 0.12 s ($KSTRATA_COMPLETION_TIMEOUT), else none.
_kstrata_complete() {
    local cur="${COMP_WORDS[COMP_CWORD]}" equals=""
    local -a words=("${COMP_WORDS[@]:1:COMP_CWORD}") lines
    if [[ $cur == "=" ]]; then
        # bash split --option=value at "=": complete the value, keep the "=".
        equals="="
        cur=""
        words[${#words[@]}-1]=""
    fi
    mapfile -t lines < <("${COMP_WORDS[0]}" __complete "${words[@]}" 2>/dev/null)
    case "${lines[0]}" in
        files)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            ;;
        dirs)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -d -- "$cur")
            ;;
        *)
            COMPREPLY=("${lines[@]:1}")
            ;;
    esac
    if [[ -n $equals ]]; then
        COMPREPLY=("${COMPREPLY[@]/#/=}")
    fi
}
complete -F _kstrata_complete kstrata kubectl-kstrata
"""

_ZSH = r"""#compdef kstrata kubectl-kstrata
# zsh completion for kstrata and kubectl-kstrata.
#
#   source <(kstrata completion zsh)          # this shell, after compinit
#   kstrata completion zsh > "${fpath[1]}/_kstrata"
#
# Commands, flags and choices come from the installed kstrata at each TAB
# (the hidden `kstrata __complete`), so this script does not go stale on upgrade;
# names of ConfigProfiles, SealedSecrets and namespaces come from the cluster
# when it answers within 0.12 s ($KSTRATA_COMPLETION_TIMEOUT), else none.
_kstrata() {
    local -a lines candidates
    lines=("${(@f)$("${words[1]}" __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    case "${lines[1]}" in
        files) _files ;;
        dirs) _files -/ ;;
        words)
            candidates=("${(@)lines[2,-1]}")
            candidates=("${(@)candidates:#}")
            (( ${#candidates} )) && compadd -Q -- "${(@)candidates}"
            ;;
    esac
}
if [[ "${funcstack[1]}" == "_kstrata" ]]; then
    _kstrata "$@"
else
    compdef _kstrata kstrata kubectl-kstrata
fi
"""

_FISH = r"""# fish completion for kstrata and kubectl-kstrata.
#
#   kstrata completion fish | source                        # this shell
#   kstrata completion fish > ~/.config/fish/completions/kstrata.fish
#
# Commands, flags and choices come from the installed kstrata at each TAB
# (the hidden `kstrata __complete`), so this script does not go stale on upgrade;
# names of ConfigProfiles, SealedSecrets and namespaces come from the cluster
# when it answers within 0.12 s ($KSTRATA_COMPLETION_TIMEOUT), else none.
function __kstrata_complete
    set -l tokens (commandline -opc)
    set -l current (commandline -ct)
    set -l lines ($tokens[1] __complete $tokens[2..-1] "$current" 2>/dev/null)
    switch "$lines[1]"
        case files
            __fish_complete_path "$current"
        case dirs
            __fish_complete_directories "$current"
        case words
            printf '%s\n' $lines[2..-1]
    end
end
complete -c kstrata -f -a '(__kstrata_complete)'
complete -c kubectl-kstrata -f -a '(__kstrata_complete)'
"""

_SCRIPTS: Final = {"bash": _BASH, "zsh": _ZSH, "fish": _FISH}
