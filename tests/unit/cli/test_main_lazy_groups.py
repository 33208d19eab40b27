"""``kstrata`` builds only the parser of the command it runs; help stays complete."""

from __future__ import annotations

import argparse
import contextlib
import io
from importlib import import_module

import pytest

from kstrata.cli import main as cli_main
from kstrata.cli.common import Parser
from kstrata.cli.main import COMMAND_GROUPS, build_parser, command_word, main


def registered_by(module: str) -> set[str]:
    parser = Parser(prog="kstrata")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)
    import_module(f"kstrata.cli.{module}").register(commands)
    return set(commands.choices)


def top_level_commands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("no subcommands")


def test_the_table_names_every_command_and_the_module_that_registers_it() -> None:
    from_modules = {
        command: module for module in cli_main._GROUPS for command in registered_by(module)
    }
    assert from_modules == COMMAND_GROUPS


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["render", "-f", "x"], "render"),
        (["--kubeconfig", "render", "get", "p"], "get"),
        (["--kubeconfig=k", "--context", "c", "seal"], "seal"),
        (["--kube", "k", "list"], "list"),
        (["--help", "render"], None),
        (["-h"], None),
        ([], None),
        (["--version"], None),
    ],
)
def test_command_word(argv: list[str], expected: str | None) -> None:
    assert command_word(argv) == expected


def test_a_known_command_gets_only_its_own_group() -> None:
    assert top_level_commands(build_parser(["render", "-f", "x"])) == {"render", "validate"}


def test_version_alone_gets_no_group() -> None:
    assert top_level_commands(build_parser(["--version"])) == set()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--version"]) == 0
    assert out.getvalue().startswith("kstrata ")


@pytest.mark.parametrize(
    "argv", [None, [], ["--help"], ["frobnicate"], ["--help", "render"], ["--version", "--help"]]
)
def test_anything_else_gets_every_group(argv: list[str] | None) -> None:
    assert top_level_commands(build_parser(argv)) == set(COMMAND_GROUPS)


def test_global_flags_before_the_command_still_parse() -> None:
    args = build_parser(["--kubeconfig", "k", "version"]).parse_args(
        ["--kubeconfig", "k", "version"]
    )
    assert (args.command, str(args.kubeconfig)) == ("version", "k")


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"], out=io.StringIO()) == 0
    listed = capsys.readouterr().out
    for command in COMMAND_GROUPS:
        assert f"    {command} " in listed or f"    {command}\n" in listed, command
