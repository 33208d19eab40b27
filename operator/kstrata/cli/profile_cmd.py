"""``kstrata list``, ``get``, ``set`` and ``import``: ConfigProfiles on a cluster.

The shell only: each handler parses its flags, calls one function of
:mod:`kstrata.app.profile_commands` and prints what it returns (tables, YAML,
JSON, plain scalars).  Imports of the app layer (and so of the Kubernetes
client machinery) happen inside the handlers, so registering these commands
costs the offline ones nothing at start-up; ``import -f`` never connects.

``--kubeconfig`` and ``--context`` are accepted after the subcommand too
(``kubectl`` users type them anywhere); they default to "not given" there so
the global flags before the subcommand still count.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kstrata.cli.common import (
    EXIT_OK,
    Subcommands,
    connect_from,
    flags,
    kubernetes_list,
    print_data,
    split_type_name,
)
from kstrata.cli.progress import with_progress
from kstrata.errors import UsageError
from kstrata.wellknown import (
    CONFIG_PROFILE_KIND,
    CONFIG_PROFILE_SINGULAR,
    GROUP,
    SEALED_SECRET_KIND,
)

if TYPE_CHECKING:
    from kstrata.app.command_toolkit import ProfileSummary
    from kstrata.cli.import_secrets_cmd import ImportFlags
    from kstrata.kube.api import KubeApi

DATA_FORMATS = ("yaml", "json")
LIST_FORMATS = ("yaml", "json", "name", "wide")
_NONE = "<none>"


def register(commands: Subcommands) -> None:
    listing = commands.add_parser(
        "list",
        help="list ConfigProfiles and their status",
        description="List ConfigProfiles, then SealedSecrets, with the environment, "
        "revision, readiness and ConfigMap or Secret the operator last reported. STATUS is "
        "Stale while the operator has not handled the latest spec (stopped or busy), the "
        "reason when not Ready, else Current.",
    )
    scope = listing.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", default=None, help="namespace (default: context's)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    listing.add_argument(
        "-l",
        "--selector",
        default=None,
        metavar="SELECTOR",
        help="only objects whose labels match, as kubectl's -l (e.g. team=payments,tier!=dev)",
    )
    listing.add_argument(
        "-o",
        "--output",
        choices=LIST_FORMATS,
        default=None,
        help="yaml/json: a Kubernetes List of the objects; name: TYPE/NAME lines; "
        "wide: more columns",
    )
    _cluster_flags(listing)
    listing.set_defaults(handler=_list)

    get = commands.add_parser(
        "get",
        help="print the configuration a ConfigProfile serves",
        description="Print the configuration a ConfigProfile serves: its ConfigMap at the "
        "revision in status, read back. When the spec is not what is served (refused, or the "
        "operator has not handled it yet) a warning on stderr says so and why; --spec prints "
        "the spec merged (spec.extends resolved on the cluster) instead. Environment: --env "
        "(one the profile declares), else the one the operator rendered, else "
        "spec.environment, else the namespace label kstrata.dev/environment, else dev.",
    )
    get.add_argument("name", metavar="NAME", help="NAME or configprofile/NAME (cfp/NAME)")
    get.add_argument("-n", "--namespace", default=None, help="namespace (default: context's)")
    get.add_argument("--env", default=None, help="environment to merge for")
    get.add_argument(
        "--spec",
        dest="from_spec",
        action="store_true",
        help="print the spec's merged configuration, even where it is not what is served",
    )
    get.add_argument(
        "--key",
        default=None,
        metavar="A.B.C",
        help="print only this dotted path (a scalar prints plain); '\\.' is a literal dot",
    )
    get.add_argument("-o", "--output", choices=DATA_FORMATS, default=None, help="default: yaml")
    _cluster_flags(get)
    get.set_defaults(handler=_get)

    set_ = commands.add_parser(
        "set",
        help="set values in a ConfigProfile (validated before writing)",
        description="Write KEY=VALUE pairs (VALUE read as YAML: 8080 is a number, true a "
        "boolean, 'x' a string) into spec.base, or into spec.environments.ENV with --env. "
        "A key or environment the profile does not have is refused unless --create. "
        "Then it waits (--timeout, --no-wait) until the operator has handled the change and "
        "says so when it does not. "
        "The whole changed profile is validated for every environment before anything is "
        "written; the change-cause annotation records the key names, never the values.",
    )
    set_.add_argument("name", metavar="NAME", help="NAME or configprofile/NAME (cfp/NAME)")
    set_.add_argument("assignments", metavar="KEY=VALUE", nargs="+")
    set_.add_argument("-n", "--namespace", default=None, help="namespace (default: context's)")
    set_.add_argument("--env", default=None, help="write into this environment's overlay")
    set_.add_argument(
        "--create",
        action="store_true",
        help="allow keys and environments the profile does not have yet "
        "(otherwise refused, with the closest known name)",
    )
    set_.add_argument(
        "--dry-run",
        nargs="?",
        const="client",
        choices=("client", "server"),
        default=None,
        help="print the result and write nothing: client (the default) checks it here, "
        "server also has the API server and the admission webhook judge the write",
    )
    set_.add_argument(
        "-o",
        "--output",
        choices=DATA_FORMATS,
        default=None,
        help="print the profile as written (with --dry-run: as it would be; default yaml)",
    )
    set_.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="do not wait for the operator to handle the change",
    )
    set_.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the operator (default: 30)",
    )
    _cluster_flags(set_)
    set_.set_defaults(handler=_set)

    import_ = commands.add_parser(
        "import",
        help="print a ConfigProfile that reproduces existing configuration exactly",
        description="Print a ConfigProfile manifest reproducing a ConfigMap (configmap/NAME) "
        "or files (-f base [--env ENV=FILE ...]) byte for byte. The manifest is rendered back "
        "and compared first; if anything would be lost (comments, formatting, several "
        "files), nothing is printed and the exit code is 1.",
    )
    import_.add_argument("source", metavar="configmap/NAME", nargs="?", default=None)
    # Repeatable for the secret imports (files and directories); a ConfigProfile has one base.
    import_.add_argument(
        "-f", "--filename", type=Path, action="append", default=[], help="the base file"
    )
    import_.add_argument(
        "--env",
        dest="environments",
        metavar="ENV=FILE",
        action="append",
        default=[],
        help="an environment's file (repeatable); an overlay on the base unless --full",
    )
    import_.add_argument(
        "--full",
        action="store_true",
        help="environment files are complete configurations; overlays are computed",
    )
    import_.add_argument("--name", default=None, help="ConfigProfile name")
    import_.add_argument("-n", "--namespace", default=None, help="namespace")
    import_.add_argument(
        "-o",
        "--output",
        choices=DATA_FORMATS,
        default=None,
        help="yaml (default: the proven manifest as text) or json",
    )
    from kstrata.cli import import_secrets_cmd

    import_secrets_cmd.add_arguments(import_)
    _cluster_flags(import_)
    import_.set_defaults(handler=_import)


def _cluster_flags(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: when absent here, the value given before the subcommand survives.
    parser.add_argument("--kubeconfig", type=Path, default=argparse.SUPPRESS, help="kubeconfig")
    parser.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")


@dataclass(frozen=True, kw_only=True)
class _Flags:
    """What every command here reads (see :func:`kstrata.cli.common.flags`)."""

    namespace: str | None
    output: str | None
    kubeconfig: Path | None = None
    context: str | None = None


@dataclass(frozen=True, kw_only=True)
class _ListFlags(_Flags):
    all_namespaces: bool
    selector: str | None


@dataclass(frozen=True, kw_only=True)
class _GetFlags(_Flags):
    name: str
    env: str | None
    from_spec: bool
    key: str | None


@dataclass(frozen=True, kw_only=True)
class _SetFlags(_Flags):
    name: str
    assignments: list[str]
    env: str | None
    create: bool
    dry_run: str | None
    wait: bool
    timeout: float


def _connect(args: _Flags | ImportFlags) -> tuple[KubeApi, str]:
    """The API and the namespace to use: ``-n``, else the kubeconfig context's."""
    from kstrata.kube.api import KubeApi

    cluster = connect_from(args)
    return KubeApi(cluster), args.namespace or cluster.default_namespace


def _list(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.profile_commands import list_profiles

    args = flags(_ListFlags, parsed)
    api, namespace = _connect(args)
    rows = list_profiles(
        api,
        None if args.all_namespaces else namespace,
        sealed_secrets=True,
        label_selector=args.selector,
    )
    if args.output in DATA_FORMATS:
        print_data(kubernetes_list([row.obj for row in rows]), args.output, out)
        return EXIT_OK
    if args.output == "name":
        out.writelines(f"{row.kind.lower()}.{GROUP}/{row.name}\n" for row in rows)
        return EXIT_OK
    if not rows:
        where = "any namespace" if args.all_namespaces else f"namespace {namespace}"
        hint = "" if args.all_namespaces else " (-A lists every namespace's)"
        print(f"No ConfigProfiles or SealedSecrets found in {where}{hint}.", file=sys.stderr)
        return EXIT_OK
    now = dt.datetime.now(dt.UTC)
    kinds = sorted({row.kind for row in rows}, key=lambda kind: kind != CONFIG_PROFILE_KIND)
    tables = [
        format_table(
            [row for row in rows if row.kind == kind],
            all_namespaces=args.all_namespaces,
            now=now,
            wide=args.output == "wide",
            prefix=len(kinds) > 1,
        )
        for kind in kinds
    ]
    out.write("\n".join(tables))
    return EXIT_OK


def format_table(
    rows: list[ProfileSummary],
    *,
    all_namespaces: bool,
    now: dt.datetime,
    wide: bool = False,
    prefix: bool = False,
) -> str:
    """``kubectl get``-style columns: left-aligned, three spaces apart.

    STATUS tells the truth about READY: ``Stale`` while the operator has not
    reported on the latest spec, the Ready reason when not Ready, else
    ``Current``.  With ``prefix`` (several kinds listed) names are
    ``TYPE/NAME``, as kubectl prints them.
    """
    target = "SECRET" if rows and rows[0].kind == SEALED_SECRET_KIND else "CONFIGMAP"
    header = ["NAME", "ENVIRONMENT", "REVISION", "READY", "STATUS", target, "AGE"]
    if wide:
        header += ["GENERATION", "OBSERVED"]
    if all_namespaces:
        header.insert(0, "NAMESPACE")
    table = [header]
    for row in rows:
        cells = [
            f"{row.kind.lower()}.{GROUP}/{row.name}" if prefix else row.name,
            row.environment or _NONE,
            _NONE if row.revision is None else str(row.revision),
            row.ready,
            row.state,
            row.config_map or _NONE,
            age(row.created, now),
        ]
        if wide:
            cells += [
                _NONE if row.generation is None else str(row.generation),
                _NONE if row.observed_generation is None else str(row.observed_generation),
            ]
        if all_namespaces:
            cells.insert(0, row.namespace)
        table.append(cells)
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    return "".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n"
        for line in table
    )


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


_DAY = 86400
#: (below this many seconds, spell the age like this): kubectl's HumanDuration.
_AGES: tuple[tuple[int, Callable[[int], str]], ...] = (
    (120, lambda s: f"{s}s"),
    (600, lambda s: _two(s // 60, "m", s % 60, "s")),
    (3 * 3600, lambda s: f"{s // 60}m"),
    (8 * 3600, lambda s: _two(s // 3600, "h", s // 60 % 60, "m")),
    (48 * 3600, lambda s: f"{s // 3600}h"),
    (8 * _DAY, lambda s: _two(s // _DAY, "d", s // 3600 % 24, "h")),
    (730 * _DAY, lambda s: f"{s // _DAY}d"),
    (8 * 365 * _DAY, lambda s: _two(s // _DAY // 365, "y", s // _DAY % 365, "d")),
)


def age(created: str | None, now: dt.datetime) -> str:
    """kubectl's short ages: 45s, 3m12s, 25m, 5h3m, 30h, 3d4h, 20d, 2y30d."""
    try:
        then = dt.datetime.fromisoformat((created or "").replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(0, int((now - then).total_seconds()))
    for limit, spell in _AGES:
        if seconds < limit:
            return spell(seconds)
    return f"{seconds // _DAY // 365}y"


def _get(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.profile_commands import get_effective_config

    args = flags(_GetFlags, parsed)
    name = _profile_name(args.name, "get")
    api, namespace = _connect(args)
    found = get_effective_config(
        api, namespace, name, environment=args.env, key=args.key, from_spec=args.from_spec
    )
    for note in found.notes:
        # stderr: stdout stays the value alone, for $(kstrata get ...) in scripts.
        print(f"warning: {note}", file=sys.stderr)
    if found.key is not None and found.is_scalar and args.output is None:
        # Plain, for $(kstrata get app --key port) in scripts.
        out.write(found.scalar_text() + "\n")
    else:
        print_data(found.value, args.output or "yaml", out)
    return EXIT_OK


def _set(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.profile_commands import set_values

    args = flags(_SetFlags, parsed)
    name = _profile_name(args.name, "set")
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    api, namespace = _connect(args)
    # A line on stderr while it waits for the operator, on a terminal only.
    result = with_progress(set_values)(
        api,
        namespace,
        name,
        args.assignments,
        environment=args.env,
        dry_run=args.dry_run == "client",
        server_dry_run=args.dry_run == "server",
        create=args.create,
        wait=args.wait,
        timeout=args.timeout,
    )
    if args.dry_run or args.output:
        print_data(result.manifest, args.output or "yaml", out)
    else:
        outcome = "configured" if result.written else "unchanged"
        if result.revision is not None:
            outcome += f" (serving revision {result.revision})"
        print(f"{CONFIG_PROFILE_SINGULAR}.{GROUP}/{result.name} {outcome}", file=out)
    return EXIT_OK


def _profile_name(text: str, command: str) -> str:
    """NAME or TYPE/NAME (``configprofile/payments``, ``cfp/payments``), as kubectl takes it."""
    kind, name = split_type_name(text)
    if kind == SEALED_SECRET_KIND:
        raise UsageError(
            f"{command} works on ConfigProfiles; {name} is named as a SealedSecret "
            f"(kstrata history {name} and kubectl get sealedsecret {name} show one)"
        )
    return name


_CONFIG_MAP_PREFIXES = ("configmap/", "configmaps/", "cm/")


def _environment_file(text: str) -> tuple[str, Path]:
    environment, separator, path = text.partition("=")
    if not separator or not environment or not path:
        raise UsageError(f"--env {text}: expected ENV=FILE")
    return environment, Path(path)


def _import(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.cli import import_secrets_cmd

    if import_secrets_cmd.wants_secret_import(parsed):
        return import_secrets_cmd.run(parsed, out)
    args = flags(import_secrets_cmd.ImportFlags, parsed)
    if len(args.filename) > 1:
        raise UsageError("import: one base file with -f (environments with --env ENV=FILE)")
    base = args.filename[0] if args.filename else None
    if (args.source is None) == (base is None):
        raise UsageError("import: give either configmap/NAME or -f FILE")
    if args.source is not None:
        from kstrata.app.profile_import import import_config_map

        if args.environments or args.full:
            raise UsageError("import configmap/NAME: --env and --full apply to -f only")
        prefix = next((p for p in _CONFIG_MAP_PREFIXES if args.source.startswith(p)), None)
        if prefix is None:
            raise UsageError("import: the source must be configmap/NAME")
        api, namespace = _connect(args)
        result = import_config_map(
            api, namespace, args.source[len(prefix) :], profile_name=args.name
        )
    else:
        # Offline: files only, no connection (works without a kubeconfig).
        from kstrata.app.profile_import import import_files

        assert base is not None  # exactly one of configmap/NAME and -f, checked above
        result = import_files(
            base,
            [_environment_file(text) for text in args.environments],
            name=args.name,
            namespace=args.namespace,
            full=args.full,
        )
    if args.output == "json":
        import yaml

        # The same object: its data strings are the proven ones, only the notation differs.
        print_data(yaml.safe_load(result.manifest), "json", out)
    else:
        out.write(result.manifest)
    for hint in result.hints:
        # stderr at call time (tests capture it); stdout stays a clean manifest.
        print(f"hint: {hint}", file=sys.stderr)
    return EXIT_OK
