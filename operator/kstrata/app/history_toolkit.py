"""What ``history``, ``diff`` and ``rollback`` share: finding the resource and the diff model.

Why a module of its own: ``kstrata rollback`` (``kstrata.app.rollback``)
previews what it will change with the same comparisons ``kstrata diff`` prints
(``kstrata.app.history_commands``), and both find the ConfigProfile or
SealedSecret a name means the same way.  The use cases may not import each
other (``.importlinter``), so what they share lives here: the resource lookup
and its ``--kind`` flag, the revision the operator last reported, the
ConfigMap-data and SealedSecret-item comparisons, the environment the
operator would render for, and what a live object looks like as a diff side.

No secret material: SealedSecret sides carry tokens (ciphertext) and keyed
fingerprints only to classify item keys; results carry item keys only.
Messages name resources, revisions, environments and item keys, never values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from kstrata.app.command_toolkit import (
    check_name,
    namespace_labels,
)
from kstrata.domain.environments import DEFAULT_ENVIRONMENT, select_environment
from kstrata.domain.merge import same_json
from kstrata.domain.revisions import (
    Snapshot,
    parse_revision,
)
from kstrata.domain.sealed_spec import effective_tokens, parse_sealed_spec
from kstrata.errors import (
    NotFoundError,
    UsageError,
)
from kstrata.kube.api import CONFIG_MAPS, CONFIG_PROFILES, SEALED_SECRETS, KubeClient, Resource
from kstrata.payloads import KubeObject, OwnObject
from kstrata.wellknown import (
    CONFIG_PROFILE_KIND,
    REVISION_ANNOTATION,
    SEALED_SECRET_KIND,
    OwnKind,
)

if TYPE_CHECKING:
    pass

Kind = OwnKind


#: ``--kind`` spellings.
KIND_FLAGS: Final[dict[str, Kind]] = {"profile": CONFIG_PROFILE_KIND, "secret": SEALED_SECRET_KIND}


RESOURCES: Final[dict[Kind, Resource[OwnObject]]] = {
    CONFIG_PROFILE_KIND: CONFIG_PROFILES,
    SEALED_SECRET_KIND: SEALED_SECRETS,
}


#: Spec fields of a SealedSecret that hold sealed items (compared per item key).
_ITEM_FIELDS: Final = frozenset({"encryptedData", "environments"})


class RevisionSource(Protocol):
    """What this module needs of :class:`kstrata.app.revisions.RevisionStore`."""

    def history(self, owner: KubeObject) -> list[Snapshot]: ...

    def get(self, owner: KubeObject, number: int) -> Snapshot: ...


def revision_source(api: KubeClient, store: RevisionSource | None) -> RevisionSource:
    if store is not None:
        return store
    from kstrata.app.revisions import RevisionStore

    return RevisionStore(api)


def _kind_flag(kind: str | None) -> Kind | None:
    if kind is None:
        return None
    if kind in KIND_FLAGS:
        return KIND_FLAGS[kind]
    for known in RESOURCES:
        if kind == known:
            return known
    raise UsageError(f"--kind: expected one of {', '.join(KIND_FLAGS)}")


def find_resource(
    api: KubeClient, namespace: str, name: str, kind: str | None
) -> tuple[Kind, OwnObject]:
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


def current_revision(obj: OwnObject) -> int | None:
    """The revision the operator last reported: ``status.revision``, else the annotation."""
    number = parse_revision((obj.get("status") or {}).get("revision"))
    if not number:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        number = parse_revision(annotations.get(REVISION_ANNOTATION))
    return number or None


def status_is_current(obj: OwnObject) -> bool:
    """Whether the status describes the spec as it is now (the operator has caught up)."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    return generation is not None and status.get("observedGeneration") == generation


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


def sealed_side(
    spec: Mapping[str, object], environment: str, fingerprints: Mapping[str, str]
) -> SealedSide:
    tokens = effective_tokens(parse_sealed_spec(dict(spec)), environment)
    known = {key: fingerprints[key] for key in tokens if key in fingerprints}
    return SealedSide(tokens, known, spec)


def snapshot_sealed(snapshot: Snapshot) -> SealedSide:
    return sealed_side(snapshot.spec, snapshot.environment, snapshot.fingerprints)


def _live_fingerprints(obj: OwnObject) -> dict[str, str]:
    """Fingerprints in status, trusted only while the status describes the current spec."""
    if not status_is_current(obj):
        return {}
    items = (obj.get("status") or {}).get("items") or []
    return {
        str(item["key"]): str(item["fingerprint"])
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and item.get("key") and item.get("fingerprint")
    }


def live_sealed(obj: OwnObject, environment: str) -> SealedSide:
    status_environment = (obj.get("status") or {}).get("environment")
    fingerprints = _live_fingerprints(obj) if environment == status_environment else {}
    return sealed_side(obj.get("spec") or {}, environment, fingerprints)


def operator_environment(
    api: KubeClient, namespace: str, spec_environment: str | None, live: OwnObject | None
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


def live_data(
    api: KubeClient, namespace: str, name: str, profile: OwnObject | None
) -> dict[str, str]:
    """The ConfigMap the live profile renders into, as it is now ({} when there is none)."""
    if profile is None:
        return {}
    config_map = (profile.get("status") or {}).get("configMapName")
    if not config_map:
        output = (profile.get("spec") or {}).get("output")
        config_map = (output.get("configMapName") if isinstance(output, dict) else None) or name
    found = api.get_or_none(CONFIG_MAPS, namespace, str(config_map))
    return dict((found or {}).get("data") or {})


def live_label(obj: OwnObject | None) -> str:
    if obj is None:
        return "not on the cluster"
    current = current_revision(obj)
    return "live" if current is None else f"live, revision {current}"


def previous_revision(snapshots: list[Snapshot], before: int) -> int | None:
    older = [s.number for s in snapshots if s.number < before]
    return max(older) if older else None
