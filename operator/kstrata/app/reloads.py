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

A workload opts in itself (the annotation ``kstrata.dev/reload``) or is named
by a source: ``spec.reload.targets`` of a ConfigProfile or SealedSecret lists
workloads by kind and name or by kind and label selector.  Targets carry no
namespace: a source only ever reaches workloads in its own namespace.  Either
way the workload's own ``reload-strategy`` and ``reload-paused`` annotations
still decide, so the team owning a workload keeps the last word.

After a pass every source's ``status.workloads`` lists the rolling workloads
that depend on it and the revision each one records.  That write is a status
merge patch of that one key, made only when the list differs, and nothing
watches it: it can neither bump a revision nor schedule another pass.

Which rollouts go at once: one ``kubectl apply -f dir/`` can change two
sources a workload follows, and the operator sees the two spec writes tens to
hundreds of milliseconds apart.  A workload that follows one source has
nothing to wait for and rolls in the first pass after its new revision.  One
that follows several is held by a pass that is not ``settled``
(``waits_for_change_set``) and rolled by the pass the controller runs once the
namespace has been quiet long enough, so the change set rolls it once.

Hot workloads (``kstrata.dev/reload-strategy: hot``) never roll.  The
kubelet refreshes mounted files only when it syncs a pod (every minute or so
unless something changes the pod), so on a new revision kstrata annotates the
workload's own running pods, which makes the kubelet sync them now, and then
updates the same record on the workload's metadata; first sight records only.

Boundary: this module decides and patches through ``KubeApi``; it knows
nothing about kopf.  The controller decides *when* to call it (coalesced per
namespace).  Only workloads in the namespace given are ever read or written.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict, TypeVar

from kstrata import metrics
from kstrata.app.toolkit import now_rfc3339
from kstrata.crypto.fingerprint import FingerprintKey, source_fingerprint
from kstrata.domain import reload_annotations as ra
from kstrata.errors import ConflictError, InvalidInputError, KstrataError, NotFoundError
from kstrata.kube.api import (
    CONFIG_MAPS,
    CONFIG_PROFILES,
    DAEMON_SETS,
    DEPLOYMENTS,
    JSON,
    PODS,
    SEALED_SECRETS,
    SECRETS,
    STATEFUL_SETS,
    KubeApi,
    Resource,
    post_event,
)
from kstrata.wellknown import (
    ARGO_ROLLOUTS_GROUP,
    ARGO_ROLLOUTS_VERSION,
    CONFIG_PROFILE_KIND,
    RELOAD_ANNOTATION,
    RELOAD_PAUSED_ANNOTATION,
    RELOAD_STRATEGY_ANNOTATION,
    REVISIONS_ANNOTATION,
    ROLLING_RESTART_REASON,
    SEALED_SECRET_KIND,
)

logger = logging.getLogger(__name__)

AUTO: Final = "auto"

ROLLING: Final = "rolling"
HOT: Final = "hot"
NONE: Final = "none"
STRATEGIES: Final = frozenset({ROLLING, HOT, NONE})


#: Workloads whose pod template is ``spec.template``.
WORKLOADS: Final = (DEPLOYMENTS, STATEFUL_SETS, DAEMON_SETS)
#: CronJobs: the pod template is ``spec.jobTemplate.spec.template``; rolling it
#: makes the next Job run with the new configuration (running Jobs finish as
#: they started).
CRON_JOBS: Final = Resource("batch", "v1", "cronjobs", "CronJob")
#: Argo Rollouts (a CRD that may be absent: listing it then finds none).  The
#: pod template is ``spec.template``, as a Deployment's; rolling it starts the
#: Rollout's own canary or blue-green update.  A Rollout that takes its
#: template from a Deployment (``spec.workloadRef``) has none to patch: kstrata
#: sets ``spec.restartAt`` instead, Argo Rollouts' own restart (it replaces
#: the pods one at a time, without the canary steps).  ``auto`` finds nothing
#: to follow on such a Rollout (its references are in the Deployment's
#: template): annotate the referenced Deployment instead, whose template
#: change Argo Rollouts then rolls out as a new version.
ROLLOUTS: Final = Resource(ARGO_ROLLOUTS_GROUP, ARGO_ROLLOUTS_VERSION, "rollouts", "Rollout")
RELOADABLE: Final = (*WORKLOADS, CRON_JOBS, ROLLOUTS)
#: Kinds ``spec.reload.targets`` may name (the CRD's enum).
WORKLOAD_KINDS: Final = frozenset(r.kind for r in RELOADABLE)
CONFIG_MAP_KIND: Final = ra.CONFIG_MAP
SECRET_KIND: Final = ra.SECRET
#: The key Secret entry with the operator's fingerprint key (app.sealing_keys).
FINGERPRINT_ENTRY: Final = "fingerprint-key.json"
KEY_SECRET_NAME: Final = "kstrata-sealing-keys"  # noqa: S105 (an object name)

#: Parallel API calls in one pass: a fan-out to 50 workloads is 50 patches, and
#: they are independent.  Small, because the operator shares two cores.
PARALLEL_CALLS: Final = 6

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Target:
    """One entry of ``spec.reload.targets``: a workload kind and a name or a selector."""

    kind: str
    name: str | None = None
    match_labels: Mapping[str, str] | None = None

    def matches(self, workload: JSON) -> bool:
        meta = workload.get("metadata") or {}
        if workload.get("kind") != self.kind:
            return False
        if self.name is not None:
            return bool(meta.get("name") == self.name)
        labels = meta.get("labels") or {}
        return self.match_labels is not None and all(
            labels.get(key) == value for key, value in self.match_labels.items()
        )


def parse_targets(spec: Any) -> tuple[Target, ...]:
    """``spec.reload.targets`` of a source; unusable entries are dropped, never guessed at.

    The CRD already enforces the shape; this is what keeps an object written
    around it (an older CRD, a hand-edited etcd) from reaching workloads it
    does not name: no kind, both or neither of name and selector, or an empty
    selector (which would otherwise match everything) select nothing.
    """
    reload = (spec or {}).get("reload") if isinstance(spec, Mapping) else None
    entries = reload.get("targets") if isinstance(reload, Mapping) else None
    if not isinstance(entries, list):
        return ()
    targets: list[Target] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("kind") not in WORKLOAD_KINDS:
            continue
        name = entry.get("name")
        selector = entry.get("selector")
        labels = selector.get("matchLabels") if isinstance(selector, Mapping) else None
        if isinstance(name, str) and name and selector is None:
            targets.append(Target(str(entry["kind"]), name=name))
        elif (
            name is None
            and isinstance(labels, Mapping)
            and labels
            and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
        ):
            targets.append(Target(str(entry["kind"]), match_labels=dict(labels)))
    return tuple(targets)


# --- pure decision ---------------------------------------------------------


#: A recorded revision: a number (kstrata's sources) or a keyed fingerprint (plain ones).
Revision = int | str


@dataclass(frozen=True)
class Sources:
    """Current revisions of the namespace's kstrata sources (revision 0: none yet)."""

    profiles: Mapping[str, int] = field(default_factory=dict)
    sealed_secrets: Mapping[str, int] = field(default_factory=dict)
    #: ConfigMap name -> ConfigProfile name, for ``reload: auto``.
    config_maps: Mapping[str, str] = field(default_factory=dict)
    #: Secret name -> SealedSecret name, for ``reload: auto``.
    secrets: Mapping[str, str] = field(default_factory=dict)
    #: ConfigProfile name -> its ``spec.reload.targets``.
    profile_targets: Mapping[str, tuple[Target, ...]] = field(default_factory=dict)
    #: SealedSecret name -> its ``spec.reload.targets``.
    sealed_targets: Mapping[str, tuple[Target, ...]] = field(default_factory=dict)
    #: (ConfigMap|Secret, name) -> keyed fingerprint of its data, for the
    #: ConfigMaps and Secrets kstrata does not produce that workloads follow.
    plain: Mapping[tuple[str, str], str] = field(default_factory=dict)
    #: Plain sources that opted out (``kstrata.dev/reload-ignore``, Reloader's ``ignore``).
    ignored: frozenset[tuple[str, str]] = frozenset()
    #: Plain sources carrying Reloader's ``match`` (for ``search`` workloads).
    matching: frozenset[tuple[str, str]] = frozenset()
    #: Honour Reloader's annotations (``settings.reloader_compatible``).
    reloader_compatible: bool = False


@dataclass(frozen=True)
class Decision:
    """What to do with one workload.

    ``action`` is one of:

    * ``ignore``: not opted in, or an unusable annotation (never a rollout);
    * ``skip``: strategy ``none``: kstrata writes nothing;
    * ``unchanged``: the record equals the current revisions;
    * ``record``: update the record only (first sight, names added or gone);
    * ``paused``: a rollout is due but ``kstrata.dev/reload-paused`` holds it;
    * ``rollout``: patch the pod template;
    * ``sync-pods``: strategy ``hot``, a revision changed: annotate the
      workload's running pods (never its template), which makes the kubelet
      sync them and so refresh their mounted ConfigMaps and Secrets now rather
      than at its next periodic sync; then update the record.
    """

    action: str
    strategy: str = ROLLING
    desired: str = ""
    recorded: str | None = None
    #: Names whose revision changed, for the event: name -> (recorded, current).
    #: Plain sources have keyed fingerprints instead of numbers.
    changed: Mapping[str, tuple[Revision, Revision]] = field(default_factory=dict)


def parse_revisions(value: str | None) -> dict[str, Revision]:
    """``a=1,configmap/b=Xy_z`` -> ``{"a": 1, "configmap/b": "Xy_z"}``; malformed entries dropped.

    Numbers are kstrata's revisions; ``configmap/`` and ``secret/`` keys carry
    keyed fingerprints (base64url) of sources kstrata does not produce.
    """
    result: dict[str, Revision] = {}
    for entry in (value or "").split(","):
        name, sep, number = entry.strip().rpartition("=")
        if not (sep and name and number):
            continue
        if number.isdigit():
            result[name] = int(number)
        elif name.startswith((ra.CONFIG_MAP_PREFIX, ra.SECRET_PREFIX)) and all(
            c.isalnum() or c in "-_" for c in number
        ):
            result[name] = number
    return result


def format_revisions(revisions: Mapping[str, Revision]) -> str:
    """Sorted by name so the same revisions always give the same annotation."""
    return ",".join(f"{name}={revisions[name]}" for name in sorted(revisions))


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


def _targeted_by(workload: JSON, targets: Mapping[str, tuple[Target, ...]]) -> set[str]:
    return {name for name, entries in targets.items() if any(t.matches(workload) for t in entries)}


def pod_template(workload: JSON) -> JSON:
    """The workload's pod template (a CronJob's is inside its job template); {} if none."""
    spec = workload.get("spec") or {}
    if workload.get("kind") == CRON_JOBS.kind:
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    template = spec.get("template")
    return template if isinstance(template, dict) else {}


def restarts_by_time(workload: JSON) -> bool:
    """A Rollout with ``spec.workloadRef`` and no template of its own: rolled by ``restartAt``."""
    spec = workload.get("spec") or {}
    return bool(
        workload.get("kind") == ROLLOUTS.kind
        and spec.get("workloadRef")
        and not isinstance(spec.get("template"), dict)
    )


def template_patch(workload: JSON, annotations: JSON, *, now: str | None = None) -> JSON:
    """A merge patch that sets ``annotations`` on the workload's pod template.

    For a Rollout without a template (``restarts_by_time``) it sets
    ``spec.restartAt`` to ``now`` (RFC 3339; the current time if None): a
    template would make the Rollout invalid next to its ``workloadRef``.
    """
    if restarts_by_time(workload):
        return {"spec": {"restartAt": now or now_rfc3339()}}
    template: JSON = {"template": {"metadata": {"annotations": annotations}}}
    if workload.get("kind") == CRON_JOBS.kind:
        return {"spec": {"jobTemplate": {"spec": template}}}
    return {"spec": template}


def reload_request(workload: JSON, *, reloader_compatible: bool) -> ra.ReloadRequest:
    """What the workload's own annotations ask to follow."""
    annotations = (workload.get("metadata") or {}).get("annotations") or {}
    return ra.request_for(annotations, reloader_compatible=reloader_compatible)


def wanted_plain(workload: JSON, request: ra.ReloadRequest) -> set[tuple[str, str]]:
    """(ConfigMap|Secret, name) the request may follow: referenced (autos) and named ones."""
    wanted = {(CONFIG_MAP_KIND, n) for n in request.config_maps}
    wanted |= {(SECRET_KIND, n) for n in request.secrets}
    if request.auto:
        config_maps, secrets = referenced_objects(pod_template(workload).get("spec") or {})
        if request.auto_config_maps:
            wanted |= {(CONFIG_MAP_KIND, n) for n in config_maps}
        if request.auto_secrets:
            wanted |= {(SECRET_KIND, n) for n in secrets}
    return wanted


def dependencies(workload: JSON, sources: Sources) -> dict[str, tuple[str, str]] | None:
    """Record key -> (source kind, source name) this workload rolls for; None: not opted in.

    Keys are source names.  A SealedSecret whose name is also a used
    ConfigProfile's is keyed ``secret:<name>`` so neither hides the other.
    ConfigMaps and Secrets kstrata does not produce are keyed
    ``configmap/<name>`` and ``secret/<name>``.  Sources that do not exist or
    have no revision yet are left out: they have nothing to roll to.
    """
    request = reload_request(workload, reloader_compatible=sources.reloader_compatible)
    profiles = _targeted_by(workload, sources.profile_targets)
    sealed = _targeted_by(workload, sources.sealed_targets)
    if request.is_empty() and not profiles and not sealed:
        return None
    plain: dict[str, tuple[str, str]] = {}
    explicit = {(CONFIG_MAP_KIND, n) for n in request.config_maps}
    explicit |= {(SECRET_KIND, n) for n in request.secrets}
    for kind, name in wanted_plain(workload, request):
        owners = sources.config_maps if kind == CONFIG_MAP_KIND else sources.secrets
        if name in owners:
            # Rendered or unsealed by kstrata: follow its source's revision.
            (profiles if kind == CONFIG_MAP_KIND else sealed).add(owners[name])
        elif (kind, name) in sources.plain and (kind, name) not in sources.ignored:
            unmatched = (kind, name) not in explicit and (kind, name) not in sources.matching
            if request.match_only and unmatched:
                continue
            plain[ra.record_key(kind, name)] = (kind, name)
    for name in request.names:
        if name in sources.profiles:
            profiles.add(name)
        if name in sources.sealed_secrets:
            sealed.add(name)
    result = {
        name: (CONFIG_PROFILE_KIND, name) for name in profiles if sources.profiles.get(name, 0) > 0
    }
    for name in sealed:
        if sources.sealed_secrets.get(name, 0) > 0:
            result[f"secret:{name}" if name in result else name] = (SEALED_SECRET_KIND, name)
    result.update(plain)
    return result


def current_revisions(workload: JSON, sources: Sources) -> dict[str, Revision] | None:
    """The revisions this workload depends on now; None when it did not opt in."""
    found = dependencies(workload, sources)
    if found is None:
        return None
    current: dict[str, Revision] = {}
    for key, (kind, name) in found.items():
        if kind == CONFIG_PROFILE_KIND:
            current[key] = sources.profiles[name]
        elif kind == SEALED_SECRET_KIND:
            current[key] = sources.sealed_secrets[name]
        else:
            current[key] = sources.plain[(kind, name)]
    return current


def recorded_revisions(workload: JSON) -> str | None:
    """The record: workload metadata first, else the pod template (None: never seen)."""
    annotations = (workload.get("metadata") or {}).get("annotations") or {}
    if REVISIONS_ANNOTATION in annotations:
        return str(annotations[REVISIONS_ANNOTATION])
    template = pod_template(workload).get("metadata") or {}
    found = (template.get("annotations") or {}).get(REVISIONS_ANNOTATION)
    return None if found is None else str(found)


def decide(workload: JSON, sources: Sources) -> Decision:
    """The pure decision for one workload (no I/O)."""
    current = current_revisions(workload, sources)
    if current is None:
        return Decision("ignore")
    annotations = (workload.get("metadata") or {}).get("annotations") or {}
    strategy = (annotations.get(RELOAD_STRATEGY_ANNOTATION) or ROLLING).strip().lower()
    if strategy not in STRATEGIES:
        # An unknown strategy is invalid configuration: it never triggers a rollout.
        return Decision("ignore", strategy=strategy)
    if strategy == NONE:
        return Decision("skip", strategy=strategy)
    desired = format_revisions(current)
    recorded = recorded_revisions(workload)
    if recorded is None:
        # First sight: the running pods already use today's configuration.
        return Decision("record", strategy=strategy, desired=desired, recorded=None)
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
        return Decision(action, strategy=strategy, desired=desired, recorded=recorded)
    if strategy == HOT:
        # No restart: the kubelet swaps the files; kstrata only tells it to look now.
        action = "sync-pods"
    elif (annotations.get(RELOAD_PAUSED_ANNOTATION) or "").strip().lower() == "true":
        action = "paused"
    else:
        action = "rollout"
    return Decision(action, strategy=strategy, desired=desired, recorded=recorded, changed=changed)


def follows_several(found: Mapping[str, tuple[str, str]]) -> bool:
    """Whether a workload follows more than one source (so one apply may change two of them)."""
    return len(set(found.values())) > 1


def waits_for_change_set(decision: Decision, found: Mapping[str, tuple[str, str]]) -> bool:
    """Whether this rollout must wait until the namespace has settled.

    Only a workload that follows several sources can be rolled twice by one
    ``kubectl apply`` that changes two of them; its rollout waits for the rest
    of the change set.  A workload that follows one source has nothing to
    merge: it rolls at once.  Records, pauses and everything else never wait.
    """
    return decision.action == "rollout" and follows_several(found)


# --- status.workloads -------------------------------------------------------


class WorkloadStatus(TypedDict, total=False):
    """One entry of a source's ``status.workloads`` (a list-map keyed by kind and name)."""

    kind: str
    name: str
    revision: int


def effective_record(decision: Decision) -> str | None:
    """The record a rolling workload carries once the decision is carried out; else None."""
    if decision.strategy != ROLLING:
        return None
    if decision.action in ("record", "rollout"):
        return decision.desired
    if decision.action in ("unchanged", "paused"):
        return decision.recorded
    return None


def workload_statuses(
    evaluated: Iterable[tuple[JSON, Decision, Mapping[str, tuple[str, str]]]],
) -> dict[tuple[str, str], list[WorkloadStatus]]:
    """(source kind, source name) -> its ``status.workloads``, sorted by kind and name.

    Only rolling workloads are listed: a ``hot`` workload's record says which
    revisions its pods were told to sync to, not which one the application
    loaded, and for ``none`` kstrata writes no record.  A paused workload is
    listed with the revision it still records, which is how a status shows
    that it is behind.  ``revision`` is left out when the record does not name
    the source yet (a name added while the workload is paused).
    """
    result: dict[tuple[str, str], list[WorkloadStatus]] = {}
    for workload, decision, found in evaluated:
        record = effective_record(decision)
        if record is None:
            continue
        revisions = parse_revisions(record)
        entry_kind = str(workload.get("kind", ""))
        entry_name = str((workload.get("metadata") or {}).get("name", ""))
        for key, source in found.items():
            if source[0] not in (CONFIG_PROFILE_KIND, SEALED_SECRET_KIND):
                continue  # a plain ConfigMap or Secret has no status to list workloads in
            entry = WorkloadStatus(kind=entry_kind, name=entry_name)
            if isinstance(recorded := revisions.get(key), int):
                entry["revision"] = recorded
            result.setdefault(source, []).append(entry)
    for entries in result.values():
        entries.sort(key=lambda e: (e["kind"], e["name"]))
    return result


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


def _entries(obj: JSON) -> dict[str, bytes]:
    """A ConfigMap's or Secret's data as fingerprint entries (data and binaryData apart)."""
    entries: dict[str, bytes] = {}
    for section in ("data", "binaryData"):
        values = obj.get(section) or {}
        if isinstance(values, Mapping):
            for key, value in values.items():
                entries[f"{section}:{key}"] = str(value).encode("utf-8")
    return entries


@dataclass(frozen=True)
class PlainSource:
    """What a pass needs of one ConfigMap or Secret a workload may follow (never its data)."""

    #: The ConfigProfile/SealedSecret that controls it (then it stands for that revision).
    owner: str | None
    #: Keyed fingerprint of its data; None without the fingerprint key.
    fingerprint: str | None
    ignored: bool
    matching: bool

    def complete(self, key: FingerprintKey | None) -> bool:
        """Whether this description is all a pass needs (a fingerprint, once there is a key)."""
        return self.owner is not None or key is None or self.fingerprint is not None


def describe_plain(
    kind: str,
    namespace: str,
    name: str,
    obj: JSON,
    key: FingerprintKey | None,
    *,
    reloader_compatible: bool,
) -> PlainSource:
    """Describe a ConfigMap or Secret as it is read or watched; its data stays here."""
    # Owner references, not label values: label values may be truncated.
    owner = _controller_owner(
        obj, CONFIG_PROFILE_KIND if kind == CONFIG_MAP_KIND else SEALED_SECRET_KIND
    )
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    fingerprint = None
    if owner is None and key is not None:
        fingerprint = source_fingerprint(
            key, namespace=namespace, kind=kind, name=name, entries=_entries(obj)
        )
    return PlainSource(
        owner=owner,
        fingerprint=fingerprint,
        ignored=ra.source_ignored(annotations, reloader_compatible=reloader_compatible),
        matching=reloader_compatible and ra.source_matches(annotations),
    )


class FingerprintKeySource:
    """The operator's fingerprint key, read once from its key Secret (it is never replaced).

    Until the key exists (the sealing side creates it at start-up) plain
    sources are not followed: there is nothing to record them with, and a
    plain hash is never an option.
    """

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._key: FingerprintKey | None = None

    @property
    def loaded(self) -> FingerprintKey | None:
        """The key if already read (never blocks: for kopf's event loop)."""
        return self._key

    def __call__(self) -> FingerprintKey | None:
        if self._key is None:
            secret = self.api.get_or_none(SECRETS, self.namespace, KEY_SECRET_NAME)
            raw = ((secret or {}).get("data") or {}).get(FINGERPRINT_ENTRY)
            if isinstance(raw, str):
                try:
                    self._key = FingerprintKey.from_secret_entry(base64.b64decode(raw))
                except (ValueError, KstrataError):
                    logger.warning("the fingerprint key entry is unusable: plain sources wait")
        return self._key


@dataclass(frozen=True)
class ReloadOutcome:
    """What one namespace pass did (for handlers, metrics and tests)."""

    evaluated: int
    rolled: tuple[str, ...]
    recorded: tuple[str, ...]
    paused: tuple[str, ...]
    #: Sources whose ``status.workloads`` this pass wrote, as ``Kind/name``.
    statuses: tuple[str, ...] = ()
    #: Rollouts left for a pass once the namespace has settled (``settled=False``).
    held: tuple[str, ...] = ()


@dataclass(frozen=True)
class NamespaceState:
    """One read of a namespace: its workloads (with their resource) and its sources."""

    namespace: str
    workloads: tuple[tuple[Resource, JSON], ...]
    profiles: tuple[JSON, ...]
    sealed: tuple[JSON, ...]
    sources: Sources
    #: The workloads are the watch's copies, not a LIST's: every write then
    #: carries their resourceVersion, and a conflict redoes the pass from lists.
    from_watch: bool = False


@dataclass(frozen=True)
class _Plan:
    resource: Resource
    workload: JSON
    decision: Decision
    found: Mapping[str, tuple[str, str]]

    @property
    def label(self) -> str:
        return f"{self.resource.kind}/{self.workload['metadata']['name']}"


class ReloadReconciler:
    """Reconciles the reload record and pod template of every opted-in workload."""

    def __init__(
        self,
        api: KubeApi,
        *,
        fingerprint_key: Callable[[], FingerprintKey | None] | None = None,
        reloader_compatible: bool = False,
        watched: Callable[[str, str, str], PlainSource | None] | None = None,
        workload_kinds: Callable[[str], frozenset[str] | None] | None = None,
    ) -> None:
        self.api = api
        self.fingerprint_key = fingerprint_key or (lambda: None)
        self.reloader_compatible = reloader_compatible
        #: What the ConfigMap/Secret watch last described (kind, namespace, name):
        #: a pass need not GET a source the watch already delivered.
        self.watched = watched or (lambda _kind, _namespace, _name: None)
        #: namespace -> the workload kinds a pass must list there (None: all).
        self.workload_kinds = workload_kinds or (lambda _namespace: None)

    def _list_or_empty(
        self, resource: Resource, namespace: str, label_selector: str | None = None
    ) -> list[JSON]:
        # A CRD that is not installed (SealedSecrets in an older install) means "none".
        try:
            return self.api.list(resource, namespace, label_selector=label_selector)
        except NotFoundError:
            return []

    @staticmethod
    def _each(call: Callable[[_T], _R], items: list[_T]) -> list[_R | KstrataError]:
        """``call`` on every item, a few at a time; our errors are returned, not raised.

        Independent API calls (the lists of one pass, the patches of a fan-out)
        overlap their round trips; one failure must not stop the others.
        """

        def guarded(item: _T) -> _R | KstrataError:
            try:
                return call(item)
            except KstrataError as error:
                return error

        if len(items) <= 1:
            return [guarded(item) for item in items]
        with ThreadPoolExecutor(min(PARALLEL_CALLS, len(items))) as pool:
            return list(pool.map(guarded, items))

    def read_sources(
        self,
        namespace: str,
        *,
        wanted: Iterable[tuple[str, str]] = (),
        profiles: list[JSON] | None = None,
        sealed: list[JSON] | None = None,
    ) -> Sources:
        """The namespace's sources; ``profiles``/``sealed``: lists already read, if any.

        ``wanted``: the (ConfigMap|Secret, name) pairs workloads may follow.
        Each is read by name (a GET: the operator may not list ConfigMaps,
        and a namespace's other ConfigMaps and Secrets are none of its
        business).  One owned by a ConfigProfile or SealedSecret stands for
        that source's revision; any other is a plain source, recorded by the
        keyed fingerprint of its data, computed here and nothing else kept.
        """
        if profiles is None:
            profiles = self._list_or_empty(CONFIG_PROFILES, namespace)
        if sealed is None:
            sealed = self._list_or_empty(SEALED_SECRETS, namespace)
        pairs = sorted(set(wanted))
        key = self.fingerprint_key() if pairs else None
        found: dict[tuple[str, str], PlainSource] = {}
        unknown: list[tuple[str, str]] = []
        for kind, name in pairs:
            if (seen := self.watched(kind, namespace, name)) is not None and seen.complete(key):
                found[(kind, name)] = seen
            else:
                unknown.append((kind, name))
        resources = {CONFIG_MAP_KIND: CONFIG_MAPS, SECRET_KIND: SECRETS}
        read = _raise_first(
            self._each(lambda p: self.api.get_or_none(resources[p[0]], namespace, p[1]), unknown)
        )
        for (kind, name), obj in zip(unknown, read, strict=True):
            if obj is not None:
                found[(kind, name)] = describe_plain(
                    kind, namespace, name, obj, key, reloader_compatible=self.reloader_compatible
                )
        config_maps: dict[str, str] = {}
        secrets: dict[str, str] = {}
        plain: dict[tuple[str, str], str] = {}
        ignored: set[tuple[str, str]] = set()
        matching: set[tuple[str, str]] = set()
        for (kind, name), source in found.items():
            if source.owner is not None:
                (config_maps if kind == CONFIG_MAP_KIND else secrets)[name] = source.owner
                continue
            if source.ignored:
                ignored.add((kind, name))
            if source.matching:
                matching.add((kind, name))
            if source.fingerprint is not None:
                plain[(kind, name)] = source.fingerprint
        return Sources(
            profiles={p["metadata"]["name"]: _revision(p) for p in profiles},
            sealed_secrets={s["metadata"]["name"]: _revision(s) for s in sealed},
            config_maps=config_maps,
            secrets=secrets,
            profile_targets=_targets(profiles),
            sealed_targets=_targets(sealed),
            plain=plain,
            ignored=frozenset(ignored),
            matching=frozenset(matching),
            reloader_compatible=self.reloader_compatible,
        )

    def read_namespace(self, namespace: str) -> NamespaceState:
        """Everything a pass decides on: the namespace's workloads and sources, read now.

        Only the workload kinds ``workload_kinds(namespace)`` names are
        listed (the watches know which kinds have a workload that opted in
        or that a source targets there); a kind left out has nothing a pass
        could write.  Each list skipped is a round trip less on the way
        from a change to the rollout.
        """
        needed = self.workload_kinds(namespace)
        resources = [r for r in RELOADABLE if needed is None or r.kind in needed]
        kinds = [*resources, CONFIG_PROFILES, SEALED_SECRETS]
        lists = _raise_first(self._each(lambda r: self._list_or_empty(r, namespace), kinds))
        profiles, sealed = lists[-2], lists[-1]
        workloads: list[tuple[Resource, JSON]] = []
        wanted: set[tuple[str, str]] = set()
        for resource, items in zip(resources, lists[: len(resources)], strict=True):
            for item in items:
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                workloads.append((resource, item))
                request = reload_request(item, reloader_compatible=self.reloader_compatible)
                wanted |= wanted_plain(item, request)
        sources = self.read_sources(namespace, wanted=wanted, profiles=profiles, sealed=sealed)
        return NamespaceState(namespace, tuple(workloads), tuple(profiles), tuple(sealed), sources)

    def state_from_watch(
        self, namespace: str, workloads: Iterable[tuple[str, JSON]]
    ) -> NamespaceState:
        """A namespace state from the workload watch's copies, with no LIST at all.

        Only for a namespace where the watches saw no ConfigProfile or
        SealedSecret (the controller decides): then nothing but the
        workloads and the plain sources they follow matters, and the
        sources come from the ConfigMap/Secret watch too (``watched``).  The
        pass writes with the copies' resourceVersion, so a copy older than
        the object cannot cause a write (see ``reconcile_namespace``).
        """
        by_kind = {r.kind: r for r in RELOADABLE}
        found: list[tuple[Resource, JSON]] = []
        wanted: set[tuple[str, str]] = set()
        for kind, body in workloads:
            if (resource := by_kind.get(kind)) is None:
                continue
            item = dict(body, apiVersion=resource.api_version, kind=kind)
            found.append((resource, item))
            wanted |= wanted_plain(
                item, reload_request(item, reloader_compatible=self.reloader_compatible)
            )
        sources = self.read_sources(namespace, wanted=wanted, profiles=[], sealed=[])
        return NamespaceState(namespace, tuple(found), (), (), sources, from_watch=True)

    def reconcile_namespace(
        self,
        namespace: str,
        *,
        changed_at: float | None = None,
        state: NamespaceState | None = None,
        settled: bool = True,
    ) -> ReloadOutcome:
        """One pass over the namespace's workloads.  ``changed_at``: monotonic trigger time.

        ``state``: what ``read_namespace`` returned, if the caller read ahead
        and knows nothing changed since; otherwise the namespace is read now.
        ``settled``: whether the rest of a change set can no longer come
        (nothing in flight, quiet long enough).  If not, rollouts of workloads
        that follow several sources are held (``ReloadOutcome.held``): they
        keep their record, their sources' status says so, and the caller runs
        another pass once the namespace has settled.
        """
        if state is None or state.namespace != namespace:
            state = self.read_namespace(namespace)
        workloads, sources = state.workloads, state.sources
        profiles, sealed = list(state.profiles), list(state.sealed)
        plans: list[_Plan] = []
        for resource, workload in workloads:
            found = dependencies(workload, sources)
            if found is not None:
                plans.append(_Plan(resource, workload, decide(workload, sources), found))
        if not plans and not any(
            (o.get("status") or {}).get("workloads") for o in profiles + sealed
        ):
            return ReloadOutcome(0, (), (), ())

        held = [] if settled else [p for p in plans if waits_for_change_set(p.decision, p.found)]
        held_ids = {id(p) for p in held}
        writes = [
            p
            for p in plans
            if p.decision.action in ("record", "rollout", "sync-pods") and id(p) not in held_ids
        ]
        results = self._each(lambda p: self._write(p, changed_at, state.from_watch), writes)
        # Events after every patch: they are best effort and must not delay the
        # last workload of a fan-out.
        done = [p for p, r in zip(writes, results, strict=True) if r is None]
        rollouts = [p for p in done if p.decision.action == "rollout"]
        self._each(self._announce, rollouts)
        if state.from_watch and any(isinstance(r, ConflictError) for r in results):
            # A watched copy was older than its object: decide again on lists.
            # Writes that went through are "unchanged" there.
            return self.reconcile_namespace(namespace, changed_at=changed_at, settled=settled)
        for plan, result in zip(writes, results, strict=True):
            if isinstance(result, InvalidInputError):
                # The apiserver refused this one workload's patch (its own spec
                # is broken): retrying cannot help, and it must not hold the others.
                logger.warning("reload of %s in %s refused: %s", plan.label, namespace, result)
        _raise_first([r for r in results if not isinstance(r, InvalidInputError)])

        # A refused or held write leaves the workload where it was, and the status says so.
        refused = {id(p) for p, r in zip(writes, results, strict=True) if r is not None}
        refused |= held_ids
        statuses = workload_statuses(
            (p.workload, Decision("unchanged", recorded=p.decision.recorded), p.found)
            if id(p) in refused
            else (p.workload, p.decision, p.found)
            for p in plans
        )
        sources_read = [(CONFIG_PROFILES, o) for o in profiles] + [
            (SEALED_SECRETS, o) for o in sealed
        ]
        written = _raise_first(
            self._each(lambda rs: self._write_status(rs[0], rs[1], statuses), sources_read)
        )
        return ReloadOutcome(
            evaluated=len(plans),
            rolled=tuple(p.label for p in rollouts),
            recorded=tuple(p.label for p in done if p.decision.action == "record"),
            paused=tuple(p.label for p in plans if p.decision.action == "paused"),
            statuses=tuple(label for label in written if label),
            held=tuple(p.label for p in held),
        )

    def _write(self, plan: _Plan, changed_at: float | None, guarded: bool = False) -> None:
        """Carry out one decision.  ``guarded``: the workload is a watch's copy, so the
        patch carries its resourceVersion (a merge patch with one is refused with
        409 when the object has changed since)."""
        meta = plan.workload["metadata"]
        annotations = {REVISIONS_ANNOTATION: plan.decision.desired}
        written: JSON = {"annotations": annotations}
        if guarded:
            written["resourceVersion"] = meta.get("resourceVersion")
        if plan.decision.action == "sync-pods":
            if guarded:
                # Pods are listed and patched without a precondition: decide on a list.
                raise ConflictError("hot reload decided on a watched copy")
            # Pods first, record after: a crash in between syncs them again,
            # which restarts nothing.
            self._sync_pods(plan)
        if plan.decision.action in ("record", "sync-pods"):
            patch: JSON = {"metadata": written}
            self.api.patch(plan.resource, meta["namespace"], meta["name"], patch)
            return
        # One merge patch writes the record and the template together: never a
        # rollout without its record (which would roll again), nor the reverse.
        patch = {"metadata": written, **template_patch(plan.workload, annotations)}
        strategy = plan.decision.strategy
        try:
            self.api.patch(plan.resource, meta["namespace"], meta["name"], patch)
        except KstrataError:
            metrics.RELOAD_ROLLOUTS.labels(strategy=strategy, result="failed").inc()
            raise
        metrics.RELOAD_ROLLOUTS.labels(strategy=strategy, result="patched").inc()
        if changed_at is not None:
            metrics.RELOAD_LATENCY_SECONDS.observe(max(0.0, time.monotonic() - changed_at))
        logger.info(
            "rolling restart of %s %s/%s", plan.resource.kind, meta["namespace"], meta["name"]
        )

    def _sync_pods(self, plan: _Plan) -> None:
        """Annotate the workload's running pods so the kubelet syncs their volumes now.

        The kubelet refreshes a pod's ConfigMap and Secret volumes when it
        syncs the pod: on any change to the pod, or every ``syncFrequency``
        (a minute by default) plus jitter.  A metadata-only patch of the pod
        is such a change, and it restarts nothing.
        """
        meta = plan.workload["metadata"]
        selector = label_selector((plan.workload.get("spec") or {}).get("selector"))
        if selector is None:
            return  # no usable selector: leave it to the kubelet's periodic sync
        patch: JSON = {"metadata": {"annotations": {REVISIONS_ANNOTATION: plan.decision.desired}}}
        pods = self.api.list(PODS, meta["namespace"], label_selector=selector)
        synced = 0
        for pod in pods:
            pod_meta = pod.get("metadata") or {}
            if (
                not owned_pod(plan.workload, pod)
                or pod_meta.get("deletionTimestamp")
                or (pod_meta.get("annotations") or {}).get(REVISIONS_ANNOTATION)
                == plan.decision.desired
            ):
                continue
            try:
                self.api.patch(PODS, meta["namespace"], pod_meta["name"], patch)
            except NotFoundError:
                continue  # gone meanwhile: its replacement mounts the new data
            except KstrataError:
                metrics.RELOAD_POD_SYNCS.labels(result="failed").inc()
                raise
            synced += 1
        metrics.RELOAD_POD_SYNCS.labels(result="patched").inc(synced)
        logger.info(
            "hot reload: %d pod(s) of %s %s/%s told to sync",
            synced,
            plan.resource.kind,
            meta["namespace"],
            meta["name"],
        )

    def _announce(self, plan: _Plan) -> None:
        what = ", ".join(
            f"{name} {old}->{new}" if isinstance(new, int) else f"{name} changed"
            for name, (old, new) in sorted(plan.decision.changed.items())
        )
        post_event(
            self.api,
            plan.workload,
            type_="Normal",
            reason=ROLLING_RESTART_REASON,
            message=f"kstrata rolling restart for new revisions: {what} ({plan.decision.desired})",
            now=now_rfc3339(),
        )

    def _write_status(
        self,
        resource: Resource,
        source: JSON,
        statuses: Mapping[tuple[str, str], list[WorkloadStatus]],
    ) -> str:
        """Patch ``status.workloads`` of one source if it differs; the label if written."""
        meta = source["metadata"]
        desired = statuses.get((resource.kind, meta["name"]), [])
        if ((source.get("status") or {}).get("workloads") or []) == desired:
            return ""
        # null removes the key: an empty list would be one more thing to compare.
        patch = {"status": {"workloads": desired or None}}
        try:
            self.api.patch(resource, meta["namespace"], meta["name"], patch, subresource="status")
        except NotFoundError:
            return ""  # deleted meanwhile: nothing left to describe
        return f"{resource.kind}/{meta['name']}"


def label_selector(selector: Any) -> str | None:
    """A workload's ``spec.selector`` as a list call's label selector; None if unusable.

    An empty or malformed selector gives None, never "everything": kstrata
    must not touch pods that are not the workload's.
    """
    if not isinstance(selector, Mapping):
        return None
    parts: list[str] = []
    labels = selector.get("matchLabels") or {}
    if not isinstance(labels, Mapping):
        return None
    parts += [f"{key}={value}" for key, value in sorted(labels.items())]
    for expression in selector.get("matchExpressions") or []:
        if not isinstance(expression, Mapping):
            return None
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(str(v) for v in expression.get("values") or [])
        if not isinstance(key, str) or not key:
            return None
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            return None
    return ",".join(parts) or None


def owned_pod(workload: JSON, pod: JSON) -> bool:
    """Whether ``pod`` belongs to ``workload``, not merely to its (possibly overlapping) selector.

    StatefulSets and DaemonSets own their pods directly.  A Deployment's pods
    are owned by a ReplicaSet the Deployment names ``<name>-<pod-template-hash>``
    and whose hash its pods carry as a label: checking that needs no read of
    ReplicaSets (and so no permission for them).  An Argo Rollout's are
    named alike, with the hash in ``rollouts-pod-template-hash``.
    """
    meta = workload.get("metadata") or {}
    pod_meta = pod.get("metadata") or {}
    owner = next((r for r in pod_meta.get("ownerReferences") or [] if r.get("controller")), None)
    if owner is None:
        return False
    if workload.get("kind") in (DEPLOYMENTS.kind, ROLLOUTS.kind):
        # Argo Rollouts names its ReplicaSets the same way, with its own label.
        label = "pod-template-hash"
        if workload.get("kind") == ROLLOUTS.kind:
            label = "rollouts-pod-template-hash"
        template_hash = (pod_meta.get("labels") or {}).get(label)
        # The hash has no dash, so "web-api-<hash>" can never pass for "web".
        return bool(
            isinstance(template_hash, str)
            and template_hash.isalnum()
            and owner.get("kind") == "ReplicaSet"
            and owner.get("name") == f"{meta.get('name')}-{template_hash}"
        )
    return bool(owner.get("kind") == workload.get("kind") and owner.get("uid") == meta.get("uid"))


def _targets(sources: list[JSON]) -> dict[str, tuple[Target, ...]]:
    found = {s["metadata"]["name"]: parse_targets(s.get("spec")) for s in sources}
    return {name: targets for name, targets in found.items() if targets}


def _raise_first(results: list[_R | KstrataError]) -> list[_R]:
    """The results, or the first error among them (the pass is retried whole)."""
    for result in results:
        if isinstance(result, KstrataError):
            raise result
    return [r for r in results if not isinstance(r, KstrataError)]


def needs_attention(annotations: Mapping[str, Any]) -> tuple[str | None, ...]:
    """The annotations whose change on a workload calls for a reload pass."""
    keys = (RELOAD_ANNOTATION, RELOAD_STRATEGY_ANNOTATION, RELOAD_PAUSED_ANNOTATION)
    return tuple(annotations.get(k) for k in (*keys, *ra.RELOADER_WORKLOAD_ANNOTATIONS))
