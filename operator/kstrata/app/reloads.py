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

Boundary: this module decides and patches through ``KubeClient``; it knows
nothing about kopf.  The controller decides *when* to call it (coalesced per
namespace).  Only workloads in the namespace given are ever read or written.
"""

from __future__ import annotations

import base64
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, TypeVar

from kstrata import metrics
from kstrata.app.sealing_keys import FINGERPRINT_ENTRY, KEY_SECRET_NAME
from kstrata.app.toolkit import now_rfc3339
from kstrata.crypto.fingerprint import FingerprintKey, source_fingerprint
from kstrata.domain import reload_annotations as ra
from kstrata.domain.reload_decision import (
    CONFIG_MAP_KIND,
    SECRET_KIND,
    Decision,
    Sources,
    Target,
    decide,
    dependencies,
    label_selector,
    owned_pod,
    parse_targets,
    reload_request,
    template_patch,
    waits_for_change_set,
    wanted_plain,
    workload_statuses,
)
from kstrata.errors import ConflictError, InvalidInputError, KstrataError, NotFoundError
from kstrata.kube.api import (
    CONFIG_MAPS,
    CONFIG_PROFILES,
    PODS,
    RELOADABLE,
    SEALED_SECRETS,
    SECRETS,
    KubeClient,
    P,
    Resource,
    post_event,
)
from kstrata.payloads import (
    ConfigMap,
    ConfigProfile,
    ObjectMeta,
    OwnObject,
    SealedSecret,
    Secret,
    Workload,
    WorkloadStatusEntry,
)
from kstrata.wellknown import (
    CONFIG_PROFILE_KIND,
    REVISIONS_ANNOTATION,
    ROLLING_RESTART_REASON,
    SEALED_SECRET_KIND,
)

logger = logging.getLogger(__name__)

#: Parallel API calls in one pass: a fan-out to 50 workloads is 50 patches, and
#: they are independent.  Small, because the operator shares two cores.
PARALLEL_CALLS: Final = 6

_T = TypeVar("_T")
_R = TypeVar("_R")


# --- reading the namespace and patching ------------------------------------


def _revision(obj: OwnObject) -> int:
    try:
        return int((obj.get("status") or {}).get("revision") or 0)
    except (TypeError, ValueError):
        return 0


def _controller_owner(obj: ConfigMap | Secret, kind: str) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind:
            name = ref.get("name")
            return str(name) if name else None
    return None


def _entries(obj: ConfigMap | Secret) -> dict[str, bytes]:
    """A ConfigMap's or Secret's data as fingerprint entries (data and binaryData apart)."""
    entries: dict[str, bytes] = {}
    # A Secret has no binaryData field: its second section is empty.
    sections: tuple[tuple[str, object], ...] = (
        ("data", obj.get("data")),
        ("binaryData", obj.get("binaryData")),
    )
    for section, values in sections:
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
    obj: ConfigMap | Secret,
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

    def __init__(self, api: KubeClient, namespace: str) -> None:
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
    workloads: tuple[tuple[Resource[Workload], Workload], ...]
    profiles: tuple[ConfigProfile, ...]
    sealed: tuple[SealedSecret, ...]
    sources: Sources
    #: The workloads are the watch's copies, not a LIST's: every write then
    #: carries their resourceVersion, and a conflict redoes the pass from lists.
    from_watch: bool = False


@dataclass(frozen=True)
class _Plan:
    resource: Resource[Workload]
    workload: Workload
    decision: Decision
    found: Mapping[str, tuple[str, str]]

    @property
    def label(self) -> str:
        return f"{self.resource.kind}/{self.workload['metadata']['name']}"


class ReloadReconciler:
    """Reconciles the reload record and pod template of every opted-in workload."""

    def __init__(
        self,
        api: KubeClient,
        *,
        fingerprint_key: Callable[[], FingerprintKey | None] | None = None,
        reloader_compatible: bool = False,
        watched: Callable[[str, str, str], PlainSource | None] | None = None,
        workload_kinds: Callable[[str], frozenset[str] | None] | None = None,
        reported_revision: Callable[[str, str, str, int], int | None] | None = None,
    ) -> None:
        self.api = api
        self.fingerprint_key = fingerprint_key or (lambda: None)
        self.reloader_compatible = reloader_compatible
        #: What the ConfigMap/Secret watch last described (kind, namespace, name):
        #: a pass need not GET a source the watch already delivered.
        self.watched = watched or (lambda _kind, _namespace, _name: None)
        #: namespace -> the workload kinds a pass must list there (None: all).
        self.workload_kinds = workload_kinds or (lambda _namespace: None)
        #: (kind, namespace, name, generation) -> the revision its reconciler reported
        #: before writing the status a list shows (``ReloadTriggers.reported_revision``).
        self.reported_revision = reported_revision or (lambda _k, _ns, _n, _g: None)

    def _current(self, kind: str, source: OwnObject) -> int:
        """A source's current revision: its status, or what its reconciler reported since.

        The profile reconciler reports once its ConfigMap serves the new
        revision and writes the status after that, so a rollout need not wait
        for the status write; a list made in between still shows the old one.
        """
        listed = _revision(source)
        meta, status = source.get("metadata") or {}, source.get("status") or {}
        generation = meta.get("generation")
        observed = status.get("observedGeneration")
        if isinstance(generation, int) and (not isinstance(observed, int) or observed < generation):
            reported = self.reported_revision(
                kind, meta.get("namespace", ""), meta["name"], generation
            )
            if reported is not None:
                return max(listed, reported)
        return listed

    def _list_or_empty(
        self, resource: Resource[P], namespace: str, label_selector: str | None = None
    ) -> list[P]:
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
        profiles: Sequence[ConfigProfile] | None = None,
        sealed: Sequence[SealedSecret] | None = None,
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
        resources: dict[str, Resource[ConfigMap | Secret]] = {
            CONFIG_MAP_KIND: CONFIG_MAPS,
            SECRET_KIND: SECRETS,
        }
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
            profiles={
                p["metadata"]["name"]: self._current(CONFIG_PROFILE_KIND, p) for p in profiles
            },
            sealed_secrets={
                s["metadata"]["name"]: self._current(SEALED_SECRET_KIND, s) for s in sealed
            },
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
        lists: list[list[Workload]] = [[] for _ in resources]
        profiles: list[ConfigProfile] = []
        sealed: list[SealedSecret] = []

        def reader(into: list[P], resource: Resource[P]) -> Callable[[], None]:
            return lambda: into.extend(self._list_or_empty(resource, namespace))

        # One call per kind, all at once: the lists land in their own typed places.
        reads = [reader(items, r) for items, r in zip(lists, resources, strict=True)]
        reads += [reader(profiles, CONFIG_PROFILES), reader(sealed, SEALED_SECRETS)]
        _raise_first(self._each(lambda read: read(), reads))
        workloads: list[tuple[Resource[Workload], Workload]] = []
        wanted: set[tuple[str, str]] = set()
        for resource, items in zip(resources, lists, strict=True):
            for item in items:
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                workloads.append((resource, item))
                request = reload_request(item, reloader_compatible=self.reloader_compatible)
                wanted |= wanted_plain(item, request)
        sources = self.read_sources(namespace, wanted=wanted, profiles=profiles, sealed=sealed)
        return NamespaceState(namespace, tuple(workloads), tuple(profiles), tuple(sealed), sources)

    def state_from_watch(
        self, namespace: str, workloads: Iterable[tuple[str, Workload]]
    ) -> NamespaceState:
        """A namespace state from the workload watch's copies, with no LIST at all.

        Only for a namespace where the watches saw no ConfigProfile or
        SealedSecret, or for the followers of plain sources alone when
        nothing else changed there (the controller decides): then nothing
        but those workloads and the plain sources they follow matters, and
        the sources come from the ConfigMap/Secret watch too (``watched``).  The
        pass writes with the copies' resourceVersion, so a copy older than
        the object cannot cause a write (see ``reconcile_namespace``).
        """
        by_kind = {r.kind: r for r in RELOADABLE}
        found: list[tuple[Resource[Workload], Workload]] = []
        wanted: set[tuple[str, str]] = set()
        for kind, body in workloads:
            if (resource := by_kind.get(kind)) is None:
                continue
            item = body.copy()  # shallow: the watch's own copy stays as it was
            item["apiVersion"] = resource.api_version
            item["kind"] = kind
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
        announcements = [self._announcement(p) for p in rollouts]
        for plan, result in zip(writes, results, strict=True):
            if isinstance(result, InvalidInputError):
                # The apiserver refused this one workload's patch (its own spec
                # is broken): retrying cannot help, and it must not hold the others.
                logger.warning("reload of %s in %s refused: %s", plan.label, namespace, result)
        conflict = state.from_watch and any(isinstance(r, ConflictError) for r in results)
        failed = [r for r in results if r is not None and not isinstance(r, InvalidInputError)]
        if conflict or failed:
            self._each(_run_job, announcements)
        if conflict:
            # A watched copy was older than its object: decide again on lists.
            # Writes that went through are "unchanged" there.
            return self.reconcile_namespace(namespace, changed_at=changed_at, settled=settled)
        _raise_first(failed)

        # A refused or held write leaves the workload where it was, and the status says so.
        refused = {id(p) for p, r in zip(writes, results, strict=True) if r is not None}
        refused |= held_ids
        statuses = workload_statuses(
            (p.workload, Decision("unchanged", recorded=p.decision.recorded), p.found)
            if id(p) in refused
            else (p.workload, p.decision, p.found)
            for p in plans
        )
        sources_read: list[tuple[Resource[OwnObject], OwnObject]] = [
            *((CONFIG_PROFILES, o) for o in profiles),
            *((SEALED_SECRETS, o) for o in sealed),
        ]
        # The Events and the status writes at once: the pass holds its namespace
        # until both are back, and a change arriving meanwhile waits for the
        # longer of the two, not their sum (docs/performance.md, "Single-change
        # latency").  The status writes first: the longer, and not best effort.
        status_writes: list[Callable[[], str]] = [
            functools.partial(self._write_status, resource, source, statuses)
            for resource, source in sources_read
        ]
        results_of_tail = self._each(_run_job, [*status_writes, *announcements])
        # The Events are best effort: only a status write's failure retries the pass.
        written = _raise_first(results_of_tail[: len(status_writes)])
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
        written: dict[str, object] = {"annotations": annotations}
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
            patch: dict[str, object] = {"metadata": written}
            self.api.patch(plan.resource, meta["namespace"], meta["name"], patch)
            return
        # One merge patch writes the record and the template together: never a
        # rollout without its record (which would roll again), nor the reverse.
        patch = {
            "metadata": written,
            **template_patch(plan.workload, annotations, now=now_rfc3339()),
        }
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
        meta_patch: ObjectMeta = {"annotations": {REVISIONS_ANNOTATION: plan.decision.desired}}
        patch = {"metadata": meta_patch}
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

    def _announcement(self, plan: _Plan) -> Callable[[], str]:
        """The rollout's Event, to post later; it returns "" (no status written)."""

        def post() -> str:
            self._announce(plan)
            return ""

        return post

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
        resource: Resource[OwnObject],
        source: OwnObject,
        statuses: Mapping[tuple[str, str], list[WorkloadStatusEntry]],
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


def _targets(sources: Sequence[OwnObject]) -> dict[str, tuple[Target, ...]]:
    found = {s["metadata"]["name"]: parse_targets(s.get("spec")) for s in sources}
    return {name: targets for name, targets in found.items() if targets}


def _run_job(job: Callable[[], _R]) -> _R:
    return job()


def _raise_first(results: list[_R | KstrataError]) -> list[_R]:
    """The results, or the first error among them (the pass is retried whole)."""
    for result in results:
        if isinstance(result, KstrataError):
            raise result
    return [r for r in results if not isinstance(r, KstrataError)]
