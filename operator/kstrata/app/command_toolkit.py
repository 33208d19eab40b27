"""What the cluster-facing commands share: names, environments, status rows, refused writes.

Why a module of its own: ``list``/``get``/``set``/``import`` and
``history``/``diff``/``rollback`` are separate use cases (an import-linter
contract keeps them from importing each other), yet they check names and
``--env`` flags the same way, resolve ``spec.extends`` through the API the
same way, read a profile's status into the same row, and explain a write the
API server refused because an admission webhook is unreachable the same way.
Those pieces live here, once.

Boundary: the cluster only through ``KubeApi``; the rules (names,
environments, extends) come from ``kstrata.domain``.  Messages name objects,
flags and environments, never configuration values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kstrata.domain.environments import DEFAULT_ENVIRONMENT, is_environment_name
from kstrata.domain.profile import (
    ProfileSpec,
    declared_environments,
    is_object_name,
    parse_profile_spec,
)
from kstrata.errors import ClusterError, TransientClusterError, UsageError
from kstrata.kube.api import (
    CONFIG_PROFILES,
    NAMESPACES,
    VALIDATING_WEBHOOKS,
    KubeClient,
)
from kstrata.payloads import Condition, ConfigProfile, OwnObject
from kstrata.wellknown import (
    API_VERSION,
    CONFIG_PROFILE_KIND,
    ENVIRONMENT_LABEL,
    GROUP,
    READY_CONDITION,
)


def check_name(name: str, what: str) -> None:
    # Names end up in URL paths: refuse anything that is not a Kubernetes name
    # before it gets there (a '/' would address another resource).
    if not is_object_name(name):
        raise UsageError(f"{what} must be a valid Kubernetes object name")


def check_environment_flag(environment: str, flag: str = "--env") -> None:
    if not is_environment_name(environment):
        raise UsageError(
            f"{flag}: not a valid environment name "
            "(lower-case letters, digits and '-', at most 63 characters)"
        )


def spec_lookup(api: KubeClient, namespace: str) -> Callable[[str], ProfileSpec | None]:
    """``spec.extends`` resolved through the API, each base read once."""
    cache: dict[str, ProfileSpec | None] = {}

    def lookup(name: str) -> ProfileSpec | None:
        if name not in cache:
            found = api.get_or_none(CONFIG_PROFILES, namespace, name)
            cache[name] = parse_profile_spec(found.get("spec")) if found else None
        return cache[name]

    return lookup


def namespace_labels(api: KubeClient, namespace: str) -> dict[str, str]:
    found = api.get_or_none(NAMESPACES, None, namespace)
    return ((found or {}).get("metadata") or {}).get("labels") or {}


@dataclass(frozen=True)
class ProfileSummary:
    """One row of ``kstrata list``: what the operator last reported in status."""

    namespace: str
    name: str
    environment: str | None
    revision: int | None
    #: The Ready condition's status: ``True``, ``False`` or ``Unknown`` (no condition yet).
    ready: str
    config_map: str | None
    #: ``metadata.creationTimestamp`` (RFC 3339), for the AGE column.
    created: str | None
    #: ``ConfigProfile`` or ``SealedSecret`` (``list`` shows both kinds).
    kind: str = CONFIG_PROFILE_KIND
    #: The Ready condition's reason (``SchemaViolation``, ...), when there is one.
    reason: str | None = None
    #: ``metadata.generation`` and ``status.observedGeneration``: the status is
    #: stale (it describes an older spec) while the second lags the first.
    generation: int | None = None
    observed_generation: int | None = None
    #: The object as read (managedFields dropped, as kubectl shows it), for ``-o yaml``.
    obj: OwnObject = dataclasses.field(default_factory=ConfigProfile, compare=False, repr=False)

    @property
    def stale(self) -> bool:
        """The spec changed and the operator has not reported on it (down or busy)."""
        return self.generation is not None and self.observed_generation != self.generation

    @property
    def state(self) -> str:
        """One word for the STATUS column: Stale, the not-Ready reason, or Current."""
        if self.stale:
            return "Stale"
        if self.ready != "True":
            return self.reason or ("Pending" if self.ready == "Unknown" else "NotReady")
        return "Current"

    def as_data(self) -> dict[str, object]:
        """The row as data for ``-o yaml|json`` (no AGE: it would not be deterministic)."""
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "environment": self.environment,
            "revision": self.revision,
            "ready": self.ready,
            "reason": self.reason,
            "stale": self.stale,
            "generation": self.generation,
            "observedGeneration": self.observed_generation,
            "configMapName": self.config_map,
            "creationTimestamp": self.created,
        }


def int_or_none(value: object) -> int | None:
    """An integer field as read, or None (a bool is not one, nor a string of digits)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def ready_condition_of(obj: OwnObject) -> Condition:
    """The Ready condition of ``obj``'s status ({} when there is none yet)."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    found = next((c for c in conditions if c.get("type") == READY_CONDITION), Condition())
    return found.copy()


def summary(obj: OwnObject, kind: str = CONFIG_PROFILE_KIND) -> ProfileSummary:
    """What the operator last reported about ``obj``, and whether that is stale."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    ready = ready_condition_of(obj)
    return ProfileSummary(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        environment=status.get("environment") or None,
        revision=int_or_none(status.get("revision")),
        ready=str(ready.get("status") or "Unknown"),
        config_map=_served_name(obj),
        created=meta.get("creationTimestamp") or None,
        kind=kind,
        reason=ready.get("reason") or None,
        generation=int_or_none(meta.get("generation")),
        observed_generation=int_or_none(status.get("observedGeneration")),
        obj=_as_shown(obj, kind),
    )


def _served_name(obj: OwnObject) -> str | None:
    """The ConfigMap or Secret the operator reported serving ``obj`` as."""
    status = obj.get("status") or {}
    name = status.get("configMapName") or status.get("secretName")
    return name if isinstance(name, str) and name else None


def _as_shown(obj: OwnObject, kind: str) -> OwnObject:
    """``obj`` as kubectl shows it: its kind and version filled in, no managedFields."""
    shown = obj.copy()
    meta = (obj.get("metadata") or {}).copy()
    meta.pop("managedFields", None)
    shown["apiVersion"] = API_VERSION
    shown["kind"] = kind
    shown["metadata"] = meta
    return shown


def known_environments(
    api: KubeClient,
    namespace: str,
    name: str,
    spec: ProfileSpec,
    *,
    also: Sequence[str | None] = (),
    default_environment: str = DEFAULT_ENVIRONMENT,
) -> list[str]:
    """The environments ``spec`` may be rendered for: those admission checks.

    Declared overlays (its own and its bases'), the pinned one, the
    namespace label, the operator's default, and ``also`` (what is served).
    """
    names = set(declared_environments(spec, name, spec_lookup(api, namespace)))
    label = namespace_labels(api, namespace).get(ENVIRONMENT_LABEL)
    names.update(e for e in (spec.environment, label, default_environment, *also) if e)
    return sorted(names)


def kstrata_webhooks(api: KubeClient) -> list[str]:
    """ValidatingWebhookConfigurations with a webhook for kstrata.dev resources, by name.

    Empty when none, or when the caller may not list them (no guessing).
    """
    try:
        configurations = api.list(VALIDATING_WEBHOOKS, None)
    except ClusterError:
        return []
    names: set[str] = set()
    for configuration in configurations:
        for hook in configuration.get("webhooks") or []:
            rules = (hook or {}).get("rules") or []
            groups = {g for rule in rules for g in (rule or {}).get("apiGroups") or []}
            if groups & {GROUP, "*"}:
                names.add(str((configuration.get("metadata") or {}).get("name")))
    return sorted(names)


def explain_refused_write(api: KubeClient, error: TransientClusterError) -> TransientClusterError:
    """A write the API server failed (its own message kept), with the next step if known.

    The API server reports an admission webhook it could not call as a
    Status with reason ``InternalError`` (500); when a webhook for kstrata
    resources is configured, it is the likely cause: a foreground operator
    that stopped without removing it, or an operator that is down.  Both are
    named, with the command that removes the configuration.
    """
    if error.reason != "InternalError":
        return error
    names = kstrata_webhooks(api)
    if not names:
        return error
    return TransientClusterError(
        f"{error}\nThe API server calls the admission webhook in ValidatingWebhookConfiguration "
        f"{', '.join(names)} for every write to kstrata resources. If no kstrata operator "
        "serves it any more (a foreground operator that stopped without removing it), remove "
        f"it: kubectl delete validatingwebhookconfiguration {names[0]}; otherwise start the "
        "operator again (kstrata operator run, or check its pods)",
        reason=error.reason,
    )
