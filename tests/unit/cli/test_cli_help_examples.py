"""Every command's ``--help`` ends with examples, and every example parses (issue 16).

The whole parser tree is walked from ``main``'s parser: a command without
examples fails, and each example's ``kstrata ...`` words are parsed by the
real parser, so an example naming a flag, a choice or a command that does
not exist fails here.  Names of objects and files in the examples are the
ones ``examples/`` defines.
"""

from __future__ import annotations

import argparse
import io
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.cli.examples import EXAMPLES, command_path
from kstrata.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[3]
#: Shell operators that end the kstrata part of a line (pipes, redirections, ...).
_SHELL_OPERATORS = frozenset({"|", "||", "&&", ";", ">", ">>", "<", "<(", ")", "&"})
#: Examples that show the command to run next, under the command they follow.
_NEXT_STEPS = frozenset({("keys export", "seal")})


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for child in action.choices.values():
                if id(child) not in seen:  # aliases share one parser
                    seen.add(id(child))
                    yield from parsers(child)


ALL_PATHS = sorted(command_path(p.prog) for p in parsers(build_parser()))


def kstrata_words(line: str) -> list[str]:
    """The arguments of the ``kstrata`` invocation in a shell line."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    start = tokens.index("kstrata") + 1
    words: list[str] = []
    for token in tokens[start:]:
        if token in _SHELL_OPERATORS:
            break
        words.append(token)
    return words


def example_names() -> set[str]:
    """Every ``name`` in the manifests under examples/, and what their reload annotations name."""
    names: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "name" and isinstance(item, str):
                    names.add(item)
                elif key == "kstrata.dev/reload" and isinstance(item, str):
                    names.update(part.strip() for part in item.split(","))
                else:
                    collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for path in (ROOT / "examples").rglob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            collect(document)
    return names


def test_the_tree_has_every_command() -> None:
    # Guards the walk itself: a broken walk would make the next tests vacuous.
    assert {"", "render", "keys", "keys rotate", "migrate reloader", "operator settings"} <= set(
        ALL_PATHS
    )
    assert len(ALL_PATHS) >= 25


@pytest.mark.parametrize("path", ALL_PATHS)
def test_every_command_shows_examples_in_its_help(
    path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert EXAMPLES.get(path), f"kstrata {path}: add examples to kstrata/cli/examples.py"
    assert main([*path.split(), "--help"]) == 0
    shown = capsys.readouterr().out
    assert "\nExamples:\n" in shown
    for what, command in EXAMPLES[path]:
        assert f"  # {what}\n  {command}\n" in shown


def test_no_examples_for_commands_that_do_not_exist() -> None:
    assert sorted(set(EXAMPLES) - set(ALL_PATHS)) == []


EXAMPLE_LINES = [
    pytest.param(path, command, id=f"{path or 'kstrata'}-{index}")
    for path, examples in EXAMPLES.items()
    for index, (_, command) in enumerate(examples)
]


@pytest.mark.parametrize(("path", "command"), EXAMPLE_LINES)
def test_every_example_parses_with_the_real_parser(path: str, command: str) -> None:
    words = kstrata_words(command)
    if words[-1:] == ["--help"]:
        assert main(words, out=io.StringIO()) == 0
        return
    args = build_parser(words).parse_args(words)  # UsageError on an unknown flag or choice
    if path:
        # An example under `keys rotate` runs `keys rotate` (or points to another command).
        assert callable(args.handler)
        assert (
            " ".join(words).startswith(path)
            or path in {"keys", "migrate", "operator"}
            or (path == "keys export" and words[0] == "seal")
        ), f"kstrata {path}: example runs {words[:2]}"


@pytest.mark.parametrize(("path", "command"), EXAMPLE_LINES)
def test_examples_use_the_names_and_files_of_examples_dir(path: str, command: str) -> None:
    words = kstrata_words(command)
    for word in words:
        for part in word.split("="):
            if part.startswith("examples/"):
                assert (ROOT / part).exists(), f"{command}: {part} does not exist"
    if words and words[-1] == "--help":
        return
    args = build_parser(words).parse_args(words)
    names = example_names()
    for attribute in ("name", "source"):
        value = getattr(args, attribute, None)
        # A source is TYPE/NAME, or a bare type (`import sealedsecret --bitnami-keys`).
        if isinstance(value, str) and (attribute == "name" or "/" in value):
            name = value.rpartition("/")[2]
            assert name in names, f"{command}: {name} is not named in examples/"


def test_help_is_still_plain_without_examples_elsewhere() -> None:
    # The section is appended to help only: usage errors stay one line.
    err = io.StringIO()
    assert main(["keys", "rotate", "--suitee", "x"], out=io.StringIO(), err=err) == 2
    assert "Examples:" not in err.getvalue()
