"""Commands read their flags through typed dataclasses (``kstrata.cli.common.flags``).

mypy checks every use of such a dataclass, but not that its field names are
the parser's ``dest`` names: a misspelt field would silently keep its default.
These tests parse real command lines and hold each dataclass to its parser.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from kstrata.cli import (
    config_cmd,
    history_cmd,
    import_secrets_cmd,
    keys_cmd,
    migrate_cmd,
    operator_cmd,
    profile_cmd,
    reseal_cmd,
    seal_cmd,
    watch_cmd,
)
from kstrata.cli.common import flags
from kstrata.cli.main import build_parser

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


@dataclasses.dataclass(frozen=True)
class _Example:
    name: str
    context: str | None = None


def test_flags_keeps_defaults_for_what_argparse_left_out_and_ignores_the_rest() -> None:
    parsed = argparse.Namespace(name="db", handler=print, output="yaml")

    assert flags(_Example, parsed) == _Example(name="db", context=None)
    assert flags(_Example, argparse.Namespace(name="db", context="prod")).context == "prod"


def test_a_field_argparse_does_not_give_and_that_has_no_default_fails_loudly() -> None:
    with pytest.raises(TypeError):
        flags(_Example, argparse.Namespace(context="prod"))


#: Each command's flags dataclass and a command line that reaches it.
_COMMANDS: list[tuple[type[DataclassInstance], list[str]]] = [
    (seal_cmd._SealFlags, ["seal", "--name", "db", "--from-literal", "k=v"]),
    (seal_cmd._UnsealFlags, ["unseal", "--recovery-keys", "keys.yaml", "-f", "s.yaml"]),
    (reseal_cmd.ResealFlags, ["reseal", "-f", "s.yaml"]),
    (import_secrets_cmd.ImportFlags, ["import", "-f", "s.yaml", "--sops"]),
    (keys_cmd._ListFlags, ["keys", "list"]),
    (keys_cmd._ExportFlags, ["keys", "export"]),
    (keys_cmd._BackupFlags, ["keys", "backup", "-o", "backup.yaml"]),
    (keys_cmd._RotateFlags, ["keys", "rotate"]),
    (history_cmd._HistoryFlags, ["history", "cfp/app"]),
    (history_cmd._DiffFlags, ["diff", "app", "--revision", "1"]),
    (history_cmd._RollbackFlags, ["rollback", "app"]),
    (profile_cmd._ListFlags, ["list", "-A"]),
    (profile_cmd._GetFlags, ["get", "app", "--key", "a.b"]),
    (profile_cmd._SetFlags, ["set", "app", "a=1"]),
    (import_secrets_cmd.ImportFlags, ["import", "-f", "base.yaml"]),
    (config_cmd._Flags, ["render", "-f", "app.yaml"]),
    (config_cmd._Flags, ["validate", "-f", "app.yaml"]),
    (operator_cmd._SettingsFlags, ["operator", "run"]),
    (operator_cmd._ShowSettingsFlags, ["operator", "settings"]),
    (migrate_cmd._ReloaderFlags, ["migrate", "reloader", "-A"]),
    (watch_cmd._WatchFlags, ["watch", "/etc/app", "--signal", "HUP", "--pid", "1"]),
]


@pytest.mark.parametrize(("cls", "argv"), _COMMANDS, ids=[" ".join(argv) for _, argv in _COMMANDS])
def test_every_field_of_a_commands_flags_is_a_dest_of_its_parser(
    cls: type[DataclassInstance], argv: list[str]
) -> None:
    parsed = build_parser(argv).parse_args(argv)
    declared = {field.name for field in dataclasses.fields(cls)}

    assert declared <= set(vars(parsed)), declared - set(vars(parsed))


def test_the_global_cluster_flags_reach_a_commands_flags() -> None:
    argv = ["--kubeconfig", "kc.yaml", "--context", "prod", "reseal", "-f", "s.yaml"]
    args = flags(reseal_cmd.ResealFlags, build_parser(argv).parse_args(argv))

    assert (args.kubeconfig, args.context) == (Path("kc.yaml"), "prod")
