"""Revision history in the cluster: ControllerRevisions owned by ConfigProfiles and SealedSecrets.

Why this module exists: the reconcilers (``kstrata.app.profiles``,
``kstrata.app.sealed_secrets``) decide *what* to write; this module decides
*which revision number* that content is, stores its snapshot, prunes old
ones, and keeps the small index on the resource.  The CLI reads history
through :class:`RevisionStore` as well.  Formats live in
``kstrata.domain.revisions``; cluster access goes through ``KubeApi`` only.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from kstrata.domain.profile import MAX_REVISION_HISTORY_LIMIT, MIN_REVISION_HISTORY_LIMIT
from kstrata.domain.revisions import (
    DEFAULT_HISTORY_LIMIT,
    HistoryEntry,
    Snapshot,
    change_cause_for,
    decode_history,
    decode_snapshot,
    encode_history,
    encode_snapshot,
    history_entry,
    parse_revision,
    retained_numbers,
    revision_object_name,
    same_digest,
)
from kstrata.errors import ConflictError, DocumentError, RevisionNotFoundError
from kstrata.kube.api import CONTROLLER_REVISIONS, JSON, KubeApi, Resource, owner_reference
from kstrata.wellknown import (
    CHANGE_CAUSE_ANNOTATION,
    HISTORY_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGER,
    OWNER_KIND_LABEL,
    OWNER_UID_LABEL,
    REVISION_ANNOTATION,
)

logger = logging.getLogger(__name__)

MIN_HISTORY_LIMIT: Final = MIN_REVISION_HISTORY_LIMIT
MAX_HISTORY_LIMIT: Final = MAX_REVISION_HISTORY_LIMIT


#: Builds the snapshot of revision ``number`` with ``change_cause`` for the content at hand.
SnapshotBuilder = Callable[[int, str], Snapshot]


@dataclass(frozen=True)
class Settled:
    """Which revision the content at hand is, and what the index on the resource should say."""

    number: int
    #: True when this content is a new revision (its ControllerRevision was just
    #: created, or found created by an interrupted earlier attempt).
    new: bool
    #: The annotations to merge onto the resource, or None when they are already right.
    annotations: dict[str, str] | None
    #: Old revisions beyond the history limit, deleted by ``publish``: after the
    #: target write, so pruning never delays the new content.
    prune: tuple[int, ...] = ()


def _meta(obj: JSON) -> JSON:
    meta: JSON = obj.get("metadata") or {}
    return meta


def _annotations(obj: JSON) -> dict[str, str]:
    return dict(_meta(obj).get("annotations") or {})


def owner_selector(owner: JSON) -> str:
    return f"{OWNER_UID_LABEL}={_meta(owner)['uid']}"


def _number_of(revision: JSON) -> int:
    return parse_revision(revision.get("revision"))


class RevisionStore:
    """Snapshots of one resource's revisions, as ControllerRevisions in its namespace."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    # --- reading (also used by the CLI) ----------------------------------

    def _owned(self, owner: JSON) -> dict[int, JSON]:
        """This owner's ControllerRevisions by number (one list call)."""
        meta = _meta(owner)
        found = self.api.list(
            CONTROLLER_REVISIONS, meta["namespace"], label_selector=owner_selector(owner)
        )
        return {_number_of(item): item for item in found if _number_of(item) > 0}

    def history(self, owner: JSON) -> list[Snapshot]:
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

    def _get_object(self, owner: JSON, number: int) -> JSON | None:
        meta = _meta(owner)
        name = revision_object_name(str(owner.get("kind")), meta["name"], number)
        found = self.api.get_or_none(CONTROLLER_REVISIONS, meta["namespace"], name)
        # A same-named object of an earlier incarnation of the owner (not yet
        # garbage-collected) is not ours.
        if found is None or (_meta(found).get("labels") or {}).get(OWNER_UID_LABEL) != meta["uid"]:
            return None
        return found

    def get(self, owner: JSON, number: int) -> Snapshot:
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

    def _body(self, owner: JSON, snapshot: Snapshot) -> JSON:
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

    def record(self, owner: JSON, snapshot: Snapshot) -> Snapshot:
        """Store ``snapshot``; idempotent by name.  Returns what is stored under that number.

        An existing revision with the same digest is returned as is (its
        cause and time stay those of the first attempt); one with another
        digest is a lost race: ``ConflictError``.
        """
        body = self._body(owner, snapshot)  # encodes first: too large raises before any write
        try:
            self.api.create(CONTROLLER_REVISIONS, _meta(owner)["namespace"], body)
        except ConflictError:
            existing = self._get_object(owner, snapshot.number)
            stored = decode_snapshot(existing.get("data"), snapshot.number) if existing else None
            if stored is not None and stored.digest == snapshot.digest:
                return stored
            raise
        return snapshot

    def prune(self, owner: JSON, numbers: Iterable[int]) -> None:
        meta = _meta(owner)
        for number in sorted(numbers):
            name = revision_object_name(str(owner.get("kind")), meta["name"], number)
            self.api.delete(CONTROLLER_REVISIONS, meta["namespace"], name)

    def settle(
        self,
        owner: JSON,
        digest: str,
        build: SnapshotBuilder,
        *,
        limit: int,
        hints: Sequence[tuple[int, str | None]] = (),
    ) -> Settled:
        """The revision number of the content with ``digest``, recording it if it is new.

        ``hints`` are (revision, digest) pairs the caller knows without an
        API call (``status.revision`` with the rendered digest; the target's
        revision label with the digest it carries).  Writes: at most one
        ControllerRevision create, and only when the content is new (or the
        index lags, once); what to prune is left to ``publish``.
        """
        annotations = _annotations(owner)
        index = decode_history(annotations.get(HISTORY_ANNOTATION))
        by_number = {entry.number: entry for entry in index}
        known = max(
            [parse_revision(annotations.get(REVISION_ANNOTATION)), *by_number]
            + [number for number, _ in hints]
        )
        current: str | None = None
        current_snapshot: Snapshot | None = None
        if known > 0:
            entry = by_number.get(known)
            current = entry.digest if entry is not None else None
            current = current or next((d for n, d in hints if n == known and d), None)
            if current is None:
                current_snapshot = self._get_snapshot(owner, known)
                current = current_snapshot.digest if current_snapshot else None
        if known > 0 and same_digest(digest, current):
            return self._unchanged(
                owner,
                number=known,
                index=index,
                build=build,
                current=current_snapshot,
                limit=limit,
            )
        return self._new(owner, known=known, digest=digest, index=index, build=build, limit=limit)

    def _get_snapshot(self, owner: JSON, number: int) -> Snapshot | None:
        found = self._get_object(owner, number)
        if found is None:
            return None
        try:
            return decode_snapshot(found.get("data"), number)
        except DocumentError:
            return None

    def _new(
        self,
        owner: JSON,
        *,
        known: int,
        digest: str,
        index: list[HistoryEntry],
        build: SnapshotBuilder,
        limit: int,
    ) -> Settled:
        indexed = {e.number: e for e in index}
        cause_annotation = _annotations(owner).get(CHANGE_CAUSE_ANNOTATION)
        if known == 0 or known in indexed:
            # The usual case: the index is complete, so N+1 is a guess that
            # is almost always right, and no list call is needed.  A create
            # that meets another snapshot under that name falls back to listing.
            previous = indexed.get(known)
            cause = change_cause_for(cause_annotation, previous.change_cause if previous else "")
            try:
                snapshot = self.record(owner, build(known + 1, cause))
            except ConflictError:
                pass
            else:
                keep = retained_numbers(snapshot.number, limit)
                stale = tuple(sorted(n for n in indexed if n < keep.start))
                entries = {n: e for n, e in indexed.items() if n in keep}
                entries[snapshot.number] = history_entry(snapshot)
                patch = self._index_patch(owner, snapshot.number, entries.values(), limit)
                return Settled(snapshot.number, True, patch, stale)
        return self._new_listed(
            owner, known=known, digest=digest, indexed=indexed, build=build, limit=limit
        )

    def _new_listed(
        self,
        owner: JSON,
        *,
        known: int,
        digest: str,
        indexed: dict[int, HistoryEntry],
        build: SnapshotBuilder,
        limit: int,
    ) -> Settled:
        """A new revision when the index cannot be trusted to know every stored number."""
        owned = self._owned(owner)
        top = max(owned, default=0)
        snapshot = _decode_or_none(owned[top], top) if top > known else None
        if snapshot is None or snapshot.digest != digest:
            # Not an interrupted earlier attempt at this very content: a new number.
            previous = indexed.get(known)
            previous_cause = previous.change_cause if previous is not None else ""
            if previous is None and known in owned:
                stored = _decode_or_none(owned[known], known)
                previous_cause = stored.change_cause if stored is not None else ""
            cause = change_cause_for(
                _annotations(owner).get(CHANGE_CAUSE_ANNOTATION), previous_cause
            )
            snapshot = self.record(owner, build(max(known, top) + 1, cause))
        keep = retained_numbers(snapshot.number, limit)
        stale = tuple(sorted(n for n in owned if n < keep.start))
        entries: dict[int, HistoryEntry] = {}
        for number in sorted(n for n in owned if n in keep):
            if number in indexed:
                entries[number] = indexed[number]
            elif (stored := _decode_or_none(owned[number], number)) is not None:
                entries[number] = history_entry(stored)
        entries[snapshot.number] = history_entry(snapshot)
        patch = self._index_patch(owner, snapshot.number, entries.values(), limit)
        return Settled(snapshot.number, True, patch, stale)

    def _unchanged(
        self,
        owner: JSON,
        *,
        number: int,
        index: list[HistoryEntry],
        build: SnapshotBuilder,
        current: Snapshot | None,
        limit: int,
    ) -> Settled:
        keep = retained_numbers(number, limit)
        in_index = {e.number for e in index}
        stale = [n for n in in_index if n < keep.start]
        if number in in_index and not stale:
            return Settled(number, False, self._index_patch(owner, number, index, limit))
        entries = {e.number: e for e in index if e.number in keep}
        owned: dict[int, JSON] | None = None
        if stale:
            # The limit was lowered: prune what is stored beyond it.
            owned = self._owned(owner)
        if number not in entries:
            # The index lags the content (an upgrade from a version without
            # history, or a crash after the target write, perhaps more than
            # one in a row): index every retained revision it misses, not only
            # the current one, since pruning goes by the index.
            owned = owned if owned is not None else self._owned(owner)
            for stored in sorted(n for n in owned if n in keep and n not in entries):
                if (found := _decode_or_none(owned[stored], stored)) is not None:
                    entries[stored] = history_entry(found)
        if number not in entries:
            # Make sure the current revision has a snapshot, then index it.
            snapshot = current or self._get_snapshot(owner, number)
            if snapshot is None:
                cause = change_cause_for(
                    _annotations(owner).get(CHANGE_CAUSE_ANNOTATION),
                    index[-1].change_cause if index else "",
                )
                snapshot = self.record(owner, build(number, cause))
            entries[number] = history_entry(snapshot)
        prune = tuple(sorted(n for n in owned or () if n < keep.start))
        index_patch = self._index_patch(owner, number, entries.values(), limit)
        return Settled(number, False, index_patch, prune)

    def _index_patch(
        self, owner: JSON, number: int, entries: Iterable[HistoryEntry], limit: int
    ) -> dict[str, str] | None:
        annotations = _annotations(owner)
        desired = {
            REVISION_ANNOTATION: str(number),
            HISTORY_ANNOTATION: encode_history(list(entries), limit=limit + 1),
        }
        if all(annotations.get(k) == v for k, v in desired.items()):
            return None
        return desired

    def publish(
        self,
        resource: Resource,
        owner: JSON,
        settled: Settled,
        *,
        annotate: Callable[[dict[str, str]], None] | None = None,
    ) -> bool:
        """Prune what ``settled`` retires, then merge the index annotations; True if written.

        Called after the target write.  Pruning comes before the index: an
        interrupted publish leaves an index naming a deleted revision (the
        next reconcile rewrites it), never a stored revision no index names.

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
        if settled.prune:
            self.prune(owner, settled.prune)
        if settled.annotations is None:
            return False
        if annotate is not None and HISTORY_ANNOTATION not in _annotations(owner):
            annotate(dict(settled.annotations))
            return True
        if _index_covers(owner, settled):
            return False
        meta = _meta(owner)
        try:
            self._patch_index(resource, owner, settled.annotations)
        except ConflictError:
            fresh = self.api.get(resource, meta["namespace"], meta["name"])
            if _meta(fresh).get("uid") != meta.get("uid"):
                raise
            if _index_covers(fresh, settled):
                return False
            self._patch_index(resource, fresh, settled.annotations)
        return True

    def _patch_index(self, resource: Resource, owner: JSON, annotations: dict[str, str]) -> None:
        meta = _meta(owner)
        patch: JSON = {
            "metadata": {"resourceVersion": meta.get("resourceVersion"), "annotations": annotations}
        }
        self.api.patch(resource, meta["namespace"], meta["name"], patch)


def _index_covers(owner: JSON, settled: Settled) -> bool:
    """Whether ``owner``'s index already says what ``settled`` would, or a later revision."""
    current = _annotations(owner)
    desired = settled.annotations or {}
    return parse_revision(current.get(REVISION_ANNOTATION)) > settled.number or all(
        current.get(k) == v for k, v in desired.items()
    )


def history_limit(value: object) -> int:
    """``spec.revisionHistoryLimit`` as given, or the default when absent or out of bounds.

    The CRD schema already enforces the bounds; this guards against an older
    CRD or a direct write, without failing the reconcile over it.
    """
    if type(value) is int and MIN_HISTORY_LIMIT <= value <= MAX_HISTORY_LIMIT:
        return value
    return DEFAULT_HISTORY_LIMIT


def _decode_or_none(item: JSON, number: int) -> Snapshot | None:
    try:
        return decode_snapshot(item.get("data"), number)
    except DocumentError:
        return None
