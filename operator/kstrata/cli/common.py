"""What every command group shares: the parser class, exit codes, cluster access, output.

Kept free of heavy imports: it is loaded by every invocation, including the
offline commands that must start in well under 200 ms.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol, TextIO, TypeAlias, TypeVar

from kstrata.errors import UsageError
from kstrata.wellknown import (
    CONFIG_PROFILE_KIND,
    CONFIG_PROFILE_PLURAL,
    CONFIG_PROFILE_SHORT_NAME,
    CONFIG_PROFILE_SINGULAR,
    GROUP,
    SEALED_SECRET_KIND,
    SEALED_SECRET_PLURAL,
    SEALED_SECRET_SHORT_NAME,
    SEALED_SECRET_SINGULAR,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from kstrata.kube.connection import Cluster

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_CLUSTER = 3

Command = Callable[[argparse.Namespace, TextIO], int]


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, and never repeats an argument's value.

    argparse quotes what it could not use: unrecognized arguments, a bad
    choice, a value of the wrong type, an ambiguous ``--opt=value`` prefix.
    On a command line those may be secrets (``kstrata seal ... password=X``
    with a mistyped flag) that would land in CI logs.  Here every message
    names the option and the problem, never the value; only tokens shaped
    like option names are shown, values are counted.
    """

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(_unrecognized(extras, self._option_strings()))
        return parsed

    def _option_strings(self) -> list[str]:
        """Every option of this parser and of its subcommands' parsers."""
        found: list[str] = []
        for action in self._actions:
            found += action.option_strings
            if isinstance(action, argparse._SubParsersAction):
                for parser in action.choices.values():
                    if isinstance(parser, Parser):
                        found += parser._option_strings()
        return found

    def _check_value(self, action: argparse.Action, value: object) -> None:
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice (choose from {choices})")

    def _get_value(self, action: argparse.Action, arg_string: str) -> object:
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as error:
            if isinstance(error.__context__, argparse.ArgumentTypeError):
                raise  # kstrata's own type functions word messages without values
            kind = getattr(action.type, "__name__", "")
            raise argparse.ArgumentError(
                action, f"invalid {kind} value".replace("  ", " ")
            ) from None

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {_without_values(message)}")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse builds a formatter for every add_argument, and without a width it
        # asks shutil, whose import (bz2, lzma) is ~2 ms of an offline command's start.
        # (Every formatter_class here is a HelpFormatter, which takes a width.)
        width = _terminal_columns() - 2
        return self.formatter_class(prog=self.prog, width=width)  # type: ignore[call-arg]

    def format_help(self) -> str:
        # Imported here: only --help pays for the examples' text.
        from kstrata.cli.examples import section

        return super().format_help() + section(self.prog)


#: What ``register(commands)`` in each ``cli/*_cmd.py`` receives: the top-level
#: subcommands (``parser_class=Parser``), typed so a misused ``add_parser`` is a type error.
Subcommands: TypeAlias = "argparse._SubParsersAction[Parser]"


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns`` without importing shutil: COLUMNS, the tty, 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


#: An option name as argparse's prefix matching sees it.
_OPTION_NAME = re.compile(r"--[A-Za-z][A-Za-z0-9-]*|-[A-Za-z]")


def _option_name(token: str) -> str | None:
    name = token.split("=", 1)[0]
    return name if _OPTION_NAME.fullmatch(name) else None


def _unrecognized(extras: Sequence[str], known: Sequence[str]) -> str:
    """How many arguments were not understood, and the known options they resemble.

    The arguments themselves are never shown, not even those that look like
    options: ``--hunter2`` may be a password typed after a flag that takes none.
    """
    import difflib  # only for a mistyped command line

    count = len(extras)
    message = (
        f"{count} unrecognized argument{'s' if count > 1 else ''} "
        "(not shown: an argument may be a value)"
    )
    hints = sorted(
        {
            match
            for token in extras
            if token.startswith("-")
            for match in difflib.get_close_matches(token.split("=", 1)[0], known, 1, 0.7)
        }
    )
    if hints:
        message += f"; did you mean {' or '.join(hints)}?"
    return message


_AMBIGUOUS = re.compile(r"ambiguous option: (?P<option>.*) could match (?P<matches>.*)", re.S)
_IGNORED = re.compile(r"(?P<head>.*ignored explicit argument) .*", re.S)


def _without_values(message: str) -> str:
    """argparse's own messages that still quote what was typed, rewritten without it."""
    ambiguous = _AMBIGUOUS.fullmatch(message)
    if ambiguous:
        option = _option_name(ambiguous["option"]) or "an option"
        return f"ambiguous option: {option} could match {ambiguous['matches']}"
    ignored = _IGNORED.fullmatch(message)
    if ignored:
        return ignored["head"]
    return message


_Flags = TypeVar("_Flags", bound="DataclassInstance")


def flags(cls: type[_Flags], args: argparse.Namespace) -> _Flags:
    """``args`` as ``cls``: one command's flags in a frozen dataclass, each with its type.

    argparse types every ``Namespace`` attribute as ``Any``, so mypy cannot see a
    misspelt flag or a flag used as the wrong type; read once here into declared
    fields, every use after is checked.  An attribute argparse left out
    (``default=SUPPRESS``) keeps the field's default; undeclared ones are ignored.
    """
    given = vars(args)
    return cls(**{f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given})


class ClusterFlags(Protocol):
    """The global cluster flags, as a command's flags dataclass declares them."""

    @property
    def kubeconfig(self) -> Path | None: ...

    @property
    def context(self) -> str | None: ...


def kubeconfig_path(args: argparse.Namespace | ClusterFlags) -> Path | None:
    """The edge where KUBECONFIG is read; None means in-cluster credentials."""
    given = getattr(args, "kubeconfig", None)
    if given is not None:
        return Path(given)
    from_env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if from_env:
        return Path(from_env)
    default = Path.home() / ".kube" / "config"
    return default if default.exists() else None


def connect_from(args: argparse.Namespace | ClusterFlags) -> Cluster:
    """Connect to the cluster the global flags name (imports the client lazily)."""
    from kstrata.kube.connection import connect

    return connect(kubeconfig_path(args), getattr(args, "context", None))


def add_output_flag(parser: argparse.ArgumentParser, choices: tuple[str, ...]) -> None:
    parser.add_argument("-o", "--output", choices=choices, default=choices[0])


def print_data(value: object, fmt: str, out: TextIO) -> None:
    """Print structured data as YAML or JSON, deterministically."""
    if fmt == "json":
        out.write(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return
    # PyYAML costs ~9 ms to import; `seal --cert` prints YAML but reads none.
    from kstrata.cli.plain_yaml import dump

    text = dump(value)
    if text is None:
        import yaml

        text = yaml.safe_dump(value, sort_keys=True, allow_unicode=True, default_flow_style=False)
    out.write(text)


#: kubectl's spellings of each kind in ``TYPE/NAME`` arguments.
TYPE_NAMES = {
    CONFIG_PROFILE_KIND: (
        CONFIG_PROFILE_SINGULAR,
        CONFIG_PROFILE_PLURAL,
        f"{CONFIG_PROFILE_SINGULAR}.{GROUP}",
        f"{CONFIG_PROFILE_PLURAL}.{GROUP}",
        CONFIG_PROFILE_SHORT_NAME,
    ),
    SEALED_SECRET_KIND: (
        SEALED_SECRET_SINGULAR,
        SEALED_SECRET_PLURAL,
        f"{SEALED_SECRET_SINGULAR}.{GROUP}",
        f"{SEALED_SECRET_PLURAL}.{GROUP}",
        SEALED_SECRET_SHORT_NAME,
    ),
}


def split_type_name(text: str) -> tuple[str | None, str]:
    """``cfp/payments`` -> ``("ConfigProfile", "payments")``; a bare NAME has no kind.

    As kubectl takes them: the type in any of its spellings (plural,
    singular, short name, with the group).  An unknown type is a usage error
    naming the known ones.
    """
    if "/" not in text:
        return None, text
    kind_text, _, name = text.partition("/")
    for kind, spellings in TYPE_NAMES.items():
        if kind_text.lower() in spellings:
            return kind, name
    import difflib  # only for an unknown type

    known = sorted(spelling for spellings in TYPE_NAMES.values() for spelling in spellings)
    match = difflib.get_close_matches(kind_text.lower(), known, 1, 0.6)
    hint = f" (did you mean {match[0]}?)" if match else ""
    raise UsageError(
        f"unknown resource type {kind_text}{hint}: expected configprofile/NAME (cfp/NAME) "
        "or sealedsecret/NAME (kss/NAME)"
    )


def kubernetes_list(items: Sequence[Mapping[str, object]]) -> dict[str, object]:
    """Objects as ``kubectl get -o yaml|json`` prints several: a ``v1`` ``List``."""
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {}}


def print_manifests(objects: Sequence[Mapping[str, object]], fmt: str, out: TextIO) -> None:
    """Manifests to apply: one as itself; several as a YAML stream, or in JSON a ``List``.

    Either way ``kubectl apply -f -`` takes the output as it is (JSON has no
    stream of documents, so several objects go into a ``List``).
    """
    if len(objects) == 1:
        print_data(objects[0], fmt, out)
    elif fmt == "json":
        print_data(kubernetes_list(objects), "json", out)
    else:
        for index, obj in enumerate(objects):
            if index:
                out.write("---\n")
            print_data(obj, "yaml", out)


class FilesAction(argparse.Action):
    """``-f FILE [FILE ...]``: kubectl's repeatable ``-f``, plus a shell glob's many files.

    ``kstrata validate -f examples/config/*.yaml`` reaches us as ``-f a b c``.
    The words after the first are taken as files only if they exist (a glob
    yields nothing else); any other word is counted as an unrecognized
    argument and never shown, since it may be a value typed in the wrong place.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        words = values if isinstance(values, list) else [values]
        given = [Path(str(word)) for word in words]
        extra = [path for path in given[1:] if not path.exists()]
        if extra:
            count = len(extra)
            parser.error(
                f"{count} unrecognized argument{'s' if count > 1 else ''} after "
                f"{option_string or '-f'} (not shown: an argument may be a value; "
                "only existing files are taken after the first)"
            )
        files = list(getattr(namespace, self.dest, None) or [])
        setattr(namespace, self.dest, files + given)
