"""Revision history in the cluster: ControllerRevisions owned by ConfigProfiles and SealedSecrets.

Why this module exists: the reconcilers (``kstrata.app.profiles``,
``kstrata.app.sealed_secrets``) decide *what* to write; this module finds
out *which revision number* that content is, stores its snapshot, prunes old
ones, and keeps the small index on the resource.  The CLI reads history
through :class:`RevisionStore` as well.  Formats live in
``kstrata.domain.revisions``; cluster access goes through ``KubeApi`` only.

The decision is one pure function, ``domain.revisions.plan_revision``: this
module is its executor.  ``RevisionStore.settle`` reads what the plan asks
for (usually nothing: a revision or a list only when the index cannot
answer), calls it again with the answer, and runs the steps before the
served object's write (the snapshot create; a create that meets a 409 adds
what it found and asks again); ``RevisionStore.publish`` runs the steps
after it (prune, then the index).  The rules below are what the plan
implements.

The rules
---------

* **A revision is a content change.**  Content is identified by a digest
  (the rendered ConfigMap data for profiles, the sealed tokens in effect for
  SealedSecrets).  The reconcile compares the digest it is about to write with
  the digest of the *current* revision; only a difference makes revision
  N+1.  Drift of the target (a ConfigMap edited or deleted by hand), an
  operator restart, a metadata-only edit or a re-apply of the same content
  keep N and write no snapshot.
* **N** is the highest of ``status.revision``, the target's
  ``kstrata.dev/revision`` label, the resource's ``kstrata.dev/revision``
  annotation and the history index, so a steady-state reconcile costs no API
  call here.  A new revision is first tried as N+1 directly (the index names
  every retained snapshot in the usual case); the ControllerRevisions are
  listed only when that name is taken by other content or the index is
  incomplete, and then the highest stored number counts too.
* **Deterministic names make creation idempotent** (``<name>-cfp-<N>``).  The
  order of writes is ControllerRevision, then the ConfigMap/Secret, then
  status (what reload passes act on, so it comes as early as it can), then
  the resource's annotations (a resource's *first* index goes with kopf's
  PATCH after the handler; a crash in between leaves an index that lags,
  which the next reconcile completes).  If the operator dies after the
  ControllerRevision and before the target write, the next reconcile finds
  revision N+1 already stored with the digest it is about to write and reuses
  it instead of making N+2.  A stored N+1 with *another* digest (the spec was
  changed back meanwhile, or a concurrent reconcile with an older body) is
  left alone and the new content becomes N+2: numbers never repeat and never
  skip, and every number has exactly one snapshot.  (With two writers, a
  failover overlap, one that stored N+1 from a stale body and then lost the
  target write leaves N+1 unserved and unindexed above the served N; the
  next new content becomes N+2.)  Creating a name that
  exists (409) is resolved the same way: same digest, it is ours; otherwise
  ``ConflictError`` and kopf retries with a fresh look.
* **Retention**: the current revision plus ``spec.revisionHistoryLimit`` old
  ones (default 10, as Deployments).  Pruning is decided when a revision is
  created, or when the index shows more than that (the limit was lowered),
  and done by ``publish``, after the ConfigMap/Secret write and before the
  index, so it never delays the new content.
  Rolling back is the CLI writing an old spec back: to the operator an
  ordinary content change (N+1), or no change at all if it renders the
  current content.
* **The index on the resource** (``kstrata.dev/revision`` and
  ``kstrata.dev/revision-history``) is written with a JSON merge patch that
  touches only those two annotations and carries the last resourceVersion
  seen (the status write's answer), so it can neither clobber a user's edit
  nor a newer index (409 →
  ``ConflictError`` → retried).  It is written only when it differs, so a
  resync or restart writes nothing; the kopf update handlers watch ``spec``
  only, so this write does not re-trigger them.
* **Change cause**: ``kubernetes.io/change-cause`` on the resource, recorded
  for a new revision only if it differs from the cause of the previous
  revision ("" otherwise), because that annotation outlives the change it
  describes (``kubectl apply`` after ``kstrata set`` keeps the old text).
* **Too large**: a snapshot that cannot be stored even compressed raises
  ``SnapshotTooLargeError`` before anything is written; the reconciler turns
  it into a Ready=False condition and the last good ConfigMap/Secret keeps
  serving.  Nothing retries until the spec changes.
* SealedSecret snapshots hold the spec (ciphertext), the environment, the
  sealed digest and keyed fingerprints: never plaintext.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from kstrata.app.toolkit import now_rfc3339
from kstrata.domain.profile import MAX_REVISION_HISTORY_LIMIT, MIN_REVISION_HISTORY_LIMIT
from kstrata.domain.revisions import (
    DEFAULT_HISTORY_LIMIT,
    ListRevisions,
    LostRace,
    Prune,
    ReadRevision,
    RevisionFacts,
    RevisionPlan,
    Serve,
    Snapshot,
    Step,
    StoreSnapshot,
    WriteIndex,
    decode_snapshot,
    encode_snapshot,
    parse_revision,
    plan_revision,
    revision_object_name,
)
from kstrata.errors import ConflictError, DocumentError, RevisionNotFoundError
from kstrata.kube.api import CONTROLLER_REVISIONS, KubeClient, Resource, owner_reference
from kstrata.payloads import ControllerRevision, KubeObject, ObjectMeta
from kstrata.wellknown import (
    HISTORY_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGER,
    OWNER_KIND_LABEL,
    OWNER_UID_LABEL,
)

logger = logging.getLogger(__name__)

MIN_HISTORY_LIMIT: Final = MIN_REVISION_HISTORY_LIMIT
MAX_HISTORY_LIMIT: Final = MAX_REVISION_HISTORY_LIMIT
#: More decisions than one settle can need (see ``settle``): a bound, not a tuning knob.
_MAX_DECISIONS: Final = 8


#: Builds the snapshot of revision ``number`` with ``change_cause`` for the content at hand
#: (its ``created`` is replaced by the plan's, which the index entry was planned with).
SnapshotBuilder = Callable[[int, str], Snapshot]


@dataclass(frozen=True)
class Settled:
    """Which revision the content at hand is, and what ``publish`` still has to write."""

    number: int
    #: True when this content is a new revision (its ControllerRevision was just
    #: created, or found created by an interrupted earlier attempt).
    new: bool
    #: The plan's steps after the target write, in order: pruning, then the index.
    steps: tuple[Step, ...] = ()

    @property
    def annotations(self) -> dict[str, str] | None:
        """The annotations to merge onto the resource, or None when they are already right."""
        index = [step for step in self.steps if isinstance(step, WriteIndex)]
        return dict(index[0].annotations) if index else None


def _meta(obj: KubeObject) -> ObjectMeta:
    return obj.get("metadata") or {}


def _annotations(obj: KubeObject) -> dict[str, str]:
    return dict(_meta(obj).get("annotations") or {})


def owner_selector(owner: KubeObject) -> str:
    return f"{OWNER_UID_LABEL}={_meta(owner)['uid']}"


def _number_of(revision: ControllerRevision) -> int:
    return parse_revision(revision.get("revision"))


class RevisionStore:
    """Snapshots of one resource's revisions, as ControllerRevisions in its namespace."""

    def __init__(self, api: KubeClient) -> None:
        self.api = api

    # --- reading (also used by the CLI) ----------------------------------

    def _owned(self, owner: KubeObject) -> dict[int, ControllerRevision]:
        """This owner's ControllerRevisions by number (one list call)."""
        meta = _meta(owner)
        found = self.api.list(
            CONTROLLER_REVISIONS, meta["namespace"], label_selector=owner_selector(owner)
        )
        return {_number_of(item): item for item in found if _number_of(item) > 0}

    def history(self, owner: KubeObject) -> list[Snapshot]:
        """Every retained snapshot, oldest first; unreadable ones are skipped (and logged)."""
        snapshots: list[Snapshot] = []
        for number, item in sorted(self._owned(owner).items()):
            try:
                snapshots.append(decode_snapshot(item.get("data"), number))
            except DocumentError as error:
                logger.warning(
                    "%s %s/%s: revision %d unreadable: %s",
                    owner.get("kind"),
                    _meta(owner).get("namespace"),
                    _meta(owner).get("name"),
                    number,
                    error,
                )
        return snapshots

    def _get_object(self, owner: KubeObject, number: int) -> ControllerRevision | None:
        meta = _meta(owner)
        name = revision_object_name(str(owner.get("kind")), meta["name"], number)
        found = self.api.get_or_none(CONTROLLER_REVISIONS, meta["namespace"], name)
        # A same-named object of an earlier incarnation of the owner (not yet
        # garbage-collected) is not ours.
        if found is None or (_meta(found).get("labels") or {}).get(OWNER_UID_LABEL) != meta["uid"]:
            return None
        return found

    def get(self, owner: KubeObject, number: int) -> Snapshot:
        """Revision ``number``; ``RevisionNotFoundError`` if it is not retained."""
        found = self._get_object(owner, number)
        if found is None:
            meta = _meta(owner)
            raise RevisionNotFoundError(
                f"{owner.get('kind')} {meta.get('namespace')}/{meta.get('name')}: "
                f"revision {number} is not in the retained history; kstrata history "
                f"{meta.get('name')} -n {meta.get('namespace')} lists the retained ones"
            )
        return decode_snapshot(found.get("data"), number)

    # --- writing (the reconcilers) ----------------------------------------

    def _body(self, owner: KubeObject, snapshot: Snapshot) -> ControllerRevision:
        meta = _meta(owner)
        return {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": revision_object_name(snapshot.kind, meta["name"], snapshot.number),
                "namespace": meta["namespace"],
                "labels": {
                    OWNER_UID_LABEL: meta["uid"],
                    OWNER_KIND_LABEL: snapshot.kind,
                    MANAGED_BY_LABEL: MANAGER,
                },
                "ownerReferences": [owner_reference(owner)],
            },
            "revision": snapshot.number,
            "data": encode_snapshot(snapshot),
        }

    def _create(self, owner: KubeObject, snapshot: Snapshot) -> None:
        """Create the ControllerRevision of ``snapshot``; ``ConflictError`` if the name is taken."""
        body = self._body(owner, snapshot)  # encodes first: too large raises before any write
        self.api.create(CONTROLLER_REVISIONS, _meta(owner)["namespace"], body)

    def record(self, owner: KubeObject, snapshot: Snapshot) -> Snapshot:
        """Store ``snapshot``; idempotent by name.  Returns what is stored under that number.

        An existing revision with the same digest is returned as is (its
        cause and time stay those of the first attempt); one with another
        digest is a lost race: ``ConflictError``.
        """
        try:
            self._create(owner, snapshot)
        except ConflictError:
            existing = self._get_object(owner, snapshot.number)
            stored = decode_snapshot(existing.get("data"), snapshot.number) if existing else None
            if stored is not None and stored.digest == snapshot.digest:
                return stored
            raise
        return snapshot

    def prune(self, owner: KubeObject, numbers: Iterable[int]) -> None:
        meta = _meta(owner)
        for number in sorted(numbers):
            name = revision_object_name(str(owner.get("kind")), meta["name"], number)
            self.api.delete(CONTROLLER_REVISIONS, meta["namespace"], name)

    def settle(
        self,
        owner: KubeObject,
        digest: str,
        build: SnapshotBuilder,
        *,
        limit: int,
        hints: Sequence[tuple[int, str | None]] = (),
    ) -> Settled:
        """The revision number of the content with ``digest``, recording it if it is new.

        ``hints`` are (revision, digest) pairs the caller knows without an
        API call (``status.revision`` with the rendered digest; the target's
        revision label with the digest it carries).  The decision is
        ``plan_revision``'s; this gathers what it asks for and runs the
        steps before the served object's write (at most one
        ControllerRevision create, and only when the content is new or its
        snapshot is missing); ``publish`` runs the rest.
        """
        facts = RevisionFacts(
            kind=str(owner.get("kind")),
            digest=digest,
            limit=limit,
            annotations=_annotations(owner),
            hints=tuple(hints),
            now=now_rfc3339(),
        )
        # Each pass adds a fact the plan did not have (a read, the list, a taken
        # name), and it asks for each at most once: five passes at the most.
        for _ in range(_MAX_DECISIONS):
            plan = plan_revision(facts)
            if isinstance(plan, ReadRevision):
                found = self._get_object(owner, plan.number)
                read = found.get("data") if found is not None else None
                facts = replace(facts, read={**facts.read, plan.number: read})
            elif isinstance(plan, ListRevisions):
                stored = {n: item.get("data") for n, item in self._owned(owner).items()}
                facts = replace(facts, stored=stored)
            elif isinstance(plan, LostRace):
                raise ConflictError(
                    f"revision {plan.number} was stored with other content meanwhile"
                )
            elif (taken := self._run_before_serving(owner, plan, build)) is not None:
                facts = replace(facts, taken={**facts.taken, **taken})
            else:
                return Settled(plan.number, plan.new, plan.after_serve())
        raise ConflictError("the stored revisions kept changing while deciding the next one")

    def _run_before_serving(
        self, owner: KubeObject, plan: RevisionPlan, build: SnapshotBuilder
    ) -> dict[int, object | None] | None:
        """Store what ``plan`` stores; a name found taken is returned (number -> what is there)."""
        for step in plan.steps:
            if isinstance(step, Serve):
                break
            if isinstance(step, StoreSnapshot):
                snapshot = replace(build(step.number, step.change_cause), created=step.created)
                try:
                    self._create(owner, snapshot)
                except ConflictError:
                    found = self._get_object(owner, step.number)
                    return {step.number: found.get("data") if found is not None else None}
        return None

    def publish(
        self,
        resource: Resource[KubeObject],
        owner: KubeObject,
        settled: Settled,
        *,
        annotate: Callable[[dict[str, str]], None] | None = None,
    ) -> bool:
        """Run the plan's steps after the target write (prune, index); True if it wrote the index.

        Pruning comes before the index: an interrupted publish leaves an index
        naming a deleted revision (the next reconcile rewrites it), never a
        stored revision no index names.

        The first index of a resource can be handed to ``annotate`` instead:
        the operator adds it to the patch kopf writes after every handler
        anyway, so a cold start of many new resources makes one write per
        resource instead of two.  That patch cannot carry a resourceVersion
        (the handler's own status write moved it), so it is used only where
        there is no index yet to overwrite.

        Every other publish carries the resourceVersion of ``owner`` (the
        body read, or the answer to the status write that came just before),
        so an index computed from stale knowledge never overwrites a newer
        one (a second operator replica racing this one during a hand-over).
        An ``owner`` that already says this or a later revision needs nothing.
        On a conflict (often just another reconcile of the same object, or
        kopf's bookkeeping) the resource is read again and checked the same
        way, and the patch is retried once on the fresh version; a second
        conflict is a ``ConflictError`` for the caller.
        """
        written = False
        for step in settled.steps:
            if isinstance(step, Prune):
                self.prune(owner, step.numbers)
            elif isinstance(step, WriteIndex):
                written = self._write_index(resource, owner, step, annotate)
        return written

    def _write_index(
        self,
        resource: Resource[KubeObject],
        owner: KubeObject,
        step: WriteIndex,
        annotate: Callable[[dict[str, str]], None] | None,
    ) -> bool:
        if annotate is not None and HISTORY_ANNOTATION not in _annotations(owner):
            annotate(dict(step.annotations))
            return True
        if step.covered_by(_annotations(owner)):
            return False
        meta = _meta(owner)
        try:
            self._patch_index(resource, owner, step.annotations)
        except ConflictError:
            fresh = self.api.get(resource, meta["namespace"], meta["name"])
            if _meta(fresh).get("uid") != meta.get("uid"):
                raise
            if step.covered_by(_annotations(fresh)):
                return False
            self._patch_index(resource, fresh, step.annotations)
        return True

    def _patch_index(
        self, resource: Resource[KubeObject], owner: KubeObject, annotations: Mapping[str, str]
    ) -> None:
        meta = _meta(owner)
        patch = {
            "metadata": {
                "resourceVersion": meta.get("resourceVersion"),
                "annotations": dict(annotations),
            }
        }
        self.api.patch(resource, meta["namespace"], meta["name"], patch)


def history_limit(value: object) -> int:
    """``spec.revisionHistoryLimit`` as given, or the default when absent or out of bounds.

    The CRD schema already enforces the bounds; this guards against an older
    CRD or a direct write, without failing the reconcile over it.
    """
    if type(value) is int and MIN_HISTORY_LIMIT <= value <= MAX_HISTORY_LIMIT:
        return value
    return DEFAULT_HISTORY_LIMIT
