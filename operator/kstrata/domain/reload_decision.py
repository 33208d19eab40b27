"""Which workloads a configuration change rolls, and how: the pure reload decision.

Why a module of its own: the decision is the part of reloads that has rules
worth reading on their own (who opted in, which sources a workload follows,
when a record is only updated and when the pod template is patched, who is
listed in a source's ``status.workloads``), and none of it needs the
cluster.  ``kstrata.app.reloads`` reads the namespace, calls ``decide`` for
each workload and carries the decision out; ``kstrata.app.reloader_migration``
reads workloads' references with the same functions.

The decision is level-triggered: it compares the revisions a workload
*recorded* (``kstrata.dev/revisions`` on its metadata, else on its pod
template) with the *current* revisions of what it follows.  Only a name
present on both sides with a different revision is a change the pods have
not seen; first sight, names added and names gone update the record only.

Inputs are the API's JSON objects as read; nothing here writes or reads
anything else, and the clock comes from the caller (``template_patch``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from kstrata.domain import reload_annotations as ra
from kstrata.payloads import PodTemplate, Workload, WorkloadKind, WorkloadStatusEntry
from kstrata.wellknown import (
    CONFIG_PROFILE_KIND,
    RELOAD_ANNOTATION,
    RELOAD_PAUSED_ANNOTATION,
    RELOAD_STRATEGY_ANNOTATION,
    REVISIONS_ANNOTATION,
    SEALED_SECRET_KIND,
)

#: A workload as read: a :class:`kstrata.payloads.Workload` from the API, or a
#: watch body.  Read as ``Mapping[str, object]`` (which both are) and narrowed
#: field by field, so an object written around the schema selects nothing
#: rather than raising; what kstrata writes back is a typed ``Workload``.
WorkloadBody = Mapping[str, object]


def _object(value: object) -> Mapping[str, object]:
    """``value`` if it is a JSON object, else empty (a field left out)."""
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    """``value`` if it is a string (annotations and labels are), else ""."""
    return value if isinstance(value, str) else ""


def _annotations(workload: WorkloadBody) -> Mapping[str, object]:
    return _object(_object(workload.get("metadata")).get("annotations"))


AUTO: Final = "auto"

ROLLING: Final = "rolling"
HOT: Final = "hot"
NONE: Final = "none"
STRATEGIES: Final = frozenset({ROLLING, HOT, NONE})

#: What ``decide`` says to do with one workload (``Decision`` explains each).
Action = Literal["ignore", "skip", "unchanged", "record", "paused", "rollout", "sync-pods"]

#: Workloads whose pod template is ``spec.template``.
DEPLOYMENT_KIND: Final = "Deployment"
STATEFUL_SET_KIND: Final = "StatefulSet"
DAEMON_SET_KIND: Final = "DaemonSet"
#: The pod template is ``spec.jobTemplate.spec.template``.
CRON_JOB_KIND: Final = "CronJob"
#: Argo Rollouts: ``spec.template``, or ``spec.restartAt`` with a ``workloadRef``.
ROLLOUT_KIND: Final = "Rollout"
#: Kinds ``spec.reload.targets`` may name (the CRD's enum); the same kinds as
#: ``kstrata.kube.api.RELOADABLE``, the resources a reload pass lists.
WORKLOAD_KINDS: Final = frozenset(
    {DEPLOYMENT_KIND, STATEFUL_SET_KIND, DAEMON_SET_KIND, CRON_JOB_KIND, ROLLOUT_KIND}
)
CONFIG_MAP_KIND: Final = ra.CONFIG_MAP
SECRET_KIND: Final = ra.SECRET


@dataclass(frozen=True)
class Target:
    """One entry of ``spec.reload.targets``: a workload kind and a name or a selector."""

    kind: str
    name: str | None = None
    match_labels: Mapping[str, str] | None = None

    def matches(self, workload: WorkloadBody) -> bool:
        meta = _object(workload.get("metadata"))
        if workload.get("kind") != self.kind:
            return False
        if self.name is not None:
            return bool(meta.get("name") == self.name)
        labels = _object(meta.get("labels"))
        return self.match_labels is not None and all(
            labels.get(key) == value for key, value in self.match_labels.items()
        )


def parse_targets(spec: object) -> tuple[Target, ...]:
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

    action: Action
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


# The pod spec is opaque JSON (``payloads.PodTemplate``): kstrata only scans it
# for the names it references, so these helpers narrow as they go and skip
# anything that is not the shape the API gives.


def _field(value: object, key: str) -> object:
    """``value[key]`` if ``value`` is an object, else None."""
    return value.get(key) if isinstance(value, Mapping) else None


def _items(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _name(value: object, key: str = "name") -> str | None:
    """A non-empty string at ``value[key]``, else None."""
    found = _field(value, key)
    return found if isinstance(found, str) and found else None


def _containers(pod_spec: object) -> Iterable[object]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from _items(_field(pod_spec, key))


def _volume_references(pod_spec: object, config_maps: set[str], secrets: set[str]) -> None:
    for volume in _items(_field(pod_spec, "volumes")):
        if name := _name(_field(volume, "configMap")):
            config_maps.add(name)
        if name := _name(_field(volume, "secret"), "secretName"):
            secrets.add(name)
        for source in _items(_field(_field(volume, "projected"), "sources")):
            if name := _name(_field(source, "configMap")):
                config_maps.add(name)
            if name := _name(_field(source, "secret")):
                secrets.add(name)


def _env_references(pod_spec: object, config_maps: set[str], secrets: set[str]) -> None:
    for container in _containers(pod_spec):
        for env_from in _items(_field(container, "envFrom")):
            if name := _name(_field(env_from, "configMapRef")):
                config_maps.add(name)
            if name := _name(_field(env_from, "secretRef")):
                secrets.add(name)
        for env in _items(_field(container, "env")):
            value_from = _field(env, "valueFrom")
            if name := _name(_field(value_from, "configMapKeyRef")):
                config_maps.add(name)
            if name := _name(_field(value_from, "secretKeyRef")):
                secrets.add(name)


def referenced_objects(pod_spec: object) -> tuple[set[str], set[str]]:
    """(ConfigMap names, Secret names) a pod spec reads: volumes, projected, envFrom, env."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    _volume_references(pod_spec, config_maps, secrets)
    _env_references(pod_spec, config_maps, secrets)
    return config_maps, secrets


def _targeted_by(workload: WorkloadBody, targets: Mapping[str, tuple[Target, ...]]) -> set[str]:
    return {name for name, entries in targets.items() if any(t.matches(workload) for t in entries)}


def pod_template(workload: WorkloadBody) -> Mapping[str, object]:
    """The workload's pod template (a CronJob's is inside its job template); {} if none."""
    spec = _object(workload.get("spec"))
    if workload.get("kind") == CRON_JOB_KIND:
        spec = _object(_object(spec.get("jobTemplate")).get("spec"))
    template = spec.get("template")
    return template if isinstance(template, dict) else {}


def restarts_by_time(workload: WorkloadBody) -> bool:
    """A Rollout with ``spec.workloadRef`` and no template of its own: rolled by ``restartAt``."""
    spec = _object(workload.get("spec"))
    return bool(
        workload.get("kind") == ROLLOUT_KIND
        and spec.get("workloadRef")
        and not isinstance(spec.get("template"), dict)
    )


def template_patch(workload: WorkloadBody, annotations: Mapping[str, str], *, now: str) -> Workload:
    """A merge patch that sets ``annotations`` on the workload's pod template.

    For a Rollout without a template (``restarts_by_time``) it sets
    ``spec.restartAt`` to ``now`` (RFC 3339, the caller's clock): a template
    would make the Rollout invalid next to its ``workloadRef``.
    """
    if restarts_by_time(workload):
        return {"spec": {"restartAt": now}}
    template: PodTemplate = {"metadata": {"annotations": dict(annotations)}}
    if workload.get("kind") == CRON_JOB_KIND:
        return {"spec": {"jobTemplate": {"spec": {"template": template}}}}
    return {"spec": {"template": template}}


def reload_request(workload: WorkloadBody, *, reloader_compatible: bool) -> ra.ReloadRequest:
    """What the workload's own annotations ask to follow."""
    annotations = _annotations(workload)
    return ra.request_for(annotations, reloader_compatible=reloader_compatible)


def wanted_plain(workload: WorkloadBody, request: ra.ReloadRequest) -> set[tuple[str, str]]:
    """(ConfigMap|Secret, name) the request may follow: referenced (autos) and named ones."""
    wanted = {(CONFIG_MAP_KIND, n) for n in request.config_maps}
    wanted |= {(SECRET_KIND, n) for n in request.secrets}
    if request.auto:
        config_maps, secrets = referenced_objects(pod_template(workload).get("spec"))
        if request.auto_config_maps:
            wanted |= {(CONFIG_MAP_KIND, n) for n in config_maps}
        if request.auto_secrets:
            wanted |= {(SECRET_KIND, n) for n in secrets}
    return wanted


def dependencies(workload: WorkloadBody, sources: Sources) -> dict[str, tuple[str, str]] | None:
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


def current_revisions(workload: WorkloadBody, sources: Sources) -> dict[str, Revision] | None:
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


def recorded_revisions(workload: WorkloadBody) -> str | None:
    """The record: workload metadata first, else the pod template (None: never seen)."""
    annotations = _annotations(workload)
    if REVISIONS_ANNOTATION in annotations:
        return str(annotations[REVISIONS_ANNOTATION])
    template = _object(pod_template(workload).get("metadata"))
    found = _object(template.get("annotations")).get(REVISIONS_ANNOTATION)
    return None if found is None else str(found)


def decide(workload: WorkloadBody, sources: Sources) -> Decision:
    """The pure decision for one workload (no I/O)."""
    current = current_revisions(workload, sources)
    if current is None:
        return Decision("ignore")
    annotations = _annotations(workload)
    strategy = (_text(annotations.get(RELOAD_STRATEGY_ANNOTATION)) or ROLLING).strip().lower()
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
        same: Action = "unchanged" if desired == recorded else "record"
        return Decision(same, strategy=strategy, desired=desired, recorded=recorded)
    action: Action
    if strategy == HOT:
        # No restart: the kubelet swaps the files; kstrata only tells it to look now.
        action = "sync-pods"
    elif _text(annotations.get(RELOAD_PAUSED_ANNOTATION)).strip().lower() == "true":
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


#: ``status.workloads`` is a list-map keyed by kind and name; these are the kinds.
_WORKLOAD_KINDS: Final[tuple[WorkloadKind, ...]] = get_args(WorkloadKind)


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
    evaluated: Iterable[tuple[WorkloadBody, Decision, Mapping[str, tuple[str, str]]]],
) -> dict[tuple[str, str], list[WorkloadStatusEntry]]:
    """(source kind, source name) -> its ``status.workloads``, sorted by kind and name.

    Only rolling workloads are listed: a ``hot`` workload's record says which
    revisions its pods were told to sync to, not which one the application
    loaded, and for ``none`` kstrata writes no record.  A paused workload is
    listed with the revision it still records, which is how a status shows
    that it is behind.  ``revision`` is left out when the record does not name
    the source yet (a name added while the workload is paused).
    """
    result: dict[tuple[str, str], list[WorkloadStatusEntry]] = {}
    for workload, decision, found in evaluated:
        record = effective_record(decision)
        if record is None:
            continue
        revisions = parse_revisions(record)
        entry_kind = next((k for k in _WORKLOAD_KINDS if k == workload.get("kind")), None)
        if entry_kind is None:
            continue  # not a workload kstrata reloads: nothing to list
        entry_name = str(_object(workload.get("metadata")).get("name", ""))
        for key, source in found.items():
            if source[0] not in (CONFIG_PROFILE_KIND, SEALED_SECRET_KIND):
                continue  # a plain ConfigMap or Secret has no status to list workloads in
            entry = WorkloadStatusEntry(kind=entry_kind, name=entry_name)
            if isinstance(recorded := revisions.get(key), int):
                entry["revision"] = recorded
            result.setdefault(source, []).append(entry)
    for entries in result.values():
        entries.sort(key=lambda e: (e["kind"], e["name"]))
    return result


# --- pods and annotations ---------------------------------------------------


def label_selector(selector: object) -> str | None:
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


def owned_pod(workload: WorkloadBody, pod: Mapping[str, object]) -> bool:
    """Whether ``pod`` belongs to ``workload``, not merely to its (possibly overlapping) selector.

    StatefulSets and DaemonSets own their pods directly.  A Deployment's pods
    are owned by a ReplicaSet the Deployment names ``<name>-<pod-template-hash>``
    and whose hash its pods carry as a label: checking that needs no read of
    ReplicaSets (and so no permission for them).  An Argo Rollout's are
    named alike, with the hash in ``rollouts-pod-template-hash``.
    """
    meta = _object(workload.get("metadata"))
    pod_meta = _object(pod.get("metadata"))
    owner = next(
        (
            reference
            for reference in map(_object, _items(pod_meta.get("ownerReferences")))
            if reference.get("controller")
        ),
        None,
    )
    if owner is None:
        return False
    if workload.get("kind") in (DEPLOYMENT_KIND, ROLLOUT_KIND):
        # Argo Rollouts names its ReplicaSets the same way, with its own label.
        label = "pod-template-hash"
        if workload.get("kind") == ROLLOUT_KIND:
            label = "rollouts-pod-template-hash"
        template_hash = _object(pod_meta.get("labels")).get(label)
        # The hash has no dash, so "web-api-<hash>" can never pass for "web".
        return bool(
            isinstance(template_hash, str)
            and template_hash.isalnum()
            and owner.get("kind") == "ReplicaSet"
            and owner.get("name") == f"{meta.get('name')}-{template_hash}"
        )
    return bool(owner.get("kind") == workload.get("kind") and owner.get("uid") == meta.get("uid"))


def needs_attention(annotations: Mapping[str, object]) -> tuple[str | None, ...]:
    """The annotations whose change on a workload calls for a reload pass."""
    keys = (RELOAD_ANNOTATION, RELOAD_STRATEGY_ANNOTATION, RELOAD_PAUSED_ANNOTATION)
    values = (annotations.get(k) for k in (*keys, *ra.RELOADER_WORKLOAD_ANNOTATIONS))
    # The API keeps annotations as strings; anything else counts as absent.
    return tuple(value if isinstance(value, str) else None for value in values)
