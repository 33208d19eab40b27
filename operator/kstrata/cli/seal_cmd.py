"""``kstrata seal``: print (or update) a SealedSecret from plaintext values.

The shell only: flags become one :class:`kstrata.app.seal_commands.SealRequest`
and one key source, :func:`kstrata.app.seal_commands.seal_manifest` does the
work, and the manifest is printed.  The app layer is imported inside the
handler, so registering ``seal`` costs the other commands nothing; with
``--cert`` the Kubernetes client is never imported (a test checks
``sys.modules``), and the cluster is reached only when no ``--cert`` is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kstrata.cli.common import EXIT_OK, add_output_flag, connect_from, print_data

if TYPE_CHECKING:
    from kstrata.kube.api import KubeApi

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

Each value is sealed to the newest key of the bundle (--cert FILE, the output of
'kstrata keys export'; else the ConfigMap kstrata-sealing-public-keys in the
operator's namespace), bound to the scope, namespace, name and item key.
--merge-into adds or replaces only the given items in an existing file (rewritten
with mode 0600; comments are not kept); its scope, namespace and name must match.
Values typed with --from-literal are visible to other local users in the process
list: prefer --from-file or -f for real secrets.
"""


def register(commands: Any) -> None:
    seal = commands.add_parser(
        "seal",
        help="seal values into a SealedSecret manifest (offline with --cert)",
        description="Seal values for one SealedSecret and print its manifest.\n"
        "The output holds only ciphertext; it is safe to commit.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seal.add_argument("-n", "--namespace", default=None, help="the SealedSecret's namespace")
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
        default=None,
        metavar="FILE",
        help="public key bundle file: seal offline, without asking the cluster",
    )
    seal.add_argument(
        "--controller-namespace",
        default=None,
        metavar="NS",
        help="namespace of the kstrata operator's public keys (default: kstrata-system)",
    )
    seal.add_argument(
        "--from-literal", dest="literals", action="append", default=[], metavar="KEY=VALUE"
    )
    seal.add_argument(
        "--from-file", dest="files", action="append", default=[], metavar="[KEY=]PATH"
    )
    seal.add_argument(
        "-f", "--filename", type=Path, default=None, metavar="FILE", help="a Secret manifest"
    )
    seal.add_argument(
        "--merge-into", type=Path, default=None, metavar="FILE", help="update this file in place"
    )
    add_output_flag(seal, ("yaml", "json"))
    # SUPPRESS: when absent here, the global flags before the subcommand still count.
    seal.add_argument("--kubeconfig", type=Path, default=argparse.SUPPRESS, help="kubeconfig")
    seal.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    seal.set_defaults(handler=_seal)


def _api(args: argparse.Namespace) -> KubeApi:
    from kstrata.kube.api import KubeApi

    return KubeApi(connect_from(args))


def _seal(args: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.seal_commands import ClusterKeys, SealRequest, seal_manifest

    request = SealRequest(
        namespace=args.namespace,
        name=args.name,
        scope=args.scope,
        environment=args.env,
        literals=tuple(args.literals),
        files=tuple(args.files),
        secret_file=args.filename,
        merge_into=args.merge_into,
    )
    keys = (
        args.cert
        if args.cert is not None
        else ClusterKeys(lambda: _api(args), args.controller_namespace)
    )
    result = seal_manifest(request, keys)
    if result.written is not None:
        print(
            f"sealedsecret.kstrata.dev/{result.name} sealed into "
            f"{result.written}: {', '.join(result.items)} (key {result.key_id})",
            file=out,
        )
        return EXIT_OK
    print_data(result.manifest, args.output, out)
    return EXIT_OK
