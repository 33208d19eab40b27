"""Reconcile a ConfigProfile into its ConfigMap: the operator's main use case.

Level-triggered: ``ProfileReconciler.reconcile`` looks only at the current
state (the profile, its bases, its namespace, the existing ConfigMap) and
writes only what differs, so replaying every event, or restarting the
operator, writes nothing when nothing changed.

Safety rules it enforces:

* invalid input never touches the ConfigMap: the last good configuration
  keeps serving, and the profile's status and a Warning event say why;
* a ConfigMap that exists and is not ours is left alone unless it carries
  ``kstrata.dev/adopt: "true"``; adopting one whose data already equals the
  rendered output writes no data, only our labels and ownerReference.

Revisions: a change of the rendered output (and nothing else: not a restart,
a metadata edit, a spec edit that renders the same bytes, nor a ConfigMap
edited or deleted by hand, which is simply repaired) is revision N+1.
``kstrata.app.revisions`` decides the number and stores the snapshot; the
writes happen in the order ControllerRevision, ConfigMap, status, pruning of
revisions beyond the limit, the profile's revision annotations (the first
index: with kopf's own PATCH), so an interrupted reconcile is finished, not
duplicated, by the next one.  A snapshot too large to store is a Ready=False
``RevisionTooLarge`` condition, and the last good ConfigMap keeps serving.

The ConfigMap read: a profile's first reconcile creates its ConfigMap without
one (a 409 reads it).  Later ones read it, except for a change: the reconciler
keeps, per profile, what it needs of the ConfigMap it last wrote or read
(``KnownConfigMap``: resourceVersion, revision label, a digest of the data,
the metadata others put there; never the data) in ``ConfigMapMemory``, and a
render that differs from that is written with a PUT built from it, carrying
its resourceVersion: a ConfigMap edited, replaced or deleted since makes the
PUT fail (409, 404), and the same reconcile then reads it and goes the usual
way.  A render equal to the remembered one (a resync, a replay, a status-only
event) still reads, so a ConfigMap edited by hand is repaired as before.
One round trip less on the way from a profile change to its rollout (issue
18); memory: see ``KnownConfigMap``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from kstrata import metrics
from kstrata.app.revisions import RevisionStore, Settled
from kstrata.app.toolkit import (
    check_ownership,
    is_ours,
    now_rfc3339,
    patch_status_if_changed,
    ready_condition,
    reconciled_before,
    record_failure,
)
from kstrata.domain.budget import time_budget
from kstrata.domain.environments import EnvironmentChoice, select_environment
from kstrata.domain.profile import (
    ProfileSpec,
    RenderedProfile,
    parse_profile_spec,
    render_profile,
)
from kstrata.domain.render import data_digest
from kstrata.domain.revisions import Snapshot, parse_revision, rendered_digest
from kstrata.errors import (
    ClusterError,
    ConflictError,
    InvalidInputError,
    KstrataError,
    NotFoundError,
    OwnershipError,
)
from kstrata.kube.api import (
    CONFIG_MAPS,
    CONFIG_PROFILES,
    NAMESPACES,
    KubeClient,
    owner_reference,
    post_event,
)
from kstrata.payloads import ConfigMap, ConfigProfile, ObjectMeta, ProfileStatus
from kstrata.settings import Settings
from kstrata.wellknown import (
    CONFIG_PROFILE_KIND,
    MANAGED_BY_LABEL,
    MANAGER,
    PROFILE_LABEL,
    RENDERED_REASON,
    REVISION_LABEL,
)

logger = logging.getLogger(__name__)

#: Render and validation of one profile, at most (kstrata.domain.budget).
RECONCILE_BUDGET_SECONDS: Final = 2.0
#: Profiles whose ConfigMap ``ConfigMapMemory`` keeps, at most: beyond issue 18's
#: 10,000 profiles per replica; past it the least recently written is read again.
MEMORY_LIMIT: Final = 20_000
#: Metadata a PUT may leave out: the API server keeps it (or the reconcile sets it).
_SERVER_KEPT: Final = frozenset(
    {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp"}
    | {"managedFields", "selfLink", "labels", "ownerReferences"}
)
#: Metadata a remembered ConfigMap's PUT carries as it was (``KnownConfigMap.extra``).
_CARRIED: Final = frozenset({"generateName", "annotations", "finalizers"})
#: The labels every reconcile sets on its ConfigMap.
_OWN_LABELS: Final = frozenset({MANAGED_BY_LABEL, PROFILE_LABEL, REVISION_LABEL})


@dataclass(frozen=True, slots=True)
class KnownConfigMap:
    """What the next reconcile needs of the ConfigMap kstrata last wrote or read; not its data.

    About 410 bytes per profile with nothing in ``extra`` (the usual case;
    ``tests/unit/app/test_configmap_memory_entries.py`` measures it), so
    10,000 profiles cost ~4 MB.
    """

    name: str
    resource_version: str
    #: Its ``kstrata.dev/revision`` label (0 when it has none).
    revision: int
    #: ``data_digest`` of its data, hex.
    digest: str
    #: What its metadata holds besides kstrata's labels and ownerReference and what
    #: the API server keeps: others' labels and owners, annotations, finalizers,
    #: which a PUT must carry not to drop them.  None when there is nothing.
    extra: ObjectMeta | None = None


def known_config_map(config_map: ConfigMap, owner_uid: str, digest: str) -> KnownConfigMap | None:
    """What to remember of ``config_map`` (whose data has ``digest``); None if it cannot be.

    Only a ConfigMap of ours that a PUT from memory can reproduce exactly:
    not one with binary data, ``immutable``, being deleted, or with a field
    this module does not know (it is read again instead).
    """
    meta = config_map.get("metadata") or {}
    version = meta.get("resourceVersion")
    if (
        not version
        or not is_ours(config_map, owner_uid)
        or set(config_map) - {"apiVersion", "kind", "metadata", "data"}
        or set(meta) - _SERVER_KEPT - _CARRIED
    ):
        return None
    extra: ObjectMeta = {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in _OWN_LABELS}
    if labels:
        extra["labels"] = labels
    owners = [r for r in meta.get("ownerReferences") or [] if not r.get("controller")]
    if owners:
        extra["ownerReferences"] = owners
    if "generateName" in meta:
        extra["generateName"] = meta["generateName"]
    if "annotations" in meta:
        extra["annotations"] = meta["annotations"]
    if "finalizers" in meta:
        extra["finalizers"] = meta["finalizers"]
    return KnownConfigMap(
        name=meta.get("name", ""),
        resource_version=version,
        revision=parse_revision((meta.get("labels") or {}).get(REVISION_LABEL)),
        digest=digest,
        extra=extra or None,
    )


class ConfigMapMemory:
    """Each profile's ``KnownConfigMap``, by the profile's uid: shared by its reconciles.

    Reconciles run in kopf's threads, hence the lock.  Bounded: beyond
    ``limit`` profiles the least recently stored entry goes (that profile's
    next change reads its ConfigMap); the operator forgets a profile's entry
    when the profile is deleted.
    """

    def __init__(self, limit: int = MEMORY_LIMIT) -> None:
        self._limit = limit
        self._known: dict[str, KnownConfigMap] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._known)

    def get(self, uid: str) -> KnownConfigMap | None:
        return self._known.get(uid)

    def remember(self, uid: str, known: KnownConfigMap | None) -> None:
        with self._lock:
            # Re-inserted at the end: the dict's order is the eviction order.
            self._known.pop(uid, None)
            if known is None:
                return
            self._known[uid] = known
            if len(self._known) > self._limit:
                del self._known[next(iter(self._known))]

    def forget(self, uid: str) -> None:
        with self._lock:
            self._known.pop(uid, None)


@dataclass(frozen=True)
class ProfileOutcome:
    """What one reconcile did (for handlers, metrics and tests)."""

    revision: int
    config_map_written: bool
    status_written: bool
    depends_on: tuple[str, ...]
    #: True when the rendered output was new: a revision snapshot was recorded.
    new_revision: bool = False


class ProfileReconciler:
    """Renders ConfigProfiles into ConfigMaps through one ``KubeClient``."""

    def __init__(
        self,
        api: KubeClient,
        settings: Settings,
        namespace_labels: Callable[[str], dict[str, str] | None] | None = None,
        memory: ConfigMapMemory | None = None,
    ) -> None:
        self.api = api
        self.settings = settings
        self.revisions = RevisionStore(api)
        # The operator shares one across its reconcilers and forgets deleted profiles.
        self.memory = memory if memory is not None else ConfigMapMemory()
        # The operator passes labels from its in-memory namespace index; the
        # CLI and tests fall back to reading the namespace.
        self._namespace_labels = namespace_labels or self._read_namespace_labels

    def _read_namespace_labels(self, namespace: str) -> dict[str, str] | None:
        found = self.api.get_or_none(NAMESPACES, None, namespace)
        return ((found or {}).get("metadata") or {}).get("labels")

    def _lookup(self, namespace: str) -> Callable[[str], ProfileSpec | None]:
        cache: dict[str, ProfileSpec | None] = {}

        def lookup(name: str) -> ProfileSpec | None:
            if name not in cache:
                found = self.api.get_or_none(CONFIG_PROFILES, namespace, name)
                cache[name] = parse_profile_spec(found.get("spec")) if found else None
            return cache[name]

        return lookup

    def choose_environment(self, namespace: str, spec: ProfileSpec) -> EnvironmentChoice:
        return select_environment(
            spec.environment, self._namespace_labels(namespace), self.settings.default_environment
        )

    def reconcile(
        self,
        profile: ConfigProfile,
        *,
        annotate: Callable[[dict[str, str]], None] | None = None,
        status_reported: Callable[[int], None] | None = None,
    ) -> ProfileOutcome:
        """Render ``profile`` into its ConfigMap; ``annotate``: see ``RevisionStore.publish``.

        ``status_reported(revision)`` is called as soon as the ConfigMap serves
        the revision (before the status, the index and the event are written),
        so rollouts need not wait for those writes; the reload pass takes the
        reported revision over a status it lists before the write lands.
        """
        with metrics.reconcile_measured(CONFIG_PROFILE_KIND):
            return self._reconcile(profile, annotate, status_reported)

    def _reconcile(
        self,
        profile: ConfigProfile,
        annotate: Callable[[dict[str, str]], None] | None,
        status_reported: Callable[[int], None] | None,
    ) -> ProfileOutcome:
        meta = profile["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        status = profile.get("status") or {}
        choice: EnvironmentChoice | None = None
        try:
            spec = parse_profile_spec(profile.get("spec"))
            choice = self.choose_environment(namespace, spec)
            # The budget covers render and validation (and the reads of bases,
            # which are few and fast): what the spec decides the cost of.
            with time_budget(
                RECONCILE_BUDGET_SECONDS, f"rendering {CONFIG_PROFILE_KIND} {namespace}/{name}"
            ):
                rendered = render_profile(spec, name, choice.name, self._lookup(namespace))
            written, settled = self._serve(profile, spec, rendered, choice)
        except (InvalidInputError, OwnershipError) as error:
            if isinstance(error, InvalidInputError):
                metrics.VALIDATION_FAILURES.labels(
                    kind=CONFIG_PROFILE_KIND, reason=error.reason
                ).inc()
            self._record_failure(profile, error, choice)
            raise

        revision = settled.number
        new_status: ProfileStatus = {
            "observedGeneration": meta.get("generation", 0),
            "environment": choice.name,
            "environmentSource": choice.source,
            "revision": revision,
            "configMapName": rendered.config_map_name,
            "renderedDigest": rendered.rendered.digest,
            "dependsOn": list(rendered.resolved.depends_on),
        }
        message = f"rendered revision {revision} for environment {choice.name}"
        new_status["conditions"] = ready_condition(
            status.get("conditions") or [],
            ok=True,
            reason=RENDERED_REASON,
            message=message,
            generation=meta.get("generation", 0),
        )
        # Report before the status write: what a rollout needs is the
        # ConfigMap, and the status PATCH costs it a round trip (issue 18).
        # Should the status write fail, kopf retries the reconcile, which
        # settles on the same revision and reports it again.
        if status_reported is not None:
            status_reported(revision)
        written_status = self._patch_status(profile, new_status)
        # The index after the status; from the status write's answer, whose
        # resourceVersion is current (an interruption here leaves an index
        # that lags, which the next reconcile completes).
        self.revisions.publish(
            CONFIG_PROFILES, written_status or profile, settled, annotate=annotate
        )
        # A Normal event for every change of what a running profile serves; not
        # for the very first render, which its Ready condition already reports
        # (an event is a write plus a lease in etcd: bootstrapping 1,000
        # profiles would otherwise post 1,000 events that say nothing new).
        if written and reconciled_before(profile):
            post_event(
                self.api,
                profile,
                type_="Normal",
                reason=RENDERED_REASON,
                message=f"ConfigMap {rendered.config_map_name}: {message}",
                now=now_rfc3339(),
            )
        return ProfileOutcome(
            revision,
            written,
            written_status is not None,
            rendered.resolved.depends_on,
            settled.new,
        )

    def _serve(
        self,
        profile: ConfigProfile,
        spec: ProfileSpec,
        rendered: RenderedProfile,
        choice: EnvironmentChoice,
    ) -> tuple[bool, Settled]:
        """Settle the revision and write the ConfigMap; True if its data was written.

        Remembers the ConfigMap as it now stands for the next reconcile; forgets
        it when anything goes wrong (the next reconcile reads).
        """
        meta = profile["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        name = rendered.config_map_name
        known = self.memory.get(uid) if reconciled_before(profile) else None
        if known is not None and (known.name != name or known.digest == rendered.rendered.digest):
            # The same output as remembered (a resync, a replay, a restart): read,
            # so that a ConfigMap edited or deleted by hand is repaired.
            known = None
        try:
            existing: ConfigMap | None = None
            if known is None and reconciled_before(profile):
                # A profile reconciled for the first time creates its ConfigMap
                # without reading first (a cold start of 1,000 profiles saves
                # 1,000 GETs); one that is there anyway turns the create into a
                # 409, read below.  Later reconciles read first, unless the
                # output changed and the memory has the ConfigMap.
                existing = self.api.get_or_none(CONFIG_MAPS, namespace, name)
                check_ownership(existing, uid, f"ConfigMap {name}")
            settled = self._settle_revision(profile, spec, rendered, choice, existing, known=known)
            try:
                if known is not None:
                    written, stored = True, self._replace_known(profile, rendered, known, settled)
                else:
                    written, stored = self._write_config_map(
                        profile, rendered, existing, settled.number
                    )
            except (ConflictError, NotFoundError) as error:
                # The remembered ConfigMap was edited, replaced or deleted
                # since (or the create met one): read it, never write blindly.
                if known is None and (existing is not None or isinstance(error, NotFoundError)):
                    raise
                written, stored = self._write_over_unexpected(profile, rendered, settled)
        except BaseException:
            self.memory.forget(uid)
            raise
        self.memory.remember(uid, known_config_map(stored, uid, rendered.rendered.digest))
        return written, settled

    def _settle_revision(
        self,
        profile: ConfigProfile,
        spec: ProfileSpec,
        rendered: RenderedProfile,
        choice: EnvironmentChoice,
        existing: ConfigMap | None,
        *,
        known: KnownConfigMap | None = None,
    ) -> Settled:
        """Which revision the rendered output is; a new one is snapshotted first.

        Known digests without an API call: the status (revision and rendered
        digest written together) and our ConfigMap (its label and its data,
        as read or as remembered).
        """
        meta = profile["metadata"]
        status = profile.get("status") or {}
        data = rendered.rendered.data
        digest = rendered_digest(rendered.rendered.digest)
        hints: list[tuple[int, str | None]] = []
        status_revision = parse_revision(status.get("revision"))
        if status_revision and status.get("renderedDigest"):
            hints.append((status_revision, rendered_digest(status["renderedDigest"])))
        if existing is not None and is_ours(existing, meta["uid"]):
            label = parse_revision(
                ((existing.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL)
            )
            if label and not existing.get("binaryData"):
                hints.append((label, rendered_digest(data_digest(existing.get("data") or {}))))
        if known is not None and known.revision:
            hints.append((known.revision, rendered_digest(known.digest)))
        hints.append((status_revision, None))

        def build(number: int, cause: str) -> Snapshot:
            return Snapshot(
                kind=CONFIG_PROFILE_KIND,
                number=number,
                spec=dict(profile.get("spec") or {}),
                environment=choice.name,
                rendered=dict(data),
                fingerprints={},
                digest=digest,
                change_cause=cause,
                created=now_rfc3339(),
            )

        return self.revisions.settle(
            profile, digest, build, limit=spec.revision_history_limit, hints=hints
        )

    def _write_over_unexpected(
        self, profile: ConfigProfile, rendered: RenderedProfile, settled: Settled
    ) -> tuple[bool, ConfigMap]:
        """The ConfigMap is not as assumed (a create met one, a remembered one moved): read it.

        It is written over only if it is ours, and created if it is gone.  If
        it is not ours (and does not ask to be adopted), the revision snapshot
        just recorded for this content is removed again: a revision number
        stands for content that was served.
        """
        meta = profile["metadata"]
        existing = self.api.get_or_none(CONFIG_MAPS, meta["namespace"], rendered.config_map_name)
        try:
            check_ownership(existing, meta["uid"], f"ConfigMap {rendered.config_map_name}")
        except OwnershipError:
            if settled.new:
                with contextlib.suppress(ClusterError):
                    self.revisions.prune(profile, [settled.number])
            raise
        return self._write_config_map(profile, rendered, existing, settled.number)

    def _replace_known(
        self,
        profile: ConfigProfile,
        rendered: RenderedProfile,
        known: KnownConfigMap,
        settled: Settled,
    ) -> ConfigMap:
        """PUT the new data over the remembered ConfigMap; its resourceVersion guards the write.

        The body is what ``_write_config_map`` would PUT over the ConfigMap as
        remembered (its metadata, kstrata's labels and ownerReference set);
        anything changed since makes it a ``ConflictError``.
        """
        meta = profile["metadata"]
        extra: ObjectMeta = known.extra or {}
        metadata: ObjectMeta = {
            **extra,
            "name": known.name,
            "namespace": meta["namespace"],
            "resourceVersion": known.resource_version,
            "labels": {**extra.get("labels", {}), **_desired_labels(profile, settled.number)},
            "ownerReferences": [*extra.get("ownerReferences", []), owner_reference(profile)],
        }
        body: ConfigMap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": rendered.rendered.data,
        }
        return self.api.replace(CONFIG_MAPS, meta["namespace"], body)

    def _write_config_map(
        self,
        profile: ConfigProfile,
        rendered: RenderedProfile,
        existing: ConfigMap | None,
        revision: int,
    ) -> tuple[bool, ConfigMap]:
        """Create or update the ConfigMap if anything differs.

        Returns whether its data was written, and the ConfigMap as it now stands.
        """
        meta = profile["metadata"]
        data = rendered.rendered.data
        desired_labels = _desired_labels(profile, revision)
        owner = owner_reference(profile)
        if existing is None:
            body: ConfigMap = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": rendered.config_map_name,
                    "namespace": meta["namespace"],
                    "labels": desired_labels,
                    "ownerReferences": [owner],
                },
                "data": data,
            }
            return True, self.api.create(CONFIG_MAPS, meta["namespace"], body)

        existing_meta = existing.get("metadata") or {}
        labels = dict(existing_meta.get("labels") or {})
        refs = [
            r for r in existing_meta.get("ownerReferences") or [] if not r.get("controller")
        ] + [owner]
        needs_metadata = any(labels.get(k) != v for k, v in desired_labels.items()) or not is_ours(
            existing, meta["uid"]
        )
        needs_data = (existing.get("data") or {}) != data or bool(existing.get("binaryData"))
        if not needs_metadata and not needs_data:
            return False, existing
        labels.update(desired_labels)
        updated_meta: ObjectMeta = {**existing_meta, "labels": labels, "ownerReferences": refs}
        updated: ConfigMap = {**existing, "metadata": updated_meta, "data": data}
        updated.pop("binaryData", None)
        # PUT with the resourceVersion we read: a concurrent writer makes this a
        # ConflictError, and the retry re-reads instead of overwriting blindly.
        return needs_data, self.api.replace(CONFIG_MAPS, meta["namespace"], updated)

    def _patch_status(
        self, profile: ConfigProfile, new_status: ProfileStatus
    ) -> ConfigProfile | None:
        return patch_status_if_changed(self.api, CONFIG_PROFILES, profile, new_status)

    def _record_failure(
        self, profile: ConfigProfile, error: KstrataError, choice: EnvironmentChoice | None
    ) -> None:
        """Ready=False with the reason, a Warning event when the reason is new; no data write."""
        record_failure(self.api, CONFIG_PROFILES, profile, error, choice)


def _desired_labels(profile: ConfigProfile, revision: int) -> dict[str, str]:
    """The labels kstrata sets on a profile's ConfigMap."""
    return {
        MANAGED_BY_LABEL: MANAGER,
        PROFILE_LABEL: profile["metadata"]["name"],
        REVISION_LABEL: str(revision),
    }
