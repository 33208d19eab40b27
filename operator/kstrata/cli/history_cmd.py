"""``kstrata history``, ``kstrata diff`` and ``kstrata rollback``: revisions on a cluster.

The shell only: each handler parses its flags, calls one function of
:mod:`kstrata.app.history_commands` and prints what it returns.  What is
printed is decided here, and kept stable because people read it and scripts
parse it (the unit tests pin it as exact text):

* ``history``: the resource (``configprofile.kstrata.dev/NAME``, as kubectl
  names it), then a table of REVISION, CREATED (RFC 3339), CURRENT
  (``yes``/``no``) and CHANGE-CAUSE (``<none>`` when none was recorded).
* ``diff`` of a ConfigProfile: a unified diff per ConfigMap data key whose
  text differs, headed ``--- NAME/KEY (revision 3)`` / ``+++ NAME/KEY
  (revision 4)``, ``/dev/null`` for a key on one side only, GNU diff's
  ``\\ No newline at end of file`` where a text lacks its final newline.
* ``diff`` of a SealedSecret: the same two header lines, then one line per
  item key, never a value, ciphertext or fingerprint::

      --- db (revision 3)
      +++ db (revision 4)
        added     api-token
        removed   old-key
        changed   password
        re-sealed db-url (value unchanged)
        differs   session (changed or re-sealed)
        spec      template (changed)

  ``differs`` is the honest answer where the operator's keyed fingerprints
  are not available to tell a new value from a re-seal (a file, another
  environment).  ``spec`` lines name other spec fields that differ (scope,
  template, ...), never their content.  Groups come in that order, keys
  sorted within a group.
* No differences: nothing on stdout, exit code 0; differences: exit code 1
  (as ``diff`` and ``kubectl diff``).

Imports of the app layer (and so of the Kubernetes client machinery) happen
inside the handlers: registering these commands costs the offline ones
nothing at start-up.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kstrata.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    ClusterFlags,
    Subcommands,
    connect_from,
    flags,
    kubernetes_list,
    print_data,
    split_type_name,
)
from kstrata.cli.progress import with_progress
from kstrata.errors import UsageError
from kstrata.wellknown import CONFIG_PROFILE_KIND, SEALED_SECRET_KIND

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kstrata.app.history_commands import History
    from kstrata.app.history_toolkit import ConfigDiff, Diff, SecretDiff
    from kstrata.app.rollback import RollbackResult
    from kstrata.kube.api import KubeApi

DATA_FORMATS = ("yaml", "json")
KINDS = ("profile", "secret")
_NONE = "<none>"
_NO_NEWLINE = "\\ No newline at end of file\n"

_GITOPS = (
    "If Argo CD or Flux manages the resource, they revert an in-cluster rollback that is "
    "not committed to git: print the restored manifest with -o yaml and commit it instead."
)


def register(commands: Subcommands) -> None:
    history = commands.add_parser(
        "history",
        help="list the retained revisions of a ConfigProfile or SealedSecret",
        description="List the retained revisions (number, creation time, current or not, "
        "change cause) of a ConfigProfile or SealedSecret. The change cause is the "
        "kubernetes.io/change-cause annotation at the time of the change.",
    )
    history.add_argument("name", metavar="NAME")
    _common_flags(history)
    history.add_argument(
        "-o", "--output", choices=DATA_FORMATS, default=None, help="as data: a Kubernetes List"
    )
    history.set_defaults(handler=_history)

    diff = commands.add_parser(
        "diff",
        help="show what differs between revisions, environments, or a file and the cluster",
        description="Compare two revisions (--revision A [--to-revision B], default: the "
        "revision before B against B, B defaulting to the current one), two environments "
        "(--env A --to-env B) or a file with the live resource (-f FILE). ConfigProfiles "
        "show a unified diff of the rendered ConfigMap data; SealedSecrets list item keys "
        "added, removed, changed and re-sealed, never values. Exit code 1 when there are "
        "differences, 0 when there are none.",
    )
    diff.add_argument("name", metavar="NAME", nargs="?", default=None)
    _common_flags(diff)
    diff.add_argument(
        "--revision", type=_revision, default=None, metavar="A", help="the old revision"
    )
    diff.add_argument(
        "--to-revision",
        type=_revision,
        default=None,
        metavar="B",
        help="the new revision (default: the current one)",
    )
    diff.add_argument(
        "--env", dest="environment", default=None, metavar="ENV", help="the old environment"
    )
    diff.add_argument(
        "--to-env",
        dest="to_environment",
        default=None,
        metavar="ENV",
        help="the new environment (with --env)",
    )
    diff.add_argument(
        "-f", "--filename", type=Path, default=None, help="compare this file with the cluster"
    )
    diff.add_argument(
        "-o",
        "--output",
        choices=DATA_FORMATS,
        default=None,
        help="as data: each changed key and how (never a SealedSecret's value)",
    )
    diff.set_defaults(handler=_diff)

    rollback = commands.add_parser(
        "rollback",
        help="restore an earlier revision as a new revision",
        description="Restore revision N's spec (default: the last good revision: the one "
        "serving when the spec is refused or not handled yet, else the one before it; stderr "
        "says which and why) as a new revision whose change cause is 'rollback to N'; the "
        "operator renders it and reloads workloads as for any change. " + _GITOPS,
    )
    rollback.add_argument("name", metavar="NAME")
    _common_flags(rollback)
    rollback.add_argument(
        "--to-revision",
        type=_revision,
        default=None,
        metavar="N",
        help="the revision to restore (default: the last good one)",
    )
    rollback.add_argument(
        "--dry-run",
        nargs="?",
        const="client",
        choices=("client", "server"),
        default=None,
        help="print what would change and write nothing: client (the default) computes it "
        "here, server also has the API server and the admission webhook judge the write",
    )
    rollback.add_argument(
        "-o",
        "--output",
        choices=DATA_FORMATS,
        default=None,
        help="print the restored manifest instead of writing it (for GitOps)",
    )
    rollback.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="do not wait for the operator to report the new revision",
    )
    rollback.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the operator (default: 60)",
    )
    rollback.set_defaults(handler=_rollback)


@dataclass(frozen=True, kw_only=True)
class _Flags:
    """What every subcommand here reads (see :func:`kstrata.cli.common.flags`)."""

    namespace: str | None
    kind: str | None
    output: str | None
    kubeconfig: Path | None = None
    context: str | None = None


@dataclass(frozen=True, kw_only=True)
class _HistoryFlags(_Flags):
    name: str


@dataclass(frozen=True, kw_only=True)
class _DiffFlags(_Flags):
    name: str | None
    revision: int | None
    to_revision: int | None
    environment: str | None
    to_environment: str | None
    filename: Path | None


@dataclass(frozen=True, kw_only=True)
class _RollbackFlags(_Flags):
    name: str
    to_revision: int | None
    dry_run: str | None
    wait: bool
    timeout: float


def _kind_and_name(given: str, kind_flag: str | None) -> tuple[str | None, str]:
    """``--kind`` and NAME, NAME possibly TYPE/NAME (``cfp/payments``, ``kss/db``)."""
    kind, name = split_type_name(given)
    flag = {CONFIG_PROFILE_KIND: "profile", SEALED_SECRET_KIND: "secret"}.get(kind or "")
    if flag is not None and kind_flag is not None and kind_flag != flag:
        raise UsageError(f"{given} names a {kind}, but --kind says {kind_flag}")
    return flag or kind_flag, name


def _common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", default=None, help="namespace (default: context's)")
    parser.add_argument(
        "--kind", choices=KINDS, default=None, help="which kind NAME is (default: whichever exists)"
    )
    # SUPPRESS: when absent here, the value given before the subcommand survives.
    parser.add_argument("--kubeconfig", type=Path, default=argparse.SUPPRESS, help="kubeconfig")
    parser.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")


def _revision(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("a revision number (1, 2, ...)")
    return int(text)


def _connect(args: ClusterFlags) -> tuple[KubeApi, str]:
    """The API and the context's default namespace."""
    from kstrata.kube.api import KubeApi

    cluster = connect_from(args)
    return KubeApi(cluster), cluster.default_namespace


def resource_id(kind: str, name: str) -> str:
    """``configprofile.kstrata.dev/payments``: how kubectl names it."""
    return f"{kind.lower()}.kstrata.dev/{name}"


# --- history -----------------------------------------------------------------


def _history(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.history_commands import revision_history

    args = flags(_HistoryFlags, parsed)
    kind, name = _kind_and_name(args.name, args.kind)
    api, default_namespace = _connect(args)
    found = revision_history(api, args.namespace or default_namespace, name, kind=kind)
    if args.output:
        print_data(kubernetes_list([row.as_data() for row in found.rows]), args.output, out)
    else:
        out.write(format_history(found))
    return EXIT_OK


def format_history(history: History) -> str:
    """The resource, then ``kubectl``-style columns: left-aligned, three spaces apart."""
    title = resource_id(history.kind, history.name) + "\n"
    if not history.rows:
        return title + "No revisions recorded yet.\n"
    table = [["REVISION", "CREATED", "CURRENT", "CHANGE-CAUSE"]]
    table += [
        [
            str(row.number),
            row.created or _NONE,
            "yes" if row.current else "no",
            row.change_cause or _NONE,
        ]
        for row in history.rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
    return title + "".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n"
        for line in table
    )


# --- diff --------------------------------------------------------------------


def _diff(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.history_commands import DiffRequest, compute_diff

    args = flags(_DiffFlags, parsed)
    kind, name = (
        _kind_and_name(args.name, args.kind) if args.name is not None else (args.kind, None)
    )
    request = DiffRequest(
        name=name,
        kind=kind,
        revision=args.revision,
        to_revision=args.to_revision,
        environment=args.environment,
        to_environment=args.to_environment,
        file=args.filename,
    )
    request.check()
    api, default_namespace = _connect(args)
    found = compute_diff(api, args.namespace, default_namespace, request)
    if args.output:
        print_data(diff_data(found), args.output, out)
    else:
        out.write(format_diff(found))
    return EXIT_INVALID if found.differs else EXIT_OK


def format_diff(diff: Diff) -> str:
    """The text ``kstrata diff`` prints; empty when nothing differs."""
    from kstrata.app.history_toolkit import ConfigDiff

    if isinstance(diff, ConfigDiff):
        return format_config_diff(diff)
    return format_secret_diff(diff)


def diff_data(diff: Diff) -> dict[str, object]:
    """``diff -o yaml|json``: what changed, key by key, in the order the text shows it.

    A ConfigProfile's keys carry their unified diff (ConfigMap data, not
    secret); a SealedSecret's carry only the key and what happened to it.
    """
    from kstrata.app.history_toolkit import ConfigDiff

    data: dict[str, object] = {
        "kind": CONFIG_PROFILE_KIND if isinstance(diff, ConfigDiff) else SEALED_SECRET_KIND,
        "name": diff.name,
        "from": diff.old_label,
        "to": diff.new_label,
        "differs": diff.differs,
    }
    if isinstance(diff, ConfigDiff):
        changes = []
        for key in sorted(set(diff.old) | set(diff.new)):
            old, new = diff.old.get(key), diff.new.get(key)
            if old == new:
                continue
            change = "added" if old is None else "removed" if new is None else "changed"
            one = ConfigDiff(
                diff.name,
                diff.old_label,
                diff.new_label,
                _only(diff.old, key),
                _only(diff.new, key),
            )
            changes.append({"key": key, "change": change, "diff": format_config_diff(one)})
        data["changes"] = changes
        return data
    data["changes"] = [
        {"key": key, "change": verb}
        for verb, keys in (
            ("added", diff.added),
            ("removed", diff.removed),
            ("changed", diff.changed),
            ("re-sealed", diff.resealed),
            ("differs", diff.undetermined),
        )
        for key in keys
    ]
    data["specFields"] = list(diff.spec_fields)
    return data


def _only(data: Mapping[str, str], key: str) -> dict[str, str]:
    return {key: data[key]} if key in data else {}


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        # GNU diff's marker: the line differs from the same line with a newline.
        lines[-1] += "\n" + _NO_NEWLINE
    return lines


def format_config_diff(diff: ConfigDiff) -> str:
    """A unified diff per ConfigMap data key whose text differs, keys sorted."""
    import difflib  # here: every invocation loads this module, few of them diff

    parts: list[str] = []
    for key in sorted(set(diff.old) | set(diff.new)):
        old, new = diff.old.get(key), diff.new.get(key)
        if old == new:
            continue
        old_name = "/dev/null" if old is None else f"{diff.name}/{key} ({diff.old_label})"
        new_name = "/dev/null" if new is None else f"{diff.name}/{key} ({diff.new_label})"
        parts.extend(
            difflib.unified_diff(
                _lines(old or ""), _lines(new or ""), fromfile=old_name, tofile=new_name
            )
        )
    return "".join(parts)


def format_secret_diff(diff: SecretDiff) -> str:
    """Item keys by what happened to them; no value, ciphertext or fingerprint."""
    if not diff.differs:
        return ""
    lines = [f"--- {diff.name} ({diff.old_label})\n", f"+++ {diff.name} ({diff.new_label})\n"]
    groups: list[tuple[str, tuple[str, ...], str]] = [
        ("added", diff.added, ""),
        ("removed", diff.removed, ""),
        ("changed", diff.changed, ""),
        ("re-sealed", diff.resealed, " (value unchanged)"),
        ("differs", diff.undetermined, " (changed or re-sealed)"),
        ("spec", diff.spec_fields, " (changed)"),
    ]
    for verb, keys, note in groups:
        lines.extend(f"  {verb:<9} {key}{note}\n" for key in keys)
    return "".join(lines)


# --- rollback ----------------------------------------------------------------


def _rollback(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.rollback import rollback

    args = flags(_RollbackFlags, parsed)
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    kind, name = _kind_and_name(args.name, args.kind)
    api, default_namespace = _connect(args)
    # A line on stderr while it waits for the operator, on a terminal only.
    result = with_progress(rollback)(
        api,
        args.namespace or default_namespace,
        name,
        kind=kind,
        to_revision=args.to_revision,
        # -o alone prints instead of writing; with --dry-run=server the server judges it first.
        write=args.dry_run == "server" or not (args.dry_run or args.output),
        server_dry_run=args.dry_run == "server",
        wait=args.wait,
        timeout=args.timeout,
    )
    if args.to_revision is None:
        # Which revision the default picked, and why (stderr: stdout stays parseable).
        print(f"rolling back to revision {result.target}: {result.chosen}", file=sys.stderr)
    for warning in result.warnings:
        # stderr at call time: stdout stays a clean manifest or diff.
        print(f"warning: {warning}", file=sys.stderr)
    if args.output:
        print_data(result.manifest, args.output, out)
        return EXIT_OK
    if args.dry_run:
        out.write(format_diff(result.diff))
    out.write(format_rollback(result, dry_run=args.dry_run))
    return EXIT_OK


def format_rollback(result: RollbackResult, *, dry_run: bool | str | None) -> str:
    """The one summary line, ``kubectl rollout undo``-style (``(server dry run)`` as kubectl)."""
    what = resource_id(result.kind, result.name)
    if not result.changed:
        return f"{what} skipped rollback (the spec already is revision {result.target}'s)\n"
    if dry_run:
        kind = "server dry run" if dry_run == "server" else "dry run"
        return f"{what} rolled back to revision {result.target} ({kind})\n"
    if result.revision is None:
        return f"{what} rolled back to revision {result.target}\n"
    return f"{what} rolled back to revision {result.target} (now revision {result.revision})\n"
