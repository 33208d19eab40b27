"""``kstrata reseal``: have the operator seal SealedSecret items again (newest key or --cert).

The shell only: flags become a list of files and a target, the items are
collected and sent by :mod:`kstrata.app.reseal` through the API server's
service proxy to the operator (which alone holds the private keys), and the
answers are written back: to standard output (default), over the files
(``--in-place``: only token strings change) or under ``--output-dir``.
Nothing is written unless every item of every file resealed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kstrata.cli.common import (
    EXIT_OK,
    Subcommands,
    add_output_flag,
    connect_from,
    flags,
    kubeconfig_path,
    print_data,
)
from kstrata.errors import UsageError

if TYPE_CHECKING:
    from kstrata.app.reseal import Send

_EPILOG = """\
Every item of every SealedSecret in the files (directories recursively, '-' for a
'---' stream on stdin) is sent, as ciphertext, to the kstrata operator, which opens
it with its keys and seals it again, keeping its scope, namespace, name and item
key, to its newest key (after 'kstrata keys rotate'), or with --cert to another
cluster's newest key, if the platform team registered that key id in the
operator's reseal_recipients setting.  The plaintext never leaves the operator.

Items already sealed to the target key stay byte-identical: a second run changes
nothing.  --in-place replaces each old token by its new one in the file text,
so comments and formatting stay and 'git diff' shows only tokens.  All or
nothing: if one item does not reseal, no file is written and the error names the
file, document, SealedSecret and item key.  Tokens sealed to several clusters
(kss2, 'seal --cert A --cert B') are refused: seal those values again instead.

The call goes through the API server's service proxy: it needs 'create' on
services/proxy for https:kstrata-reseal:443 in the operator's namespace (the
kstrata-resealer Role, docs/operations.md).
"""


def register(commands: Subcommands) -> None:
    reseal = commands.add_parser(
        "reseal",
        help="have the operator seal SealedSecrets again (newest key, or --cert)",
        description="Reseal SealedSecret manifests through the operator: only ciphertexts change.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reseal.add_argument(
        "-f",
        "--filename",
        type=Path,
        action="append",
        required=True,
        metavar="FILE",
        help="SealedSecret manifests: files, directories or '-' (stdin); repeatable",
    )
    reseal.add_argument(
        "--cert",
        type=Path,
        default=None,
        metavar="FILE",
        help="another cluster's public key bundle (kstrata keys export) to reseal to",
    )
    where = reseal.add_mutually_exclusive_group()
    where.add_argument(
        "--in-place", action="store_true", help="rewrite the files (only tokens change)"
    )
    where.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the rewritten files under DIR (same relative paths)",
    )
    reseal.add_argument(
        "-n", "--namespace", default=None, help="namespace of manifests without one"
    )
    reseal.add_argument(
        "--operator-namespace",
        default=None,
        metavar="NS",
        help="the kstrata operator's namespace (default: kstrata-system)",
    )
    add_output_flag(reseal, ("yaml", "json"))
    reseal.add_argument("--kubeconfig", type=Path, default=argparse.SUPPRESS, help="kubeconfig")
    reseal.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    reseal.set_defaults(handler=_reseal)


@dataclass(frozen=True)
class ResealFlags:
    """What ``reseal`` reads of its flags (see :func:`kstrata.cli.common.flags`)."""

    filename: list[Path]
    cert: Path | None
    in_place: bool
    output_dir: Path | None
    namespace: str | None
    operator_namespace: str | None
    output: str
    kubeconfig: Path | None = None
    context: str | None = None


def sender(args: ResealFlags) -> Send:
    """Where requests go: the operator's endpoint through the service proxy."""
    from kstrata.app.reseal import proxy_sender
    from kstrata.app.sealing_toolkit import DEFAULT_OPERATOR_NAMESPACE
    from kstrata.kube.api import KubeApi

    api = KubeApi(connect_from(args), timeout=90.0)
    return proxy_sender(api, args.operator_namespace or DEFAULT_OPERATOR_NAMESPACE)


def _reseal(parsed: argparse.Namespace, out: TextIO) -> int:
    import sys

    from kstrata.app import reseal
    from kstrata.app.sealing_toolkit import kubeconfig_namespace
    from kstrata.crypto.keys import MAX_BUNDLE_BYTES
    from kstrata.files import read_bounded

    args = flags(ResealFlags, parsed)
    if args.output != "yaml" and (args.in_place or args.output_dir):
        raise UsageError("-o json prints manifests; it does not go with --in-place or --output-dir")
    recipient = None
    if args.cert is not None:
        raw = read_bounded(args.cert, MAX_BUNDLE_BYTES, what="--cert")
        try:
            recipient = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--cert {args.cert}: not a public key bundle") from None
    namespace = args.namespace
    if namespace is None:
        namespace = kubeconfig_namespace(kubeconfig_path(args), args.context)
    files = reseal.collect(args.filename, namespace)
    key_id = reseal.reseal_files(files, sender(args), recipient)
    changed = sum(len(f.replacements) for f in files)
    total = sum(len(f.items) for f in files)
    summary = f"{changed} of {total} item(s) resealed to key {key_id}"
    if args.in_place:
        written = reseal.write_in_place(files)
        print(f"{summary}; {len(written)} file(s) rewritten", file=sys.stderr)
        return EXIT_OK
    if args.output_dir is not None:
        written = reseal.write_to_directory(files, args.filename, args.output_dir)
        print(f"{summary}; {len(written)} file(s) written to {args.output_dir}", file=sys.stderr)
        return EXIT_OK
    if args.output == "json":
        print_data(reseal.resealed_manifests(files), "json", out)
    else:
        texts = [reseal.rewritten(f) for f in files]
        out.write("---\n".join(t if t.endswith("\n") else t + "\n" for t in texts))
    print(summary, file=sys.stderr)
    return EXIT_OK
