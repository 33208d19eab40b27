"""``kstrata migrate reloader``: the shell over :mod:`kstrata.app.reloader_migration`.

Prints one block per workload using stakater/Reloader's annotations: the
workload (``Kind namespace/name``), Reloader's annotations found on it, the
``kstrata.dev/reload`` value that replaces them, and notes where the
translation is not exact; then the ConfigMaps and Secrets whose Reloader
``ignore`` becomes ``kstrata.dev/reload-ignore``.  Without ``--apply``
nothing is written.  Imports of the app layer happen inside the handler.
"""

from __future__ import annotations

import argparse
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
)
from kstrata.cli.progress import with_progress
from kstrata.wellknown import RELOAD_ANNOTATION, RELOAD_IGNORE_ANNOTATION

if TYPE_CHECKING:
    from kstrata.app.reloader_migration import MigrationReport


def register(commands: Subcommands) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="move workloads from another tool's annotations to kstrata's",
        description="Move workloads from another tool's annotations to kstrata's.",
    )
    tools = migrate.add_subparsers(dest="tool", metavar="TOOL", required=True)
    reloader = tools.add_parser(
        "reloader",
        help="translate stakater/Reloader's annotations into kstrata.dev/reload",
        description="List Deployments, StatefulSets, DaemonSets, CronJobs and Argo Rollouts "
        "that use "
        "stakater/Reloader's annotations and print the kstrata.dev/reload value that asks "
        "kstrata for the same reloads. With --apply, write it and remove Reloader's "
        "workload annotations (nothing rolls: kstrata records what a workload runs when "
        "it first sees it).",
    )
    scope = reloader.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", default=None, help="namespace (default: context's)")
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace of the cluster"
    )
    reloader.add_argument("--apply", action="store_true", help="write the changes")
    reloader.add_argument(
        "-o",
        "--output",
        choices=("yaml", "json"),
        default=None,
        help="as data: a Kubernetes List of the workloads and sources, with what changes",
    )
    reloader.add_argument("--kubeconfig", type=Path, default=argparse.SUPPRESS, help="kubeconfig")
    reloader.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    reloader.set_defaults(handler=_reloader)


@dataclass(frozen=True)
class _ReloaderFlags:
    """What ``migrate reloader`` reads (see :func:`kstrata.cli.common.flags`)."""

    namespace: str | None
    all_namespaces: bool
    apply: bool
    output: str | None
    kubeconfig: Path | None = None
    context: str | None = None


def _reloader(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.reloader_migration import migrate_reloader
    from kstrata.kube.api import KubeApi

    args = flags(_ReloaderFlags, parsed)
    cluster = connect_from(args)
    namespace = None if args.all_namespaces else (args.namespace or cluster.default_namespace)
    # A line on stderr per object written, on a terminal only.
    report = with_progress(migrate_reloader)(KubeApi(cluster), namespace, apply=args.apply)
    if args.output:
        print_data(report_data(report), args.output, out)
    else:
        out.write(format_report(report))
    return EXIT_OK


def report_data(report: MigrationReport) -> dict[str, object]:
    """``-o yaml|json``: one item per object, shaped as Kubernetes names it.

    ``migration`` says what Reloader annotation was found and what replaces
    it; ``applied`` whether it was written (``--apply``) or only shown.
    """
    items: list[dict[str, object]] = [
        {
            "kind": m.kind,
            "metadata": {"namespace": m.namespace, "name": m.name},
            "migration": {
                "reloader": dict(sorted(m.found.items())),
                "annotations": {RELOAD_ANNOTATION: m.reload} if m.reload else {},
                "notes": list(m.notes),
                "applied": report.applied,
            },
        }
        for m in report.workloads
    ]
    items += [
        {
            "apiVersion": "v1",
            "kind": s.kind,
            "metadata": {"namespace": s.namespace, "name": s.name},
            "migration": {
                "annotations": {RELOAD_IGNORE_ANNOTATION: "true"},
                "applied": report.applied,
            },
        }
        for s in report.sources
    ]
    return kubernetes_list(items)


def format_report(report: MigrationReport) -> str:
    """The printed report (stable: people read it, scripts may parse it)."""
    lines: list[str] = []
    for m in report.workloads:
        lines.append(f"{m.kind} {m.namespace}/{m.name}")
        for key, value in sorted(m.found.items()):
            lines.append(f"  reloader: {key}={value}")
        target = f"{RELOAD_ANNOTATION}={m.reload}" if m.reload else "(nothing to reload)"
        lines.append(f"  {'set' if report.applied else 'kstrata'}: {target}")
        lines.extend(f"  note: {note}" for note in m.notes)
    for s in report.sources:
        verb = "set" if report.applied else "kstrata"
        lines.append(f"{s.kind} {s.namespace}/{s.name}")
        lines.append(f"  {verb}: {RELOAD_IGNORE_ANNOTATION}=true")
    if not lines:
        lines.append("no workload uses Reloader's annotations")
    elif not report.applied:
        lines.append("(dry run: nothing written; --apply writes these)")
    return "\n".join(lines) + "\n"
