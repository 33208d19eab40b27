"""Rolling restarts of opted-in workloads when their configuration changes.

Why this shape: the decision is level-triggered.  For one namespace it reads
the *current* revisions of the ConfigProfiles and SealedSecrets each opted-in
workload uses and compares them with the revisions the workload *recorded*
(the annotation ``kstrata.dev/revisions`` on the workload's own metadata).  A
rollout (a merge patch of the pod template's ``kstrata.dev/revisions``
annotation, which makes Kubernetes roll) happens only when a revision the
workload recorded differs from the current one.  Replaying events, a resync,
an operator restart or a metadata-only edit of a profile (which does not
change its revision) therefore restart nothing.

Why the record lives on the workload's metadata and not only on the pod
template: writing the pod template always rolls.  The first sight of a
workload, a name added to ``kstrata.dev/reload`` or a reference that only now
appears must update the record *without* a restart (the pods already run with
that configuration), and only a metadata write can do that.

Boundary: this module decides and patches through ``KubeApi``; it knows
nothing about kopf.  The controller decides *when* to call it (coalesced per
namespace).  Only workloads in the namespace given are ever read or written.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kstrata import metrics
from kstrata.errors import ClusterError, NotFoundError
from kstrata.kube.api import (
    CONFIG_MAPS,
    CONFIG_PROFILES,
    DAEMON_SETS,
    DEPLOYMENTS,
    JSON,
    SEALED_SECRETS,
    SECRETS,
    STATEFUL_SETS,
    KubeApi,
    Resource,
    post_event,
)

logger = logging.getLogger(__name__)

RELOAD_ANNOTATION: Final = "kstrata.dev/reload"
STRATEGY_ANNOTATION: Final = "kstrata.dev/reload-strategy"
PAUSED_ANNOTATION: Final = "kstrata.dev/reload-paused"
REVISIONS_ANNOTATION: Final = "kstrata.dev/revisions"
PROFILE_LABEL: Final = "kstrata.dev/profile"
SEALED_SECRET_LABEL: Final = "kstrata.dev/sealed-secret"  # noqa: S105 (a label key)
AUTO: Final = "auto"

ROLLING: Final = "rolling"
HOT: Final = "hot"
NONE: Final = "none"
STRATEGIES: Final = frozenset({ROLLING, HOT, NONE})

PROFILE_KIND: Final = "ConfigProfile"
SEALED_SECRET_KIND: Final = "SealedSecret"  # noqa: S105 (a kind name)

WORKLOADS: Final = (DEPLOYMENTS, STATEFUL_SETS, DAEMON_SETS)


# --- pure decision ---------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """Current revisions of the namespace's kstrata sources (revision 0: none yet)."""

    profiles: Mapping[str, int] = field(default_factory=dict)
    sealed_secrets: Mapping[str, int] = field(default_factory=dict)
    #: ConfigMap name -> ConfigProfile name, for ``reload: auto``.
    config_maps: Mapping[str, str] = field(default_factory=dict)
    #: Secret name -> SealedSecret name, for ``reload: auto``.
    secrets: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """What to do with one workload.

    ``action`` is one of:

    * ``ignore``: not opted in, or an unusable annotation (never a rollout);
    * ``skip``: strategy ``hot`` or ``none``: kstrata writes nothing;
    * ``unchanged``: the record equals the current revisions;
    * ``record``: update the record only (first sight, names added or gone);
    * ``paused``: a rollout is due but ``kstrata.dev/reload-paused`` holds it;
    * ``rollout``: patch the pod template.
    """

    action: str
    strategy: str = ROLLING
    desired: str = ""
    recorded: str | None = None
    #: Names whose revision changed, for the event: name -> (recorded, current).
    changed: Mapping[str, tuple[int, int]] = field(default_factory=dict)


def parse_revisions(value: str | None) -> dict[str, int]:
    """``a=1,b=2`` -> ``{"a": 1, "b": 2}``; malformed entries are dropped, not fatal."""
    result: dict[str, int] = {}
    for entry in (value or "").split(","):
        name, sep, number = entry.strip().rpartition("=")
        if sep and name and number.isdigit():
            result[name] = int(number)
    return result


def format_revisions(revisions: Mapping[str, int]) -> str:
    """Sorted by name so the same revisions always give the same annotation."""
    return ",".join(f"{name}={revisions[name]}" for name in sorted(revisions))


def _names(value: str) -> list[str]:
    return sorted({part.strip() for part in value.split(",") if part.strip()})


def _containers(pod_spec: JSON) -> Iterable[JSON]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod_spec.get(key) or []


def _volume_references(pod_spec: JSON, config_maps: set[str], secrets: set[str]) -> None:
    for volume in pod_spec.get("volumes") or []:
        if name := (volume.get("configMap") or {}).get("name"):
            config_maps.add(name)
        if name := (volume.get("secret") or {}).get("secretName"):
            secrets.add(name)
        for source in (volume.get("projected") or {}).get("sources") or []:
            if name := (source.get("configMap") or {}).get("name"):
                config_maps.add(name)
            if name := (source.get("secret") or {}).get("name"):
                secrets.add(name)


def _env_references(pod_spec: JSON, config_maps: set[str], secrets: set[str]) -> None:
    for container in _containers(pod_spec):
        for env_from in container.get("envFrom") or []:
            if name := (env_from.get("configMapRef") or {}).get("name"):
                config_maps.add(name)
            if name := (env_from.get("secretRef") or {}).get("name"):
                secrets.add(name)
        for env in container.get("env") or []:
            value_from = env.get("valueFrom") or {}
            if name := (value_from.get("configMapKeyRef") or {}).get("name"):
                config_maps.add(name)
            if name := (value_from.get("secretKeyRef") or {}).get("name"):
                secrets.add(name)


def referenced_objects(pod_spec: JSON) -> tuple[set[str], set[str]]:
    """(ConfigMap names, Secret names) a pod spec reads: volumes, projected, envFrom, env."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    _volume_references(pod_spec, config_maps, secrets)
    _env_references(pod_spec, config_maps, secrets)
    return config_maps, secrets


def current_revisions(workload: JSON, sources: Sources) -> dict[str, int] | None:
    """The revisions this workload depends on now; None when it did not opt in.

    Keys are source names.  A SealedSecret whose name is also a used
    ConfigProfile's is keyed ``secret:<name>`` so neither hides the other.
    Sources that do not exist or have no revision yet are left out: they have
    nothing to roll to.
    """
    annotations = (workload.get("metadata") or {}).get("annotations") or {}
    value = (annotations.get(RELOAD_ANNOTATION) or "").strip()
    if not value:
        return None
    profiles: set[str] = set()
    sealed: set[str] = set()
    if value == AUTO:
        pod_spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
        config_maps, secrets = referenced_objects(pod_spec)
        profiles = {sources.config_maps[n] for n in config_maps if n in sources.config_maps}
        sealed = {sources.secrets[n] for n in secrets if n in sources.secrets}
    else:
        for name in _names(value):
            if name in sources.profiles:
                profiles.add(name)
            if name in sources.sealed_secrets:
                sealed.add(name)
    result = {n: sources.profiles[n] for n in profiles if sources.profiles.get(n, 0) > 0}
    for name in sealed:
        revision = sources.sealed_secrets.get(name, 0)
        if revision > 0:
            result[f"secret:{name}" if name in result else name] = revision
    return result


def recorded_revisions(workload: JSON) -> str | None:
    """The record: workload metadata first, else the pod template (None: never seen)."""
    annotations = (workload.get("metadata") or {}).get("annotations") or {}
    if REVISIONS_ANNOTATION in annotations:
        return str(annotations[REVISIONS_ANNOTATION])
    template = ((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}
    found = (template.get("annotations") or {}).get(REVISIONS_ANNOTATION)
    return None if found is None else str(found)


def decide(workload: JSON, sources: Sources) -> Decision:
    """The pure decision for one workload (no I/O)."""
    current = current_revisions(workload, sources)
    if current is None:
        return Decision("ignore")
    annotations = (workload.get("metadata") or {}).get("annotations") or {}
    strategy = (annotations.get(STRATEGY_ANNOTATION) or ROLLING).strip().lower()
    if strategy not in STRATEGIES:
        # An unknown strategy is invalid configuration: it never triggers a rollout.
        return Decision("ignore", strategy=strategy)
    if strategy != ROLLING:
        return Decision("skip", strategy=strategy)
    desired = format_revisions(current)
    recorded = recorded_revisions(workload)
    if recorded is None:
        # First sight: the running pods already use today's configuration.
        return Decision("record", desired=desired, recorded=None)
    previous = parse_revisions(recorded)
    # Only a name present on both sides with a different revision is a change
    # the pods have not seen; names added to or gone from the set are not.
    changed = {
        name: (previous[name], revision)
        for name, revision in current.items()
        if name in previous and previous[name] != revision
    }
    if not changed:
        action = "unchanged" if desired == recorded else "record"
        return Decision(action, desired=desired, recorded=recorded)
    paused = (annotations.get(PAUSED_ANNOTATION) or "").strip().lower() == "true"
    return Decision(
        "paused" if paused else "rollout", desired=desired, recorded=recorded, changed=changed
    )


# --- reading the namespace and patching ------------------------------------


def _revision(obj: JSON) -> int:
    try:
        return int((obj.get("status") or {}).get("revision") or 0)
    except (TypeError, ValueError):
        return 0


def _controller_owner(obj: JSON, kind: str) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind:
            name = ref.get("name")
            return str(name) if name else None
    return None


@dataclass(frozen=True)
class ReloadOutcome:
    """What one namespace pass did (for handlers, metrics and tests)."""

    evaluated: int
    rolled: tuple[str, ...]
    recorded: tuple[str, ...]
    paused: tuple[str, ...]


class ReloadReconciler:
    """Reconciles the reload record and pod template of every opted-in workload."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def _list_or_empty(
        self, resource: Resource, namespace: str, label_selector: str | None = None
    ) -> list[JSON]:
        # A CRD that is not installed (SealedSecrets in an older install) means "none".
        try:
            return self.api.list(resource, namespace, label_selector=label_selector)
        except NotFoundError:
            return []

    def read_sources(self, namespace: str, *, auto: bool) -> Sources:
        profiles = {
            p["metadata"]["name"]: _revision(p)
            for p in self._list_or_empty(CONFIG_PROFILES, namespace)
        }
        sealed = {
            s["metadata"]["name"]: _revision(s)
            for s in self._list_or_empty(SEALED_SECRETS, namespace)
        }
        config_maps: dict[str, str] = {}
        secrets: dict[str, str] = {}
        if auto:
            # Owner references, not label values: label values may be truncated.
            for cm in self._list_or_empty(CONFIG_MAPS, namespace, PROFILE_LABEL):
                if owner := _controller_owner(cm, PROFILE_KIND):
                    config_maps[cm["metadata"]["name"]] = owner
            for secret in self._list_or_empty(SECRETS, namespace, SEALED_SECRET_LABEL):
                if owner := _controller_owner(secret, SEALED_SECRET_KIND):
                    secrets[secret["metadata"]["name"]] = owner
        return Sources(profiles, sealed, config_maps, secrets)

    def reconcile_namespace(
        self, namespace: str, *, changed_at: float | None = None
    ) -> ReloadOutcome:
        """One pass over the namespace's workloads.  ``changed_at``: monotonic trigger time."""
        workloads: list[tuple[Resource, JSON]] = []
        for resource in WORKLOADS:
            for item in self._list_or_empty(resource, namespace):
                annotations = (item.get("metadata") or {}).get("annotations") or {}
                if (annotations.get(RELOAD_ANNOTATION) or "").strip():
                    item.setdefault("apiVersion", resource.api_version)
                    item.setdefault("kind", resource.kind)
                    workloads.append((resource, item))
        if not workloads:
            return ReloadOutcome(0, (), (), ())
        auto = any(
            (w["metadata"]["annotations"][RELOAD_ANNOTATION] or "").strip() == AUTO
            for _, w in workloads
        )
        sources = self.read_sources(namespace, auto=auto)
        rolled: list[str] = []
        recorded: list[str] = []
        paused: list[str] = []
        for resource, workload in workloads:
            decision = decide(workload, sources)
            label = f"{resource.kind}/{workload['metadata']['name']}"
            if decision.action == "record":
                self._record(resource, workload, decision.desired)
                recorded.append(label)
            elif decision.action == "paused":
                paused.append(label)
            elif decision.action == "rollout":
                self._rollout(resource, workload, decision, changed_at)
                rolled.append(label)
        return ReloadOutcome(len(workloads), tuple(rolled), tuple(recorded), tuple(paused))

    def _record(self, resource: Resource, workload: JSON, desired: str) -> None:
        meta = workload["metadata"]
        patch = {"metadata": {"annotations": {REVISIONS_ANNOTATION: desired}}}
        self.api.patch(resource, meta["namespace"], meta["name"], patch)

    def _rollout(
        self, resource: Resource, workload: JSON, decision: Decision, changed_at: float | None
    ) -> None:
        meta = workload["metadata"]
        annotations = {REVISIONS_ANNOTATION: decision.desired}
        # One merge patch writes the record and the template together: never a
        # rollout without its record (which would roll again), nor the reverse.
        patch = {
            "metadata": {"annotations": annotations},
            "spec": {"template": {"metadata": {"annotations": annotations}}},
        }
        try:
            self.api.patch(resource, meta["namespace"], meta["name"], patch)
        except ClusterError:
            metrics.RELOAD_ROLLOUTS.labels(strategy=decision.strategy, result="failed").inc()
            raise
        metrics.RELOAD_ROLLOUTS.labels(strategy=decision.strategy, result="patched").inc()
        if changed_at is not None:
            metrics.RELOAD_LATENCY_SECONDS.observe(max(0.0, time.monotonic() - changed_at))
        what = ", ".join(
            f"{name} {old}->{new}" for name, (old, new) in sorted(decision.changed.items())
        )
        post_event(
            self.api,
            workload,
            type_="Normal",
            reason="RollingRestart",
            message=f"kstrata rolling restart for new revisions: {what} ({decision.desired})",
            now=_now(),
        )
        logger.info("rolling restart of %s %s/%s", resource.kind, meta["namespace"], meta["name"])


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def needs_attention(annotations: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """The annotations whose change on a workload calls for a reload pass."""
    return (
        annotations.get(RELOAD_ANNOTATION),
        annotations.get(STRATEGY_ANNOTATION),
        annotations.get(PAUSED_ANNOTATION),
    )
