"""``kstrata import sealedsecret --bitnami-keys`` and ``kstrata import --sops``: the shell.

The ``import`` command itself is registered by :mod:`kstrata.cli.profile_cmd`
(it also imports ConfigMaps and files as ConfigProfiles); this module adds the
flags of the two secret imports to it and runs them: flags become one call of
:mod:`kstrata.app.secret_imports`, whose manifests (ciphertext only) are
printed, or written to ``--output-dir``.  Nothing here is imported by
registration but argparse; with ``--cert`` neither kopf nor the Kubernetes
client is ever loaded (a test checks ``sys.modules``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kstrata.cli.common import EXIT_OK, connect_from, flags, kubeconfig_path
from kstrata.cli.progress import with_progress
from kstrata.errors import UsageError
from kstrata.wellknown import SEALED_SECRET_PLURAL, SEALED_SECRET_SINGULAR

if TYPE_CHECKING:
    from collections.abc import Callable

    from kstrata.app.sealing_toolkit import KeySource
    from kstrata.kube.api import KubeApi
    from kstrata.kube.connection import Cluster

SCOPE_CHOICES = ("strict", "namespace", "cluster")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the secret imports, on the ``import`` command."""
    parser.add_argument(
        "--bitnami-keys",
        type=Path,
        default=None,
        metavar="BACKUP",
        help="import Bitnami SealedSecrets opened with this backup of their controller's keys",
    )
    parser.add_argument(
        "--sops", action="store_true", help="import SOPS-encrypted files through 'sops -d'"
    )
    parser.add_argument(
        "--sops-binary", default=None, metavar="PATH", help="the sops command (default: sops)"
    )
    parser.add_argument(
        "--cert",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="secret imports: seal offline to this public key bundle (repeatable)",
    )
    parser.add_argument(
        "--operator-namespace",
        default=None,
        metavar="NS",
        help="secret imports: namespace of kstrata's public keys (default: kstrata-system)",
    )
    parser.add_argument(
        "--scope",
        choices=SCOPE_CHOICES,
        default=None,
        help="--sops: what the values are bound to (default: strict)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="secret imports: write one file per SealedSecret into DIR instead of printing",
    )


@dataclass(frozen=True)
class ImportFlags:
    """What ``import`` reads of its flags (see :func:`kstrata.cli.common.flags`)."""

    source: str | None
    filename: list[Path]
    environments: list[str]
    full: bool
    name: str | None
    namespace: str | None
    bitnami_keys: Path | None
    sops: bool
    sops_binary: str | None
    cert: list[Path]
    operator_namespace: str | None
    scope: str | None
    output_dir: Path | None
    output: str | None = None
    kubeconfig: Path | None = None
    context: str | None = None

    def secret_only(self) -> dict[str, object]:
        """Flags that only the secret imports take, by dest name."""
        return {
            "sops_binary": self.sops_binary,
            "cert": self.cert,
            "operator_namespace": self.operator_namespace,
            "scope": self.scope,
            "output_dir": self.output_dir,
        }


def wants_secret_import(parsed: argparse.Namespace) -> bool:
    """A secret import, or a secret import's flag (refused by :func:`run` without one)."""
    args = flags(ImportFlags, parsed)
    return (
        args.bitnami_keys is not None
        or args.sops
        or any(value not in (None, []) for value in args.secret_only().values())
    )


def run(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.secret_imports import import_bitnami, import_sops, load_bitnami_keys

    args = flags(ImportFlags, parsed)
    if args.bitnami_keys is not None and args.sops:
        raise UsageError("import: give either --bitnami-keys or --sops")
    if args.bitnami_keys is None and not args.sops:
        given = [
            f"--{dest.replace('_', '-')}" for dest, value in args.secret_only().items() if value
        ]
        raise UsageError(
            f"import: {', '.join(given)} are for the secret imports: "
            "add --bitnami-keys BACKUP or --sops"
        )
    if not args.filename:
        raise UsageError("import: give the files with -f FILE (files or directories)")
    if args.environments or args.full:
        raise UsageError("import: --env and --full are for ConfigProfiles")
    keys, context_namespace = _key_source(args)
    if args.bitnami_keys is not None:
        if args.source not in (None, SEALED_SECRET_SINGULAR, SEALED_SECRET_PLURAL):
            raise UsageError("import --bitnami-keys: the source is 'sealedsecret'")
        if args.name is not None or args.scope is not None:
            raise UsageError("import --bitnami-keys: --name and --scope come from each object")
        bitnami_keys = load_bitnami_keys(args.bitnami_keys)
        # A line on stderr per object or file imported, on a terminal only.
        imported = with_progress(import_bitnami)(
            args.filename,
            bitnami_keys,
            keys,
            namespace=args.namespace,
            context_namespace=context_namespace,
        )
    else:
        if args.source is not None:
            raise UsageError("import --sops: give the files with -f, no source")
        from kstrata.app.secret_imports import SopsRequest

        imported = with_progress(import_sops)(
            SopsRequest(
                paths=args.filename,
                sops=args.sops_binary or "sops",
                name=args.name,
                namespace=args.namespace,
                scope=args.scope,
                context_namespace=context_namespace,
            ),
            keys,
        )
    for item in imported:
        for note in item.notes:
            print(f"note: {note}", file=sys.stderr)
    if args.output_dir is not None:
        from kstrata.app.secret_imports import write_manifests

        written = write_manifests(imported, args.output_dir)
        print(f"{len(written)} SealedSecret(s) written to {args.output_dir}", file=out)
        return EXIT_OK
    from kstrata.app.secret_imports import manifests_text

    out.write(manifests_text(imported, args.output or "yaml"))
    print(f"imported {len(imported)} SealedSecret(s)", file=sys.stderr)
    return EXIT_OK


def _key_source(args: ImportFlags) -> tuple[KeySource, Callable[[], str | None]]:
    """kstrata's public keys (``--cert``, else the cluster's) and the context's namespace."""
    from kstrata.app.sealing_toolkit import ClusterKeys, kubeconfig_namespace

    if args.cert:
        return list(args.cert), lambda: kubeconfig_namespace(kubeconfig_path(args), args.context)

    state: dict[str, Cluster] = {}

    def cluster() -> Cluster:
        if "cluster" not in state:
            state["cluster"] = connect_from(args)
        return state["cluster"]

    def api() -> KubeApi:
        from kstrata.kube.api import KubeApi

        return KubeApi(cluster())

    return ClusterKeys(api, args.operator_namespace), lambda: cluster().default_namespace
