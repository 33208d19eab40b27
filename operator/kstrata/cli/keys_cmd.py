"""``kstrata keys list | export | backup | rotate``: the operator's sealing keys.

The shell only: each handler parses its flags, calls one function of
:mod:`kstrata.app.sealing_keys` and prints what it returns.  ``list`` and
``export`` read the published public keys (the ConfigMap anyone allowed to
seal may read), so they need no access to private keys; ``rotate`` writes the
key Secret and so needs the operator's rights on it; ``backup`` reads the
private keys into a new 0600 file (the break-glass path, docs/operations.md).  App-layer imports
happen inside the handlers, so registering these commands costs the offline
ones nothing at start-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kstrata.cli.common import (
    EXIT_OK,
    ClusterFlags,
    Subcommands,
    connect_from,
    flags,
    kubernetes_list,
    print_data,
)
from kstrata.errors import UsageError
from kstrata.files import write_atomically

if TYPE_CHECKING:
    from kstrata.app.sealing_keys import KeyInfo
    from kstrata.kube.api import KubeApi

DATA_FORMATS = ("yaml", "json")
#: The default of ``Settings.operator_namespace`` (restated: importing settings is cheap,
#: but this module must not drag in more than the shell needs).
DEFAULT_OPERATOR_NAMESPACE = "kstrata-system"
SUITES = ("x25519", "mlkem768-x25519")


def register(commands: Subcommands) -> None:
    keys = commands.add_parser(
        "keys",
        help="list, export or rotate the operator's sealing keys",
        description="The sealing keys of the kstrata operator. list and export read the "
        "published public keys; rotate adds a new newest key (old keys stay, so existing "
        "sealed values keep opening).",
    )
    keys_commands = keys.add_subparsers(dest="keys_command", parser_class=type(keys))
    keys_commands.required = True

    listing = keys_commands.add_parser("list", help="list the published sealing keys")
    listing.add_argument(
        "-o", "--output", choices=DATA_FORMATS, default=None, help="as data: a Kubernetes List"
    )
    _common_flags(listing)
    listing.set_defaults(handler=_list)

    export = keys_commands.add_parser(
        "export",
        help="print or save the public key bundle (what 'kstrata seal --cert FILE' reads)",
    )
    export.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help="write to FILE (mode 0600)"
    )
    _common_flags(export)
    export.set_defaults(handler=_export)

    backup = keys_commands.add_parser(
        "backup",
        help="save the PRIVATE sealing keys to a new 0600 file (break-glass recovery)",
        description="Save the operator's private sealing keys (the key Secret) to a new file, "
        "mode 0600, written atomically; never to standard output or a terminal, never over an "
        "existing file.  Whoever holds the file can open every SealedSecret sealed to these "
        "keys: keep it offline.  Restore with 'kubectl create -f FILE'; open SealedSecrets "
        "offline with 'kstrata unseal --recovery-keys FILE'.",
    )
    backup.add_argument(
        "-o", "--out", type=Path, required=True, metavar="FILE", help="the new backup file"
    )
    _common_flags(backup)
    backup.set_defaults(handler=_backup)

    rotate = keys_commands.add_parser(
        "rotate", help="add a new newest sealing key now (old keys are kept)"
    )
    rotate.add_argument(
        "--suite",
        choices=SUITES,
        default=None,
        help="suite of the new key (default: the suite of the current newest key)",
    )
    rotate.add_argument(
        "-o", "--output", choices=DATA_FORMATS, default=None, help="print the new key as data"
    )
    _common_flags(rotate)
    rotate.set_defaults(handler=_rotate)


def _common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operator-namespace",
        default=DEFAULT_OPERATOR_NAMESPACE,
        help=f"namespace of the kstrata operator (default: {DEFAULT_OPERATOR_NAMESPACE})",
    )
    # SUPPRESS: when absent here, the value given before the subcommand survives.
    parser.add_argument("--kubeconfig", type=Path, default=argparse.SUPPRESS, help="kubeconfig")
    parser.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")


@dataclass(frozen=True, kw_only=True)
class _KeysFlags:
    """What every ``keys`` subcommand reads (see :func:`kstrata.cli.common.flags`)."""

    operator_namespace: str
    kubeconfig: Path | None = None
    context: str | None = None


@dataclass(frozen=True, kw_only=True)
class _ListFlags(_KeysFlags):
    output: str | None


@dataclass(frozen=True, kw_only=True)
class _ExportFlags(_KeysFlags):
    out: Path | None


@dataclass(frozen=True, kw_only=True)
class _BackupFlags(_KeysFlags):
    out: Path


@dataclass(frozen=True, kw_only=True)
class _RotateFlags(_KeysFlags):
    suite: str | None
    output: str | None


def _api(args: ClusterFlags) -> KubeApi:
    from kstrata.kube.api import KubeApi

    return KubeApi(connect_from(args))


def _list(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.sealing_keys import list_keys

    args = flags(_ListFlags, parsed)
    rows = list_keys(_api(args), args.operator_namespace)
    if args.output:
        print_data(kubernetes_list([row.as_data() for row in rows]), args.output, out)
        return EXIT_OK
    out.write(format_table(rows))
    return EXIT_OK


def format_table(rows: list[KeyInfo]) -> str:
    """``kubectl get``-style columns: left-aligned, three spaces apart."""
    table = [["KEY ID", "SUITE", "CREATED", "NEWEST"]]
    table += [[r.key_id, r.suite, r.created, "yes" if r.newest else ""] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _export(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.sealing_keys import export_public_keys

    args = flags(_ExportFlags, parsed)
    text = export_public_keys(_api(args), args.operator_namespace)
    if args.out is None:
        out.write(text)
        return EXIT_OK
    try:
        write_atomically(args.out, text)  # 0600, like every file kstrata writes for keys
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror}") from None
    print(f"wrote the public key bundle to {args.out}", file=sys.stderr)
    return EXIT_OK


def _backup(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.recovery import BACKUP_WARNING, check_private_target, write_new_private_file
    from kstrata.app.sealing_keys import key_backup

    args = flags(_BackupFlags, parsed)
    check_private_target(args.out)  # before any private key is read
    text, count = key_backup(_api(args), args.operator_namespace)
    write_new_private_file(args.out, text)
    print(BACKUP_WARNING.format(path=args.out, keys=count), file=sys.stderr)
    print(f"wrote {count} private sealing key(s) to {args.out} (mode 0600)", file=out)
    return EXIT_OK


def _rotate(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.sealing_keys import rotate_keys

    args = flags(_RotateFlags, parsed)
    info = rotate_keys(
        _api(args), args.operator_namespace, dt.datetime.now(dt.UTC), suite=args.suite
    )
    if args.output:
        print_data(info.as_data(), args.output, out)
        return EXIT_OK
    print(f"new newest sealing key {info.key_id} ({info.suite}, created {info.created})", file=out)
    return EXIT_OK
