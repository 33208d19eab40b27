"""The CLI use cases ``kstrata history``, ``kstrata diff`` and ``kstrata rollback``.

Why a module of its own: each public function here is exactly what one of
those subcommands does (:func:`revision_history`, :func:`compute_diff`,
:func:`rollback`), so the CLI stays a shell that parses flags, calls one
function and prints.  The functions return frozen dataclasses; turning them
into tables and unified diffs is the CLI's business.

Boundary: revision snapshots are read through
:class:`kstrata.app.revisions.RevisionStore` (the operator writes them; this
module never does); the live resources through
:class:`kstrata.kube.api.KubeApi`; rendering, environment choice and the
sealed spec come from :mod:`kstrata.domain` and
:mod:`kstrata.app.sealed_secrets`, never re-implemented here.

Three promises hold throughout:

* **No secret material leaves this module.**  The CLI never holds a
  plaintext value; for SealedSecrets the results carry item keys only, never
  ciphertexts, fingerprints or digests.  Whether a re-sealed item's value
  changed is decided from the operator's keyed fingerprints; where none exist
  (a file, another environment) the result says "changed or re-sealed"
  rather than guess.
* **A rollback writes nothing but the old spec**, with PUT and the
  resourceVersion read, so a concurrent writer produces a conflict instead of
  a lost update.  The operator then renders it and triggers reloads exactly as
  for any change; the new revision's cause is ``rollback to N``.
* Messages name resources, revisions, environments and item keys, never
  values.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, TypedDict

from kstrata.app.command_toolkit import (
    check_environment_flag,
    check_name,
    explain_refused_write,
    known_environments,
    namespace_labels,
    spec_lookup,
    summary,
)
from kstrata.app.suggest import check_environment_declared
from kstrata.domain.crds import configprofile_crd, sealedsecret_crd
from kstrata.domain.documents import load_documents
from kstrata.domain.environments import DEFAULT_ENVIRONMENT, select_environment
from kstrata.domain.jsonvalue import DEFAULT_LIMITS
from kstrata.domain.merge import same_json
from kstrata.domain.profile import (
    ProfileSpec,
    parse_profile_manifest,
    parse_profile_spec,
    render_profile,
)
from kstrata.domain.revisions import (
    Snapshot,
    parse_revision,
)
from kstrata.domain.sealed_spec import effective_tokens, parse_sealed_spec
from kstrata.errors import (
    ClusterError,
    ConflictError,
    DocumentError,
    InvalidInputError,
    KstrataError,
    NotFoundError,
    RevisionNotFoundError,
    TransientClusterError,
    UsageError,
)
from kstrata.files import read_bounded
from kstrata.kube.api import CONFIG_MAPS, CONFIG_PROFILES, JSON, SEALED_SECRETS, KubeApi, Resource
from kstrata.wellknown import (
    API_VERSION,
    CHANGE_CAUSE_ANNOTATION,
    CONFIG_PROFILE_KIND,
    READY_CONDITION,
    REVISION_ANNOTATION,
    SEALED_SECRET_KIND,
    OwnKind,
)

if TYPE_CHECKING:
    from kstrata.domain.profile import Lookup

Kind = OwnKind

#: ``--kind`` spellings.
KIND_FLAGS: Final[dict[str, Kind]] = {"profile": CONFIG_PROFILE_KIND, "secret": SEALED_SECRET_KIND}
RESOURCES: Final[dict[Kind, Resource]] = {
    CONFIG_PROFILE_KIND: CONFIG_PROFILES,
    SEALED_SECRET_KIND: SEALED_SECRETS,
}
#: Spec fields of a SealedSecret that hold sealed items (compared per item key).
_ITEM_FIELDS: Final = frozenset({"encryptedData", "environments"})
#: How often ``rollback`` looks whether the operator has caught up.
POLL_INTERVAL: Final = 0.2
DEFAULT_TIMEOUT: Final = 60.0


class RevisionSource(Protocol):
    """What this module needs of :class:`kstrata.app.revisions.RevisionStore`."""

    def history(self, owner: JSON) -> list[Snapshot]: ...

    def get(self, owner: JSON, number: int) -> Snapshot: ...


def _store(api: KubeApi, store: RevisionSource | None) -> RevisionSource:
    if store is not None:
        return store
    from kstrata.app.revisions import RevisionStore

    return RevisionStore(api)


# --- finding the resource ----------------------------------------------------


def _kind_flag(kind: str | None) -> Kind | None:
    if kind is None:
        return None
    if kind in KIND_FLAGS:
        return KIND_FLAGS[kind]
    for known in RESOURCES:
        if kind == known:
            return known
    raise UsageError(f"--kind: expected one of {', '.join(KIND_FLAGS)}")


def find_resource(api: KubeApi, namespace: str, name: str, kind: str | None) -> tuple[Kind, JSON]:
    """The live ConfigProfile or SealedSecret ``name``: the one ``kind`` says, else either.

    Without ``kind`` a name both kinds use is ambiguous: ``UsageError`` asks
    for ``--kind`` rather than pick one.
    """
    check_name(namespace, "the namespace")
    check_name(name, "the name")
    wanted = _kind_flag(kind)
    if wanted is not None:
        return wanted, api.get(RESOURCES[wanted], namespace, name)
    found = [
        (candidate, obj)
        for candidate, resource in RESOURCES.items()
        if (obj := api.get_or_none(resource, namespace, name)) is not None
    ]
    if not found:
        raise NotFoundError(
            f"no ConfigProfile or SealedSecret named {name} in namespace {namespace}: "
            "kstrata list -A lists every namespace's, -n NAMESPACE picks another"
        )
    if len(found) > 1:
        raise UsageError(
            f"both a ConfigProfile and a SealedSecret are named {name} in {namespace}: "
            "say which with --kind profile or --kind secret"
        )
    return found[0]


def current_revision(obj: JSON) -> int | None:
    """The revision the operator last reported: ``status.revision``, else the annotation."""
    number = parse_revision((obj.get("status") or {}).get("revision"))
    if not number:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        number = parse_revision(annotations.get(REVISION_ANNOTATION))
    return number or None


def _status_is_current(obj: JSON) -> bool:
    """Whether the status describes the spec as it is now (the operator has caught up)."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    return generation is not None and status.get("observedGeneration") == generation


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
    api: KubeApi,
    namespace: str,
    name: str,
    *,
    kind: str | None = None,
    store: RevisionSource | None = None,
) -> History:
    """The retained revisions of a ConfigProfile or SealedSecret, oldest first."""
    found_kind, obj = find_resource(api, namespace, name, kind)
    current = current_revision(obj)
    snapshots = sorted(_store(api, store).history(obj), key=lambda s: s.number)
    rows = tuple(
        HistoryRow(s.number, s.created, s.change_cause, s.number == current) for s in snapshots
    )
    return History(found_kind, namespace, name, current, rows)


# --- diffs -------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigDiff:
    """Two renderings of a ConfigProfile: ConfigMap data, key by key."""

    name: str
    #: What each side is: "revision 3", "environment prod", "live, revision 4", a file name.
    old_label: str
    new_label: str
    old: Mapping[str, str]
    new: Mapping[str, str]

    @property
    def differs(self) -> bool:
        return dict(self.old) != dict(self.new)


@dataclass(frozen=True)
class SecretDiff:
    """Two states of a SealedSecret, by item key only (never a value or a ciphertext)."""

    name: str
    old_label: str
    new_label: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: Sealed again and the keyed fingerprints differ: the value changed.
    changed: tuple[str, ...] = ()
    #: Sealed again with fingerprints equal: same value, new ciphertext.
    resealed: tuple[str, ...] = ()
    #: Ciphertexts differ and no fingerprints say why: changed or only re-sealed.
    undetermined: tuple[str, ...] = ()
    #: Other spec fields that differ (scope, template, environment, ...), by name.
    spec_fields: tuple[str, ...] = ()

    @property
    def differs(self) -> bool:
        return bool(
            self.added
            or self.removed
            or self.changed
            or self.resealed
            or self.undetermined
            or self.spec_fields
        )


Diff = ConfigDiff | SecretDiff


@dataclass(frozen=True)
class SealedSide:
    """One side of a SealedSecret comparison: tokens in effect, fingerprints if known."""

    tokens: Mapping[str, str]
    #: Only for items whose token is the one fingerprinted.
    fingerprints: Mapping[str, str]
    spec: Mapping[str, object]


def compare_sealed(
    name: str, old: SealedSide, new: SealedSide, old_label: str, new_label: str
) -> SecretDiff:
    """Classify every item key; values are never needed, ciphertexts never kept."""
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []
    resealed: list[str] = []
    undetermined: list[str] = []
    for key in sorted(set(old.tokens) | set(new.tokens)):
        if key not in old.tokens:
            added.append(key)
        elif key not in new.tokens:
            removed.append(key)
        elif old.tokens[key] == new.tokens[key]:
            continue
        elif key in old.fingerprints and key in new.fingerprints:
            same = old.fingerprints[key] == new.fingerprints[key]
            (resealed if same else changed).append(key)
        else:
            undetermined.append(key)
    fields = sorted((set(old.spec) | set(new.spec)) - _ITEM_FIELDS)
    spec_fields = tuple(
        f
        for f in fields
        if not same_json(old.spec.get(f), new.spec.get(f))  # type: ignore[arg-type]
    )
    return SecretDiff(
        name,
        old_label,
        new_label,
        added=tuple(added),
        removed=tuple(removed),
        changed=tuple(changed),
        resealed=tuple(resealed),
        undetermined=tuple(undetermined),
        spec_fields=spec_fields,
    )


def _sealed_side(
    spec: Mapping[str, object], environment: str, fingerprints: Mapping[str, str]
) -> SealedSide:
    tokens = effective_tokens(parse_sealed_spec(dict(spec)), environment)
    known = {key: fingerprints[key] for key in tokens if key in fingerprints}
    return SealedSide(tokens, known, spec)


def _snapshot_sealed(snapshot: Snapshot) -> SealedSide:
    return _sealed_side(snapshot.spec, snapshot.environment, snapshot.fingerprints)


def _live_fingerprints(obj: JSON) -> dict[str, str]:
    """Fingerprints in status, trusted only while the status describes the current spec."""
    if not _status_is_current(obj):
        return {}
    items = (obj.get("status") or {}).get("items") or []
    return {
        str(item["key"]): str(item["fingerprint"])
        for item in items
        if isinstance(item, dict) and item.get("key") and item.get("fingerprint")
    }


def _live_sealed(obj: JSON, environment: str) -> SealedSide:
    status_environment = (obj.get("status") or {}).get("environment")
    fingerprints = _live_fingerprints(obj) if environment == status_environment else {}
    return _sealed_side(obj.get("spec") or {}, environment, fingerprints)


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
    api: KubeApi,
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


def _previous(snapshots: list[Snapshot], before: int) -> int | None:
    older = [s.number for s in snapshots if s.number < before]
    return max(older) if older else None


def _diff_revisions(
    api: KubeApi,
    namespace: str,
    name: str,
    kind: str | None,
    *,
    revisions: tuple[int | None, int | None],
    store: RevisionSource | None,
) -> Diff:
    found_kind, obj = find_resource(api, namespace, name, kind)
    source = _store(api, store)
    old_number, new_number = revisions
    if new_number is None:
        new_number = current_revision(obj)
        if new_number is None:
            raise RevisionNotFoundError(
                f"{found_kind} {namespace}/{name} has no revision yet (the operator has not "
                f"rendered it): kstrata list -n {namespace} shows its status"
            )
    if old_number is None:
        old_number = _previous(source.history(obj), new_number)
        if old_number is None:
            raise RevisionNotFoundError(
                f"{found_kind} {namespace}/{name} keeps no revision before {new_number} "
                "to compare with; name one with --revision"
            )
    old, new = source.get(obj, old_number), source.get(obj, new_number)
    old_label, new_label = f"revision {old_number}", f"revision {new_number}"
    if found_kind == CONFIG_PROFILE_KIND:
        return ConfigDiff(name, old_label, new_label, old.rendered, new.rendered)
    return compare_sealed(name, _snapshot_sealed(old), _snapshot_sealed(new), old_label, new_label)


def _diff_environments(
    api: KubeApi, namespace: str, name: str, kind: str | None, *, envs: tuple[str, str]
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
        name, _live_sealed(obj, old_env), _live_sealed(obj, new_env), old_label, new_label
    )


def operator_environment(
    api: KubeApi, namespace: str, spec_environment: str | None, live: JSON | None
) -> str:
    """The environment the operator would render ``spec_environment``'s resource for.

    The operator's rule (spec, namespace label, its default); its default is
    read from a live status whose environment came from the default, since
    the operator's settings may name another one than the CLI's ``dev``.
    """
    status = (live or {}).get("status") or {}
    default = DEFAULT_ENVIRONMENT
    if status.get("environmentSource") == "default" and status.get("environment"):
        default = str(status["environment"])
    labels = {} if spec_environment is not None else namespace_labels(api, namespace)
    return select_environment(spec_environment, labels, default).name


def _live_data(api: KubeApi, namespace: str, name: str, profile: JSON | None) -> dict[str, str]:
    """The ConfigMap the live profile renders into, as it is now ({} when there is none)."""
    if profile is None:
        return {}
    config_map = (profile.get("status") or {}).get("configMapName")
    if not config_map:
        output = (profile.get("spec") or {}).get("output") or {}
        config_map = output.get("configMapName") or name
    found = api.get_or_none(CONFIG_MAPS, namespace, str(config_map))
    return dict((found or {}).get("data") or {})


def _live_label(obj: JSON | None) -> str:
    if obj is None:
        return "not on the cluster"
    current = current_revision(obj)
    return "live" if current is None else f"live, revision {current}"


@dataclass(frozen=True)
class _FileResource:
    kind: Kind
    name: str
    namespace: str | None
    spec: JSON


@functools.cache
def _spec_schema(kind: Kind) -> JSON:
    crd = configprofile_crd() if kind == CONFIG_PROFILE_KIND else sealedsecret_crd()
    schema: JSON = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def _defaulted(value: object, schema: JSON) -> object:
    """``value`` with the CRD's defaults filled in, as the API server would on apply.

    Structural defaulting: a default applies to an absent field of an object
    that is present.  Without it a file that leaves ``scope`` out would
    differ from the live object, which the server gave ``scope: strict``.
    """
    if isinstance(value, dict):
        properties: JSON = schema.get("properties") or {}
        others = schema.get("additionalProperties")
        result = dict(value)
        for key, sub in properties.items():
            if key not in result and "default" in sub:
                result[key] = copy.deepcopy(sub["default"])
        for key, item in list(result.items()):
            sub = properties.get(key, others if isinstance(others, dict) else None)
            if sub is not None:
                result[key] = _defaulted(item, sub)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_defaulted(item, schema["items"]) for item in value]
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


def _diff_file(api: KubeApi, namespace: str | None, default_namespace: str, path: Path) -> Diff:
    resource = _read_resource_file(path)
    if namespace and resource.namespace and namespace != resource.namespace:
        raise UsageError(f"{path} is for namespace {resource.namespace}, but -n names {namespace}")
    namespace = namespace or resource.namespace or default_namespace
    check_name(namespace, "the namespace")
    live = api.get_or_none(RESOURCES[resource.kind], namespace, resource.name)
    old_label, new_label = _live_label(live), str(path)
    if resource.kind == CONFIG_PROFILE_KIND:
        spec = parse_profile_spec(resource.spec)
        environment = operator_environment(api, namespace, spec.environment, live)
        lookup = spec_lookup(api, namespace)
        new = render_profile(spec, resource.name, environment, lookup).rendered.data
        old = _live_data(api, namespace, resource.name, live)
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
        old_side = _live_sealed(live, live_env)
    return compare_sealed(resource.name, old_side, new_side, old_label, new_label)


# --- rollback ----------------------------------------------------------------


@dataclass(frozen=True)
class RollbackResult:
    """What ``kstrata rollback`` did, or (not written) would do."""

    kind: Kind
    namespace: str
    name: str
    #: The revision whose spec is restored.
    target: int
    #: The revision current before the rollback.
    previous: int | None
    #: The restored resource: what ``-o yaml`` prints for GitOps users to commit.
    manifest: JSON
    #: Live state against the restored one.
    diff: Diff
    #: False when the live spec already is revision ``target``'s.
    changed: bool
    written: bool
    #: The revision the operator reported for the restored spec (when waited for).
    revision: int | None = None
    #: For stderr: things the user should know (a base profile changed since).
    warnings: tuple[str, ...] = ()
    #: Why ``target`` was chosen: "named with --to-revision", "the revision serving: ...".
    chosen: str = "named with --to-revision"


def rollback_cause(number: int) -> str:
    return f"rollback to {number}"


def _restored_manifest(kind: Kind, obj: JSON, spec: JSON, number: int) -> JSON:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "annotations": {CHANGE_CAUSE_ANNOTATION: rollback_cause(number)},
        },
        "spec": spec,
    }


def _rendered_now(
    spec: ProfileSpec, name: str, environment: str, lookup: Lookup
) -> tuple[dict[str, str] | None, str | None]:
    """What the operator will render for ``spec`` now, or why it cannot (no values quoted)."""
    try:
        return render_profile(spec, name, environment, lookup).rendered.data, None
    except InvalidInputError as error:
        return None, str(error)


def _profile_rollback_diff(
    api: KubeApi, namespace: str, name: str, obj: JSON, target: Snapshot
) -> tuple[ConfigDiff, tuple[str, ...]]:
    spec = parse_profile_spec(target.spec)
    environment = operator_environment(api, namespace, spec.environment, obj)
    rendered, problem = _rendered_now(spec, name, environment, spec_lookup(api, namespace))
    warnings: list[str] = []
    label = f"revision {target.number}, restored"
    if rendered is None:
        warnings.append(
            f"revision {target.number} no longer renders ({problem}); the operator will keep "
            "serving the current ConfigMap and report the error"
        )
        rendered = target.rendered
        label = f"revision {target.number}"
    elif rendered != target.rendered:
        why = []
        if spec.extends:
            why.append(f"its base profiles ({', '.join(spec.extends)}) changed since")
        if environment != target.environment:
            why.append(f"it now renders for environment {environment}, not {target.environment}")
        reason = " and ".join(why) or "rendering changed since"
        warnings.append(
            f"revision {target.number} will render differently than it did: {reason}; "
            "the diff shows what it renders now"
        )
    old = _live_data(api, namespace, name, obj)
    return ConfigDiff(name, _live_label(obj), label, old, rendered), tuple(warnings)


def _sealed_rollback_diff(
    api: KubeApi, namespace: str, name: str, obj: JSON, target: Snapshot
) -> SecretDiff:
    live_spec = parse_sealed_spec(obj.get("spec") or {})
    live_env = operator_environment(api, namespace, live_spec.environment, obj)
    target_spec = parse_sealed_spec(target.spec)
    environment = operator_environment(api, namespace, target_spec.environment, obj)
    tokens = effective_tokens(target_spec, environment)
    snapshot_tokens = effective_tokens(target_spec, target.environment)
    # A fingerprint speaks for a token only if it is the very token fingerprinted.
    known = {
        key: target.fingerprints[key]
        for key, token in tokens.items()
        if key in target.fingerprints and snapshot_tokens.get(key) == token
    }
    return compare_sealed(
        name,
        _live_sealed(obj, live_env),
        SealedSide(tokens, known, target.spec),
        _live_label(obj),
        f"revision {target.number}, restored",
    )


def _default_target(
    kind: Kind, namespace: str, name: str, obj: JSON, *, current: int, source: RevisionSource
) -> tuple[int, str]:
    """The last good revision: the one serving if the spec is not, else the one before it.

    A spec the operator refused (Ready=False) or has not handled yet
    (observedGeneration behind) is not what is served: rolling back then
    means returning to the serving revision, not to an older one.
    """
    state = summary(obj, kind)
    if state.stale or state.ready != "True":
        why = (
            f"the spec's latest change (generation {state.generation}) is not handled yet"
            if state.stale
            else f"the spec is not applied ({state.reason or 'NotReady'})"
        )
        return current, f"the revision serving: {why}"
    previous = _previous(source.history(obj), current)
    if previous is None:
        raise RevisionNotFoundError(
            f"{kind} {namespace}/{name} keeps no revision before {current} to roll back to; "
            f"kstrata history {name} -n {namespace} lists the retained ones"
        )
    return previous, f"the last revision before the one serving ({current})"


def rollback(
    api: KubeApi,
    namespace: str,
    name: str,
    *,
    kind: str | None = None,
    to_revision: int | None = None,
    write: bool = True,
    server_dry_run: bool = False,
    wait: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    store: RevisionSource | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str], None] | None = None,
) -> RollbackResult:
    """Restore revision ``to_revision``'s spec (default: the last good revision).

    The default is the revision serving when the spec is not (refused, or not
    handled yet), else the one before it; ``chosen`` in the result says which.

    With ``write`` false nothing is written (``--dry-run``, ``-o yaml``).
    ``server_dry_run`` sends the write with ``dryRun=All``: the API server,
    its RBAC and the admission webhook judge it (a refusal raises with their
    message, as a real write would) and nothing is stored or waited for.
    Otherwise the spec is written with PUT and the resourceVersion read
    (``ConflictError`` if the resource changed meanwhile; nothing is retried,
    since the user decided on the state they saw) with the change cause
    ``rollback to N``; with ``wait`` this returns once the operator reports
    the result, and raises if it refused the restored spec; ``progress``
    hears about that wait (the CLI shows it on a terminal).
    """
    found_kind, obj = find_resource(api, namespace, name, kind)
    source = _store(api, store)
    current = current_revision(obj)
    if to_revision is not None and to_revision < 1:
        raise UsageError("--to-revision: revision numbers start at 1")
    chosen = "named with --to-revision"
    if to_revision is None:
        if current is None:
            raise RevisionNotFoundError(
                f"{found_kind} {namespace}/{name} has no revision yet; nothing to roll back to "
                f"(the operator has not rendered it: kstrata list -n {namespace} shows its status)"
            )
        to_revision, chosen = _default_target(
            found_kind, namespace, name, obj, current=current, source=source
        )
    target = source.get(obj, to_revision)
    warnings: tuple[str, ...] = ()
    diff: Diff
    if found_kind == CONFIG_PROFILE_KIND:
        diff, warnings = _profile_rollback_diff(api, namespace, name, obj, target)
    else:
        diff = _sealed_rollback_diff(api, namespace, name, obj, target)
    manifest = _restored_manifest(found_kind, obj, target.spec, target.number)
    changed = not same_json(obj.get("spec") or {}, target.spec)
    result = RollbackResult(
        found_kind,
        namespace,
        name,
        target.number,
        current,
        manifest,
        diff,
        changed=changed,
        written=False,
        warnings=warnings,
        chosen=chosen,
    )
    if not write or not changed:
        return result
    meta = dict(obj["metadata"])
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        CHANGE_CAUSE_ANNOTATION: rollback_cause(target.number),
    }
    body = {**obj, "metadata": meta, "spec": target.spec}
    body.pop("status", None)
    resource = RESOURCES[found_kind]
    try:
        written = api.replace(resource, namespace, body, dry_run=server_dry_run)
    except TransientClusterError as error:
        raise explain_refused_write(api, error) from None
    except ConflictError:
        raise ConflictError(
            f"{found_kind} {namespace}/{name} changed while kstrata rollback was writing; "
            "nothing was written: look at it again (kstrata diff) and re-run"
        ) from None
    if server_dry_run:
        return result
    revision = None
    if wait:
        generation = int((written.get("metadata") or {}).get("generation") or 0)
        revision = _await_operator(
            api,
            found_kind,
            namespace,
            name,
            generation=generation,
            target=target.number,
            timeout=timeout,
            sleep=sleep,
            clock=clock,
            progress=progress,
        )
    return RollbackResult(
        found_kind,
        namespace,
        name,
        target.number,
        current,
        manifest,
        diff,
        changed=True,
        written=True,
        revision=revision,
        warnings=warnings,
        chosen=chosen,
    )


def _await_operator(
    api: KubeApi,
    kind: Kind,
    namespace: str,
    name: str,
    *,
    generation: int,
    target: int,
    timeout: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    progress: Callable[[str], None] | None = None,
) -> int | None:
    """The revision the operator reports once it has handled ``generation``.

    Raises ``InvalidInputError`` with the operator's own (value-free) reason
    if it refused the restored spec, ``ClusterError`` on timeout; the
    rollback stays written either way.
    """
    start = clock()
    deadline = start + timeout
    while True:
        if progress is not None:
            progress(
                f"waiting for the operator to apply {kind} {namespace}/{name} at revision "
                f"{target}: {clock() - start:.0f}s of {timeout:g}s (Ctrl-C stops waiting)"
            )
        obj = api.get(RESOURCES[kind], namespace, name)
        status = obj.get("status") or {}
        observed = status.get("observedGeneration")
        if isinstance(observed, int) and observed >= generation:
            break
        if clock() >= deadline:
            raise ClusterError(
                f"the rollback of {kind} {namespace}/{name} to revision {target} was written, "
                f"but the operator did not report on it within {timeout:g}s; "
                "see kstrata history and its status",
                reason="Timeout",
            )
        sleep(POLL_INTERVAL)
    ready = next(
        (
            c
            for c in status.get("conditions") or []
            if isinstance(c, dict) and c.get("type") == READY_CONDITION
        ),
        {},
    )
    if ready.get("status") != "True":
        raise KstrataError(
            f"the rollback of {kind} {namespace}/{name} to revision {target} was written, "
            f"but the operator did not apply it: {ready.get('reason') or 'NotReady'}: "
            f"{ready.get('message') or 'no message'}",
            reason="RollbackNotApplied",
        )
    return current_revision(obj)


__all__ = [
    "DEFAULT_TIMEOUT",
    "KIND_FLAGS",
    "ConfigDiff",
    "Diff",
    "DiffRequest",
    "History",
    "HistoryRow",
    "HistoryRowData",
    "RevisionSource",
    "RollbackResult",
    "SecretDiff",
    "compare_sealed",
    "compute_diff",
    "current_revision",
    "find_resource",
    "operator_environment",
    "revision_history",
    "rollback",
    "rollback_cause",
]
