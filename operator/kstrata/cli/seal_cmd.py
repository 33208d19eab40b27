"""``kstrata seal``: print (or update) a SealedSecret from plaintext values.

The shell only: flags become one :class:`kstrata.app.seal_commands.SealRequest`
and one key source, :func:`kstrata.app.seal_commands.seal_manifest` does the
work, and the manifest is printed (``--raw``: one bare token, from
:func:`kstrata.app.seal_commands.seal_raw`; ``-f`` Secret manifests, one
SealedSecret each, from :func:`kstrata.app.seal_bulk.seal_secrets`).  ``unseal`` is its break-glass
counterpart (:mod:`kstrata.app.recovery`): offline, with a key backup.
The app layer is imported inside the
handler, so registering ``seal`` costs the other commands nothing; with
``--cert`` the Kubernetes client is never imported (a test checks
``sys.modules``), and the cluster is reached only when no ``--cert`` is given.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kstrata.cli.common import (
    EXIT_OK,
    ClusterFlags,
    Subcommands,
    add_output_flag,
    connect_from,
    flags,
    kubeconfig_path,
    print_data,
    print_manifests,
)
from kstrata.cli.progress import with_progress
from kstrata.errors import UsageError
from kstrata.wellknown import GROUP, SEALED_SECRET_SINGULAR

if TYPE_CHECKING:
    from collections.abc import Callable

    from kstrata.app.sealing_toolkit import KeySource
    from kstrata.kube.api import KubeApi
    from kstrata.kube.connection import Cluster

#: ``kstrata.domain.crds.SCOPES``, restated so that registering the command
#: imports nothing; a unit test pins the two equal.
SCOPE_CHOICES = ("strict", "namespace", "cluster")

_EPILOG = """\
values come from exactly one kind of source:
  --from-literal KEY=VALUE   (repeatable) a value given on the command line
  --from-file [KEY=]PATH     (repeatable; with --from-literal too) a file's bytes;
                             the key defaults to the file's name
  -f FILE                    a Kubernetes Secret manifest ('-' reads stdin): its data and
                             stringData, type, labels and annotations; identity
                             metadata and kubectl's last-applied copy are dropped
  -f FILE|DIR|- (repeatable) many Secrets in one run: every document of every file,
                             directories recursively (.yaml, .yml, .json), '---'
                             streams on stdin; one SealedSecret each, printed as a
                             YAML stream (-o json: a List) or written with
                             --output-dir DIR to DIR/NAMESPACE/NAME.yaml

Each value is sealed to the newest key of the bundle (--cert FILE, the output of
'kstrata keys export'; else the ConfigMap kstrata-sealing-public-keys in the
operator's namespace), bound to the scope, namespace, name and item key.
Several --cert FILE seal each value once for every bundle's newest key, so the
manifest opens in each of those clusters (a kss2 token).
Without -n, and when neither the Secret nor the --merge-into file names one,
the namespace is the kubeconfig context's, as for every other command.

--raw --key K [--name N] [-n NS] prints one bare token for item K (--name only
binds under strict scope), to paste into
spec.encryptedData.K: the value is read from --from-file PATH or from standard
input, never from the command line.
--merge-into adds or replaces only the given items in an existing file (rewritten
with mode 0600; comments are not kept); its scope, namespace and name must match.
--template KEY=TEMPLATE adds spec.template.data KEY: a value the operator renders
from the items ({{ .user }}, {{ index . "db-password" }}); it is checked offline
against the items, the --merge-into file's included, before anything is sealed.
Values typed with --from-literal are visible to other local users in the process
list: prefer --from-file or -f for real secrets.
"""


def register(commands: Subcommands) -> None:
    seal = commands.add_parser(
        "seal",
        help="seal values into a SealedSecret manifest (offline with --cert)",
        description="Seal values for one SealedSecret and print its manifest.\n"
        "The output holds only ciphertext; it is safe to commit.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seal.add_argument(
        "-n", "--namespace", default=None, help="the SealedSecret's namespace (default: context's)"
    )
    seal.add_argument("--name", default=None, help="the SealedSecret's name")
    seal.add_argument(
        "--scope",
        choices=SCOPE_CHOICES,
        default=None,
        help="what the values are bound to (default: strict, or the --merge-into file's)",
    )
    seal.add_argument("--env", default=None, help="seal into spec.environments.ENV")
    seal.add_argument(
        "--cert",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="public key bundle file: seal offline, without asking the cluster; "
        "repeat it to seal for several clusters",
    )
    seal.add_argument(
        "--operator-namespace",
        default=None,
        metavar="NS",
        help="namespace of the kstrata operator's public keys (default: kstrata-system)",
    )
    # The former spelling, hidden: kept working, with a deprecation note on stderr.
    seal.add_argument("--controller-namespace", default=None, metavar="NS", help=argparse.SUPPRESS)
    seal.add_argument(
        "--raw", action="store_true", help="print one bare token for --key (value from stdin)"
    )
    seal.add_argument("--key", default=None, metavar="K", help="the item key of --raw")
    seal.add_argument(
        "--from-literal", dest="literals", action="append", default=[], metavar="KEY=VALUE"
    )
    seal.add_argument(
        "--from-file", dest="files", action="append", default=[], metavar="[KEY=]PATH"
    )
    seal.add_argument(
        "--template",
        dest="templates",
        action="append",
        default=[],
        metavar="KEY=TEMPLATE",
        help="add spec.template.data KEY, e.g. 'DSN=postgres://{{ .user }}@db' (repeatable)",
    )
    seal.add_argument(
        "--template-file",
        dest="template_files",
        action="append",
        default=[],
        metavar="KEY=PATH",
        help="as --template, the template read from a file (byte for byte)",
    )
    seal.add_argument(
        "-f",
        "--filename",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="Secret manifests: files, directories or '-' (stdin); repeatable",
    )
    seal.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="with -f: write each SealedSecret to DIR/NAMESPACE/NAME.yaml instead of stdout",
    )
    seal.add_argument(
        "--merge-into", type=Path, default=None, metavar="FILE", help="update this file in place"
    )
    add_output_flag(seal, ("yaml", "json"))
    # SUPPRESS: when absent here, the global flags before the subcommand still count.
    seal.add_argument("--kubeconfig", type=Path, default=argparse.SUPPRESS, help="kubeconfig")
    seal.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    seal.set_defaults(handler=_seal)

    unseal = commands.add_parser(
        "unseal",
        help="break-glass: open SealedSecrets offline with a key backup",
        description="Open SealedSecrets offline with the private keys saved by "
        "'kstrata keys backup' (no cluster needed).  Without "
        "--i-know-this-prints-secrets it only reports which items open with which key; "
        "with it, it prints the Secret manifests, in clear.  See docs/operations.md, "
        "'Break-glass recovery'.",
        # The consent flag must be typed in full: no argparse prefix (--i-know) stands for it.
        allow_abbrev=False,
    )
    unseal.add_argument(
        "--recovery-keys",
        type=Path,
        required=True,
        metavar="FILE",
        help="the key backup (kstrata keys backup -o FILE)",
    )
    unseal.add_argument(
        "-f",
        "--filename",
        type=Path,
        action="append",
        required=True,
        metavar="FILE",
        help="SealedSecret manifests: files or directories ('-' reads stdin); repeatable",
    )
    unseal.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="namespace of manifests without metadata.namespace (where they were applied)",
    )
    unseal.add_argument("--env", default=None, help="the environment whose overlay applies")
    unseal.add_argument(
        "--i-know-this-prints-secrets",
        dest="print_secrets",
        action="store_true",
        help="print the Secret manifests, values in clear (base64), to standard output",
    )
    add_output_flag(unseal, ("yaml", "json"))
    unseal.set_defaults(handler=_unseal)


@dataclass(frozen=True)
class _SealFlags:
    """What ``seal`` reads of its flags (see :func:`kstrata.cli.common.flags`)."""

    namespace: str | None
    name: str | None
    scope: str | None
    env: str | None
    cert: list[Path]
    operator_namespace: str | None
    controller_namespace: str | None
    raw: bool
    key: str | None
    literals: list[str]
    files: list[str]
    templates: list[str]
    template_files: list[str]
    filename: list[Path]
    output_dir: Path | None
    merge_into: Path | None
    output: str
    kubeconfig: Path | None = None
    context: str | None = None


@dataclass(frozen=True)
class _UnsealFlags:
    """What ``unseal`` reads of its flags."""

    recovery_keys: Path
    filename: list[Path]
    namespace: str | None
    env: str | None
    print_secrets: bool
    output: str


class _Connection:
    """One connection per run, opened only if the keys or the namespace need it."""

    def __init__(self, args: ClusterFlags) -> None:
        self.args = args
        self._cluster: Cluster | None = None

    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = connect_from(self.args)
        return self._cluster

    def api(self) -> KubeApi:
        from kstrata.kube.api import KubeApi

        return KubeApi(self.cluster())


def _sources(args: _SealFlags) -> tuple[KeySource, Callable[[], str | None]]:
    """The key source and the context-namespace lookup for these flags."""
    from kstrata.app.sealing_toolkit import ClusterKeys, kubeconfig_namespace

    operator_namespace = args.operator_namespace
    if args.controller_namespace is not None:
        print(
            "warning: --controller-namespace is deprecated; use --operator-namespace",
            file=sys.stderr,
        )
        operator_namespace = operator_namespace or args.controller_namespace
    if args.cert:
        # Offline: the context's namespace from the kubeconfig file, without the client.
        return list(args.cert), lambda: kubeconfig_namespace(kubeconfig_path(args), args.context)
    connection = _Connection(args)
    return (
        ClusterKeys(connection.api, operator_namespace),
        lambda: connection.cluster().default_namespace,
    )


def _seal(parsed: argparse.Namespace, out: TextIO) -> int:
    args = flags(_SealFlags, parsed)
    if args.raw:
        return _seal_raw(args, out)
    if args.key is not None:
        raise UsageError("--key is for --raw (one bare token); use --from-file KEY=PATH")
    if args.filename and args.merge_into is None:
        if args.templates or args.template_files:
            raise UsageError("--template is for one SealedSecret: use it with --merge-into FILE")
        return _seal_secrets(args, out)
    if args.output_dir is not None:
        raise UsageError("--output-dir is for -f (Secret manifests)")
    if len(args.filename) > 1:
        raise UsageError("--merge-into takes one Secret manifest: give -f once")
    from kstrata.app.seal_commands import SealRequest, seal_manifest

    keys, context_namespace = _sources(args)
    request = SealRequest(
        namespace=args.namespace,
        name=args.name,
        scope=args.scope,
        environment=args.env,
        literals=tuple(args.literals),
        files=tuple(args.files),
        secret_file=args.filename[0] if args.filename else None,
        merge_into=args.merge_into,
        templates=tuple(args.templates),
        template_files=tuple(args.template_files),
        context_namespace=context_namespace,
    )
    result = seal_manifest(request, keys)
    if result.written is not None:
        print(
            f"{SEALED_SECRET_SINGULAR}.{GROUP}/{result.name} sealed into "
            f"{result.written}: {', '.join(result.items)} "
            f"(key {', '.join(result.key_ids or (result.key_id,))})",
            file=out,
        )
        return EXIT_OK
    print_data(result.manifest, args.output, out)
    return EXIT_OK


def _seal_secrets(args: _SealFlags, out: TextIO) -> int:
    """``-f`` without ``--merge-into``: every Secret given, one SealedSecret each."""
    if args.literals or args.files:
        raise UsageError("-f cannot be combined with --from-literal or --from-file")
    from kstrata.app.seal_bulk import BulkSealRequest, seal_secrets, write_sealed

    keys, context_namespace = _sources(args)
    # A line on stderr per Secret sealed, on a terminal only.
    results = with_progress(seal_secrets)(
        BulkSealRequest(
            paths=tuple(args.filename),
            namespace=args.namespace,
            name=args.name,
            scope=args.scope,
            environment=args.env,
            context_namespace=context_namespace,
        ),
        keys,
    )
    if args.output_dir is not None:
        paths = write_sealed(results, args.output_dir, args.output)
        for result, path in zip(results, paths, strict=True):
            print(
                f"{SEALED_SECRET_SINGULAR}.{GROUP}/{result.name} sealed into {path}: "
                f"{', '.join(result.items)}",
                file=out,
            )
        return EXIT_OK
    print_manifests([result.manifest for result in results], args.output, out)
    return EXIT_OK


def _seal_raw(args: _SealFlags, out: TextIO) -> int:
    refused = [
        flag
        for flag, given in (
            ("--from-literal", args.literals),
            ("-f", bool(args.filename)),
            ("--output-dir", args.output_dir is not None),
            ("--merge-into", args.merge_into is not None),
            ("--env", args.env is not None),
            ("--template", bool(args.templates or args.template_files)),
        )
        if given
    ]
    if refused:
        # --from-literal would put the value in argv, where the process list shows it.
        raise UsageError(f"--raw cannot be combined with {', '.join(refused)}")
    if args.key is None:
        raise UsageError("--raw needs --key (the item key the token is for)")
    if len(args.files) > 1:
        raise UsageError("--raw seals one value: give --from-file once, or use stdin")
    from kstrata.app.seal_commands import RawSealRequest, seal_raw

    keys, context_namespace = _sources(args)
    if not args.files and sys.stdin.isatty():
        print("reading the value from standard input (end with Ctrl-D)", file=sys.stderr)
    result = seal_raw(
        RawSealRequest(
            item=args.key,
            name=args.name,
            namespace=args.namespace,
            scope=args.scope,
            from_file=Path(args.files[0]) if args.files else None,
            context_namespace=context_namespace,
        ),
        keys,
    )
    print(result.token, file=out)
    return EXIT_OK


def _unseal(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.recovery import PRINT_SECRETS_FLAG, load_recovery_keys, recover

    args = flags(_UnsealFlags, parsed)
    ring = load_recovery_keys(args.recovery_keys)
    # A line on stderr per file opened, on a terminal only.
    recovered = with_progress(recover)(
        args.filename, ring, environment=args.env, namespace=args.namespace
    )
    if not args.print_secrets:
        # Nothing secret without the flag: which items open, with which key.
        for item in recovered:
            print(item.summary(), file=out)
        print(
            f"values not printed; add {PRINT_SECRETS_FLAG} to print the Secret manifest(s)",
            file=sys.stderr,
        )
        return EXIT_OK
    print(
        f"warning: printing {len(recovered)} Secret manifest(s) with their values in clear",
        file=sys.stderr,
    )
    print_manifests([item.secret for item in recovered], args.output, out)
    return EXIT_OK
