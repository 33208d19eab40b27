"""The CLI use cases ``kstrata history`` and ``kstrata diff``: they read, never write.

Why a module of its own: each public function here is exactly what one of
those subcommands does (:func:`revision_history`, :func:`compute_diff`), so
the CLI stays a shell that parses flags, calls one function and prints.  The
functions return frozen dataclasses; turning them into tables and unified
diffs is the CLI's business.  ``kstrata rollback``, which writes and waits, is
``kstrata.app.rollback``; what the three share (finding the resource, the
diff model) is ``kstrata.app.history_toolkit``.

Boundary: revision snapshots are read through
:class:`kstrata.app.revisions.RevisionStore` (the operator writes them; this
module never does); the live resources through
:class:`kstrata.kube.api.KubeClient`; rendering, environment choice and the
sealed spec come from :mod:`kstrata.domain`, never re-implemented here.

Promises:

* **No secret material leaves this module.**  The CLI never holds a
  plaintext value; for SealedSecrets the results carry item keys only, never
  ciphertexts, fingerprints or digests.  Whether a re-sealed item's value
  changed is decided from the operator's keyed fingerprints; where none exist
  (a file, another environment) the result says "changed or re-sealed"
  rather than guess.
* Messages name resources, revisions, environments and item keys, never
  values.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from kstrata.app.command_toolkit import (
    check_environment_flag,
    check_name,
    known_environments,
    spec_lookup,
)
from kstrata.app.history_toolkit import (
    RESOURCES,
    ConfigDiff,
    Diff,
    Kind,
    RevisionSource,
    SealedSide,
    compare_sealed,
    current_revision,
    find_resource,
    live_data,
    live_label,
    live_sealed,
    operator_environment,
    previous_revision,
    revision_source,
    snapshot_sealed,
)
from kstrata.app.suggest import check_environment_declared
from kstrata.domain.crds import configprofile_crd, sealedsecret_crd
from kstrata.domain.documents import load_documents
from kstrata.domain.jsonvalue import DEFAULT_LIMITS, JSONObject, JSONValue
from kstrata.domain.profile import (
    parse_profile_manifest,
    parse_profile_spec,
    render_profile,
)
from kstrata.domain.sealed_spec import effective_tokens, parse_sealed_spec
from kstrata.errors import (
    DocumentError,
    RevisionNotFoundError,
    UsageError,
)
from kstrata.files import read_bounded
from kstrata.kube.api import KubeClient
from kstrata.wellknown import (
    API_VERSION,
    CONFIG_PROFILE_KIND,
    SEALED_SECRET_KIND,
)

if TYPE_CHECKING:
    pass


# --- finding the resource ----------------------------------------------------


# --- history -----------------------------------------------------------------


class HistoryRowData(TypedDict):
    """One history row as data (``-o yaml|json``)."""

    revision: int
    created: str
    changeCause: str
    current: bool


@dataclass(frozen=True)
class HistoryRow:
    number: int
    #: RFC 3339 UTC.
    created: str
    #: "" when none was recorded.
    change_cause: str
    current: bool

    def as_data(self) -> HistoryRowData:
        return {
            "revision": self.number,
            "created": self.created,
            "changeCause": self.change_cause,
            "current": self.current,
        }


@dataclass(frozen=True)
class History:
    """What ``kstrata history`` shows: the retained revisions, oldest first."""

    kind: Kind
    namespace: str
    name: str
    current: int | None
    rows: tuple[HistoryRow, ...]


def revision_history(
    api: KubeClient,
    namespace: str,
    name: str,
    *,
    kind: str | None = None,
    store: RevisionSource | None = None,
) -> History:
    """The retained revisions of a ConfigProfile or SealedSecret, oldest first."""
    found_kind, obj = find_resource(api, namespace, name, kind)
    current = current_revision(obj)
    snapshots = sorted(revision_source(api, store).history(obj), key=lambda s: s.number)
    rows = tuple(
        HistoryRow(s.number, s.created, s.change_cause, s.number == current) for s in snapshots
    )
    return History(found_kind, namespace, name, current, rows)


# --- diffs -------------------------------------------------------------------


@dataclass(frozen=True)
class DiffRequest:
    """``kstrata diff``'s flags: one of three comparisons.

    * ``file``: the file's resource against the live one;
    * ``environment`` and ``to_environment``: the live spec rendered for both;
    * otherwise revisions: ``revision`` (default: the one before
      ``to_revision``) against ``to_revision`` (default: the current one).
    """

    name: str | None = None
    kind: str | None = None
    revision: int | None = None
    to_revision: int | None = None
    environment: str | None = None
    to_environment: str | None = None
    file: Path | None = None

    def check(self) -> None:
        """``UsageError`` for flags that do not make one comparison (before connecting)."""
        envs = (self.environment, self.to_environment)
        revisions = (self.revision, self.to_revision)
        if any(r is not None and r < 1 for r in revisions):
            raise UsageError("revision numbers start at 1")
        if self.file is not None:
            if self.name is not None or any(v is not None for v in (*envs, *revisions)):
                raise UsageError("diff -f FILE takes no NAME, --revision or --env")
            if self.kind is not None:
                raise UsageError("diff -f FILE: the file says which kind it is; drop --kind")
            return
        if self.name is None:
            raise UsageError("diff: give NAME, or -f FILE")
        if any(e is not None for e in envs):
            if None in envs:
                raise UsageError("diff: --env and --to-env go together")
            if any(r is not None for r in revisions):
                raise UsageError("diff: compare revisions or environments, not both")
            for flag, environment in (
                ("--env", self.environment),
                ("--to-env", self.to_environment),
            ):
                assert environment is not None
                check_environment_flag(environment, flag)


def compute_diff(
    api: KubeClient,
    namespace: str | None,
    default_namespace: str,
    request: DiffRequest,
    *,
    store: RevisionSource | None = None,
) -> Diff:
    """What ``kstrata diff`` compares; ``.differs`` decides the exit code."""
    request.check()
    if request.file is not None:
        return _diff_file(api, namespace, default_namespace, request.file)
    assert request.name is not None
    namespace = namespace or default_namespace
    if request.environment is not None and request.to_environment is not None:
        return _diff_environments(
            api,
            namespace,
            request.name,
            request.kind,
            envs=(request.environment, request.to_environment),
        )
    return _diff_revisions(
        api,
        namespace,
        request.name,
        request.kind,
        revisions=(request.revision, request.to_revision),
        store=store,
    )


def _diff_revisions(
    api: KubeClient,
    namespace: str,
    name: str,
    kind: str | None,
    *,
    revisions: tuple[int | None, int | None],
    store: RevisionSource | None,
) -> Diff:
    found_kind, obj = find_resource(api, namespace, name, kind)
    source = revision_source(api, store)
    old_number, new_number = revisions
    if new_number is None:
        new_number = current_revision(obj)
        if new_number is None:
            raise RevisionNotFoundError(
                f"{found_kind} {namespace}/{name} has no revision yet (the operator has not "
                f"rendered it): kstrata list -n {namespace} shows its status"
            )
    if old_number is None:
        old_number = previous_revision(source.history(obj), new_number)
        if old_number is None:
            raise RevisionNotFoundError(
                f"{found_kind} {namespace}/{name} keeps no revision before {new_number} "
                "to compare with; name one with --revision"
            )
    old, new = source.get(obj, old_number), source.get(obj, new_number)
    old_label, new_label = f"revision {old_number}", f"revision {new_number}"
    if found_kind == CONFIG_PROFILE_KIND:
        return ConfigDiff(name, old_label, new_label, old.rendered, new.rendered)
    return compare_sealed(name, snapshot_sealed(old), snapshot_sealed(new), old_label, new_label)


def _diff_environments(
    api: KubeClient, namespace: str, name: str, kind: str | None, *, envs: tuple[str, str]
) -> Diff:
    old_env, new_env = envs
    found_kind, obj = find_resource(api, namespace, name, kind)
    old_label, new_label = f"environment {old_env}", f"environment {new_env}"
    if found_kind == CONFIG_PROFILE_KIND:
        spec = parse_profile_spec(obj.get("spec"))
        served = (obj.get("status") or {}).get("environment")
        declared = known_environments(
            api, namespace, name, spec, also=(served if isinstance(served, str) else None,)
        )
        for environment in envs:
            check_environment_declared(environment, declared, f"ConfigProfile {namespace}/{name}")
        lookup = spec_lookup(api, namespace)
        old = render_profile(spec, name, old_env, lookup).rendered.data
        new = render_profile(spec, name, new_env, lookup).rendered.data
        return ConfigDiff(name, old_label, new_label, old, new)
    return compare_sealed(
        name, live_sealed(obj, old_env), live_sealed(obj, new_env), old_label, new_label
    )


@dataclass(frozen=True)
class _FileResource:
    kind: Kind
    name: str
    namespace: str | None
    spec: JSONObject


def _child(node: JSONValue, key: str) -> JSONObject:
    """``node[key]`` when both are objects, else {} (the generated CRDs always have them)."""
    found = node.get(key) if isinstance(node, dict) else None
    return found if isinstance(found, dict) else {}


@functools.cache
def _spec_schema(kind: Kind) -> JSONObject:
    crd = configprofile_crd() if kind == CONFIG_PROFILE_KIND else sealedsecret_crd()
    versions = _child(crd, "spec").get("versions")
    version = versions[0] if isinstance(versions, list) and versions else None
    schema = _child(_child(version, "schema"), "openAPIV3Schema")
    return _child(_child(schema, "properties"), "spec")


def _defaulted(value: JSONValue, schema: JSONObject) -> JSONValue:
    """``value`` with the CRD's defaults filled in, as the API server would on apply.

    Structural defaulting: a default applies to an absent field of an object
    that is present.  Without it a file that leaves ``scope`` out would
    differ from the live object, which the server gave ``scope: strict``.
    """
    if isinstance(value, dict):
        properties = _child(schema, "properties")
        others = schema.get("additionalProperties")
        result = dict(value)
        for key, sub in properties.items():
            if key not in result and isinstance(sub, dict) and "default" in sub:
                result[key] = copy.deepcopy(sub["default"])
        for key, item in list(result.items()):
            sub = properties.get(key, others if isinstance(others, dict) else None)
            if isinstance(sub, dict):
                result[key] = _defaulted(item, sub)
        return result
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, dict):
        return [_defaulted(item, items) for item in value]
    return value


def _read_resource_file(path: Path) -> _FileResource:
    raw = read_bounded(path, DEFAULT_LIMITS.max_bytes)
    documents = [
        d
        for d in load_documents(raw, source=str(path))
        if isinstance(d, dict) and d.get("apiVersion") == API_VERSION and d.get("kind") in RESOURCES
    ]
    if len(documents) != 1:
        raise UsageError(
            f"{path}: diff -f needs exactly one ConfigProfile or SealedSecret "
            f"({API_VERSION}); the file has {len(documents)}"
        )
    document = documents[0]
    kind: Kind = (
        CONFIG_PROFILE_KIND if document["kind"] == CONFIG_PROFILE_KIND else SEALED_SECRET_KIND
    )
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise DocumentError(f"{path}: metadata must be an object")
    if kind == CONFIG_PROFILE_KIND:
        manifest = parse_profile_manifest(document, where=str(path))
        name, namespace = manifest.name, manifest.namespace
    else:
        raw_name, raw_namespace = metadata.get("name"), metadata.get("namespace")
        if not isinstance(raw_name, str) or not isinstance(raw_namespace, str | None):
            raise DocumentError(f"{path}: metadata.name and metadata.namespace must be strings")
        check_name(raw_name, f"{path}: metadata.name")
        name, namespace = raw_name, raw_namespace
    spec = document.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise DocumentError(f"{path}: spec must be an object")
    defaulted = _defaulted(spec, _spec_schema(kind))
    assert isinstance(defaulted, dict)
    return _FileResource(kind, name, namespace, defaulted)


def _diff_file(api: KubeClient, namespace: str | None, default_namespace: str, path: Path) -> Diff:
    resource = _read_resource_file(path)
    if namespace and resource.namespace and namespace != resource.namespace:
        raise UsageError(f"{path} is for namespace {resource.namespace}, but -n names {namespace}")
    namespace = namespace or resource.namespace or default_namespace
    check_name(namespace, "the namespace")
    live = api.get_or_none(RESOURCES[resource.kind], namespace, resource.name)
    old_label, new_label = live_label(live), str(path)
    if resource.kind == CONFIG_PROFILE_KIND:
        spec = parse_profile_spec(resource.spec)
        environment = operator_environment(api, namespace, spec.environment, live)
        lookup = spec_lookup(api, namespace)
        new = render_profile(spec, resource.name, environment, lookup).rendered.data
        old = live_data(api, namespace, resource.name, live)
        return ConfigDiff(resource.name, old_label, new_label, old, new)
    sealed = parse_sealed_spec(resource.spec)
    environment = operator_environment(api, namespace, sealed.environment, live)
    # The fingerprint key lives in the operator: the file side has none, so a
    # different ciphertext can only be reported as "changed or re-sealed".
    new_side = SealedSide(effective_tokens(sealed, environment), {}, resource.spec)
    if live is None:
        old_side = SealedSide({}, {}, {})
    else:
        live_spec = parse_sealed_spec(live.get("spec") or {})
        live_env = operator_environment(api, namespace, live_spec.environment, live)
        old_side = live_sealed(live, live_env)
    return compare_sealed(resource.name, old_side, new_side, old_label, new_label)


# --- rollback ----------------------------------------------------------------


__all__ = [
    "DiffRequest",
    "History",
    "HistoryRow",
    "HistoryRowData",
    "compute_diff",
    "revision_history",
]
