"""Revision snapshots and the compact history index: the pure half of revision history.

Why this module exists: every change of a ConfigProfile's rendered output and
every change of a SealedSecret's sealed data becomes revision N+1.  The
operator (``kstrata.app.revisions``) stores one snapshot per revision in an
``apps/v1`` ``ControllerRevision`` owned by the resource, and keeps a small
index of the retained revisions in annotations on the resource itself; the
CLI (``kstrata history``, ``diff``, ``rollback``) reads both.  This module
defines both formats, and nothing else: no kopf, no Kubernetes client, no I/O,
so both sides share one definition and it is tested with fast unit tests.

Formats
-------

* A **snapshot** (:class:`Snapshot`) is what one revision was: the spec that
  produced it (for SealedSecrets that is ciphertext only: the spec never holds
  plaintext), the environment, the rendered ConfigMap data (profiles) or the
  items' keyed fingerprints (SealedSecrets), a digest, the change cause and
  the creation time.  :func:`encode_snapshot` turns it into the
  ControllerRevision's ``data``: a plain JSON object tagged with
  :data:`SNAPSHOT_FORMAT`; above :data:`COMPRESS_ABOVE` bytes the same
  document is gzipped and base64-encoded into ``payload`` (configurations are
  text and typically shrink 3 to 10 times).  A snapshot whose encoded form is
  still over :data:`MAX_SNAPSHOT_BYTES` (etcd refuses requests over 1.5 MiB)
  raises ``SnapshotTooLargeError``: the caller reports a condition instead of
  retrying forever.
* The **history index** (:func:`encode_history`) is compact, deterministic
  JSON in the ``kstrata.dev/revision-history`` annotation: one array
  ``[number, created, change cause, short digest or null]`` per retained
  revision, oldest first.  It is bounded (at most :data:`MAX_HISTORY_ENTRIES`
  entries, causes cut to :data:`MAX_CAUSE_CHARS`), so the annotation stays a
  few KiB even at the largest history limit.  It is an index only: the
  snapshots are authoritative, and :func:`decode_history` is tolerant (a
  malformed annotation reads as an empty history, never as an error).

Naming: :func:`revision_object_name` gives each revision a deterministic
name (``<name>-cfp-<N>`` / ``<name>-kss-<N>``), which is what makes "create
revision N" idempotent for the operator.

The plan
--------

:func:`plan_revision` is the whole decision of revision bookkeeping, pure:
from what is known (:class:`RevisionFacts`: the resource's index
annotations, the digest of the content at hand, the history limit, the
caller's hints, and whatever the cluster was asked) it returns either a
:class:`RevisionPlan` (the revision number, and the writes in their
crash-safe order: :class:`StoreSnapshot`, :class:`Serve`, :class:`Prune`,
:class:`WriteIndex`) or what it needs to know first (:class:`ReadRevision`,
:class:`ListRevisions`), or that another writer won (:class:`LostRace`).
``kstrata.app.revisions`` gathers, calls and executes; the rules it
implements are written down there.  Being pure, the rules are tested by
property tests against a model of the cluster, crashes included.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final, Literal

from kstrata.domain.jsonvalue import JSONObject
from kstrata.errors import DocumentError, SnapshotTooLargeError
from kstrata.wellknown import (
    CHANGE_CAUSE_ANNOTATION,
    CONFIG_PROFILE_KIND,
    CONFIG_PROFILE_SHORT_NAME,
    HISTORY_ANNOTATION,
    REVISION_ANNOTATION,
    SEALED_SECRET_KIND,
    SEALED_SECRET_SHORT_NAME,
    SNAPSHOT_FORMAT,
)

DEFAULT_HISTORY_LIMIT: Final = 10

#: Name infix per kind: short, so long resource names keep most of their name.
_KIND_INFIX: Final = {
    CONFIG_PROFILE_KIND: CONFIG_PROFILE_SHORT_NAME,
    SEALED_SECRET_KIND: SEALED_SECRET_SHORT_NAME,
}

#: Encoded snapshots above this size are gzipped (small ones stay readable
#: with ``kubectl get controllerrevision -o yaml``).
COMPRESS_ABOVE: Final = 16 * 1024
#: Largest encoded ``data`` stored.  etcd's default request limit is 1.5 MiB
#: (1,572,864 bytes) for the whole object; this leaves room for metadata.
MAX_SNAPSHOT_BYTES: Final = 1_400_000
#: Largest document a compressed payload may expand to (a gzip bomb guard).
MAX_DECODED_BYTES: Final = 16 * 1024 * 1024
ENCODING_GZIP: Final = "gzip+base64"

#: History index bounds: the API allows at most 100 old revisions plus the current one.
MAX_HISTORY_ENTRIES: Final = 101
MAX_CAUSE_CHARS: Final = 200
SHORT_DIGEST_CHARS: Final = 16
_NAME_MAX: Final = 253
_HASH_CHARS: Final = 10
_DIGEST_PREFIX: Final = "sha256:"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Snapshot:
    """One revision of a ConfigProfile or SealedSecret, as stored in its ControllerRevision."""

    kind: str  # "ConfigProfile" | "SealedSecret"
    number: int
    #: The resource spec that produced this revision (SealedSecret: ciphertexts only).
    spec: JSONObject
    #: The environment it was rendered or unsealed for.
    environment: str
    #: ConfigProfile: the ConfigMap data exactly as written; SealedSecret: {}.
    rendered: dict[str, str]
    #: SealedSecret: item key -> keyed fingerprint (as in status); ConfigProfile: {}.
    fingerprints: dict[str, str]
    #: ConfigProfile: "sha256:<hex>" of the rendered data; SealedSecret: the sealed digest.
    digest: str
    #: "" when none.
    change_cause: str
    #: RFC 3339 UTC.
    created: str


@dataclass(frozen=True)
class HistoryEntry:
    """One line of the history index on the resource."""

    number: int
    created: str
    change_cause: str
    #: Profiles only: the first :data:`SHORT_DIGEST_CHARS` hex digits of the rendered digest.
    digest: str | None


# --- names ---------------------------------------------------------------


def revision_object_name(kind: str, name: str, number: int) -> str:
    """The ControllerRevision name of revision ``number`` of ``kind``/``name``.

    ``payments-cfp-7`` for a ConfigProfile, ``db-kss-3`` for a SealedSecret.
    Always a valid DNS subdomain of at most 253 characters: a name too long
    to take the suffix is cut and made unique again with a hash of the whole
    name.
    """
    infix = _KIND_INFIX.get(kind)
    if infix is None:
        raise ValueError(f"no revisions for kind {kind!r}")
    if number < 0:
        raise ValueError("revision numbers are not negative")
    suffix = f"-{infix}-{number}"
    candidate = f"{name}{suffix}"
    if len(candidate) <= _NAME_MAX and _DNS_SUBDOMAIN.match(candidate):
        return candidate
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    room = _NAME_MAX - len(suffix) - _HASH_CHARS - 1
    stem = re.sub(r"[^a-z0-9.-]", "-", name.lower())[:room].strip(".-")
    stem = re.sub(r"\.(?=[.-])|-(?=\.)", "", stem)  # no empty or dashed dot-labels
    return f"{stem}-{digest}{suffix}" if stem else f"{digest}{suffix}"


# --- digests and change causes -------------------------------------------


def rendered_digest(hex_digest: str) -> str:
    """The snapshot digest of a profile from ``RenderedConfig.digest`` (hex)."""
    return hex_digest if hex_digest.startswith(_DIGEST_PREFIX) else _DIGEST_PREFIX + hex_digest


def short_digest(digest: str | None) -> str | None:
    """The history index form of a digest: the first hex digits, no prefix."""
    if not digest:
        return None
    return digest.removeprefix(_DIGEST_PREFIX)[:SHORT_DIGEST_CHARS]


def same_digest(full: str | None, other: str | None) -> bool:
    """Whether two digests agree, either possibly in short form."""
    if not full or not other:
        return False
    a, b = full.removeprefix(_DIGEST_PREFIX), other.removeprefix(_DIGEST_PREFIX)
    shorter = min(len(a), len(b))
    return shorter >= SHORT_DIGEST_CHARS and a[:shorter] == b[:shorter]


def clip_cause(cause: str | None) -> str:
    """A change cause bounded for storage (one line, at most :data:`MAX_CAUSE_CHARS`)."""
    if not cause:
        return ""
    flat = " ".join(cause.split())
    return flat if len(flat) <= MAX_CAUSE_CHARS else flat[: MAX_CAUSE_CHARS - 1] + "…"


def change_cause_for(annotation: str | None, previous_cause: str | None) -> str:
    """The cause to record for a new revision.

    ``kubernetes.io/change-cause`` outlives the change it describes (a
    ``kubectl apply`` after ``kstrata set`` keeps the old text), so it is
    recorded only when it differs from the cause recorded for the previous
    revision; the same text again means "unknown" and records "".
    """
    cause = clip_cause(annotation)
    if cause and cause == clip_cause(previous_cause):
        return ""
    return cause


# --- snapshots -----------------------------------------------------------


def _document(snapshot: Snapshot) -> JSONObject:
    return {
        "format": SNAPSHOT_FORMAT,
        "kind": snapshot.kind,
        "number": snapshot.number,
        "spec": snapshot.spec,
        "environment": snapshot.environment,
        "rendered": {**snapshot.rendered},
        "fingerprints": {**snapshot.fingerprints},
        "digest": snapshot.digest,
        "changeCause": snapshot.change_cause,
        "created": snapshot.created,
    }


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encoded_size(data: Mapping[str, object]) -> int:
    """Bytes the encoded ``data`` takes as JSON (what counts against etcd's limit)."""
    return len(_dumps(data).encode("utf-8"))


def encode_snapshot(snapshot: Snapshot) -> JSONObject:
    """The ControllerRevision ``data`` for ``snapshot``; deterministic.

    Plain JSON up to :data:`COMPRESS_ABOVE` bytes, gzip+base64 above;
    ``SnapshotTooLargeError`` if even that exceeds :data:`MAX_SNAPSHOT_BYTES`.
    """
    document = _document(snapshot)
    text = _dumps(document).encode("utf-8")
    if len(text) <= COMPRESS_ABOVE:
        return document
    packed = base64.b64encode(gzip.compress(text, compresslevel=6, mtime=0)).decode("ascii")
    data: JSONObject = {
        "format": SNAPSHOT_FORMAT,
        "encoding": ENCODING_GZIP,
        "number": snapshot.number,
        "payload": packed,
    }
    size = encoded_size(data)
    if size > MAX_SNAPSHOT_BYTES:
        raise SnapshotTooLargeError(
            f"revision {snapshot.number} cannot be stored: its snapshot is {size} bytes "
            f"compressed ({len(text)} bytes uncompressed), over the {MAX_SNAPSHOT_BYTES}-byte "
            "limit; make the configuration smaller"
        )
    return data


def _inflate(payload: object) -> bytes:
    if not isinstance(payload, str):
        raise DocumentError("revision snapshot payload is not text")
    try:
        packed = base64.b64decode(payload, validate=True)
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        text = inflater.decompress(packed, MAX_DECODED_BYTES + 1)
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise DocumentError("revision snapshot payload is corrupt") from exc
    if len(text) > MAX_DECODED_BYTES or inflater.unconsumed_tail:
        raise DocumentError("revision snapshot payload expands beyond the size limit")
    return text


def _string_map(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise DocumentError(f"revision snapshot {what} must map strings to strings")
    return dict(value)


def _text(document: Mapping[str, object], key: str) -> str:
    value = document.get(key, "")
    if not isinstance(value, str):
        raise DocumentError(f"revision snapshot field {key} must be a string")
    return value


def decode_snapshot(data: object, number: int) -> Snapshot:
    """The snapshot in a ControllerRevision's ``data`` (revision ``number``).

    ``DocumentError`` on an unknown format, a corrupt payload, or a snapshot
    that says it is another revision.
    """
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise DocumentError(f"revision {number}: not a {SNAPSHOT_FORMAT} snapshot")
    document: Mapping[str, object] = data
    if "encoding" in data:
        if data["encoding"] != ENCODING_GZIP:
            raise DocumentError(f"revision {number}: unknown snapshot encoding")
        try:
            inflated: object = json.loads(_inflate(data.get("payload")))
        except (UnicodeDecodeError, ValueError) as exc:
            raise DocumentError(f"revision {number}: snapshot payload is not JSON") from exc
        if not isinstance(inflated, dict) or inflated.get("format") != SNAPSHOT_FORMAT:
            raise DocumentError(f"revision {number}: not a {SNAPSHOT_FORMAT} snapshot")
        document = inflated
    stored_number = document.get("number", number)
    if type(stored_number) is not int or stored_number != number:
        raise DocumentError(f"revision {number}: the snapshot is of another revision")
    kind = _text(document, "kind")
    if kind not in _KIND_INFIX:
        raise DocumentError(f"revision {number}: unknown kind in snapshot")
    spec = document.get("spec")
    if not isinstance(spec, dict):
        raise DocumentError(f"revision {number}: snapshot spec must be an object")
    return Snapshot(
        kind=kind,
        number=number,
        spec=spec,
        environment=_text(document, "environment"),
        rendered=_string_map(document.get("rendered", {}), "rendered"),
        fingerprints=_string_map(document.get("fingerprints", {}), "fingerprints"),
        digest=_text(document, "digest"),
        change_cause=_text(document, "changeCause"),
        created=_text(document, "created"),
    )


# --- the history index ---------------------------------------------------


def history_entry(snapshot: Snapshot) -> HistoryEntry:
    """The index line for ``snapshot`` (profiles carry a short digest, SealedSecrets none)."""
    return _index_line(
        snapshot.kind, snapshot.number, snapshot.created, snapshot.change_cause, snapshot.digest
    )


def encode_history(entries: Sequence[HistoryEntry], *, limit: int = MAX_HISTORY_ENTRIES) -> str:
    """Compact, deterministic JSON for the history annotation.

    Entries are de-duplicated by number (the last one given wins), sorted
    oldest first, and only the newest ``limit`` (at most
    :data:`MAX_HISTORY_ENTRIES`) are kept; causes are clipped.
    """
    keep = max(1, min(limit, MAX_HISTORY_ENTRIES))
    by_number = {entry.number: entry for entry in entries}
    newest = sorted(by_number)[-keep:]
    rows = [
        [
            by_number[n].number,
            by_number[n].created,
            clip_cause(by_number[n].change_cause),
            short_digest(by_number[n].digest),
        ]
        for n in newest
    ]
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


def _entry(row: object) -> HistoryEntry | None:
    if not isinstance(row, list) or len(row) != 4:
        return None
    number, created, cause, digest = row
    if type(number) is not int or number < 0:
        return None
    if not isinstance(created, str) or not isinstance(cause, str):
        return None
    if digest is not None and not isinstance(digest, str):
        return None
    return HistoryEntry(number, created, cause, digest)


def decode_history(text: str | None) -> list[HistoryEntry]:
    """The history index, oldest first; anything malformed reads as []."""
    if not text:
        return []
    try:
        rows = json.loads(text)
    except ValueError:
        return []
    if not isinstance(rows, list):
        return []
    entries = [_entry(row) for row in rows]
    if any(entry is None for entry in entries):
        return []
    valid = [entry for entry in entries if entry is not None]
    by_number = {entry.number: entry for entry in valid}
    return [by_number[n] for n in sorted(by_number)]


def retained_numbers(current: int, limit: int) -> range:
    """Revision numbers kept at ``current`` with ``limit`` old revisions (current included)."""
    return range(max(1, current - limit), current + 1)


def parse_revision(value: object) -> int:
    """A revision number from a label or annotation value; 0 when absent or malformed."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    if isinstance(value, str) and value.isdigit() and len(value) <= 18:
        return int(value)
    return 0


# --- the plan: which revision the content at hand is, and what to write ---


@dataclass(frozen=True)
class RevisionFacts:
    """What is known of one resource's revisions when the reconciler has new content.

    The first fields come with the resource and the reconciler's own reads (no
    API call for them).  ``read``, ``stored`` and ``taken`` start empty and
    are filled in by the app only when a plan asks for them (a
    :data:`Lookup`) or a write learned them (a create that met a 409); the
    raw ControllerRevision ``data`` is kept as read and decoded here, only
    where a decision needs it.
    """

    kind: str
    #: The digest of the content at hand (see :class:`Snapshot`).
    digest: str
    #: Old revisions to keep besides the current one.
    limit: int
    #: The resource's annotations: the index, its revision and the change cause.
    annotations: Mapping[str, str]
    #: (revision, digest or None) pairs the caller knows without an API call.
    hints: tuple[tuple[int, str | None], ...] = ()
    #: When a snapshot stored by the plan is created (RFC 3339), so the plan can index it.
    now: str = ""
    #: Revisions read one by one: number -> ``data``, or None when absent or not ours.
    read: Mapping[int, object | None] = field(default_factory=dict)
    #: Every stored revision (one list call): number -> ``data``; None when not listed.
    stored: Mapping[int, object] | None = None
    #: Numbers a create found taken (409): number -> the ``data`` there, None when not ours.
    taken: Mapping[int, object | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ReadRevision:
    """Lookup: read revision ``number`` (the current one, whose digest nothing else knows)."""

    number: int


@dataclass(frozen=True)
class ListRevisions:
    """Lookup: list every stored revision (the index cannot be trusted to name them all)."""


@dataclass(frozen=True)
class LostRace:
    """Revision ``number`` was just stored with other content by another writer: retry later."""

    number: int


#: What a plan needs to know first.
Lookup = ReadRevision | ListRevisions


@dataclass(frozen=True)
class StoreSnapshot:
    """Store revision ``number``'s snapshot, made with ``change_cause`` at ``created``."""

    number: int
    change_cause: str
    created: str
    kind: ClassVar[Literal["store"]] = "store"


@dataclass(frozen=True)
class Serve:
    """The caller writes the ConfigMap/Secret and the status at revision ``number`` here."""

    number: int
    kind: ClassVar[Literal["serve"]] = "serve"


@dataclass(frozen=True)
class Prune:
    """Delete the stored revisions ``numbers`` (beyond the history limit)."""

    numbers: tuple[int, ...]
    kind: ClassVar[Literal["prune"]] = "prune"


@dataclass(frozen=True)
class WriteIndex:
    """Merge ``annotations`` (the revision and the history index) onto the resource."""

    number: int
    annotations: Mapping[str, str]
    kind: ClassVar[Literal["index"]] = "index"

    def covered_by(self, annotations: Mapping[str, str]) -> bool:
        """Whether ``annotations`` already say this, or name a later revision."""
        return parse_revision(annotations.get(REVISION_ANNOTATION)) > self.number or all(
            annotations.get(key) == value for key, value in self.annotations.items()
        )


Step = StoreSnapshot | Serve | Prune | WriteIndex


@dataclass(frozen=True)
class RevisionPlan:
    """Which revision the content at hand is, and the writes that make it so, in order.

    The order is the crash-safety rule: the snapshot before the served object
    (a number that is served always has its content stored, and a retry finds
    it and reuses it), pruning after it (it never delays the new content) and
    before the index (an interrupted publish leaves an index naming a deleted
    revision, which the next reconcile rewrites, never a stored revision that
    no index names).
    """

    number: int
    #: True when the content at hand is a new revision (stored now, or by an
    #: interrupted earlier attempt).
    new: bool
    steps: tuple[Step, ...]

    def after_serve(self) -> tuple[Step, ...]:
        """The steps that follow the served object's write."""
        kinds = [step.kind for step in self.steps]
        return self.steps[kinds.index("serve") + 1 :] if "serve" in kinds else self.steps


def plan_revision(facts: RevisionFacts) -> RevisionPlan | Lookup | LostRace:
    """The one decision of revision bookkeeping: the number of the content at hand, and the writes.

    Pure: the app gathers what a :data:`Lookup` asks for and calls this again
    with it, and a create that met a 409 adds what it found to ``taken``.  In
    the usual cases (steady state, a new revision with a complete index) the
    first call is the answer.  The rules are those of ``kstrata.app.revisions``:
    a revision is a content change; numbers never repeat or skip; the current
    revision and ``limit`` old ones are kept.
    """
    index = decode_history(facts.annotations.get(HISTORY_ANNOTATION))
    indexed = {entry.number: entry for entry in index}
    known = max(
        [parse_revision(facts.annotations.get(REVISION_ANNOTATION)), *indexed]
        + [number for number, _ in facts.hints]
    )
    if known > 0:
        current = _current_digest(facts, known, indexed)
        if isinstance(current, ReadRevision):
            return current
        if same_digest(facts.digest, current):
            return _unchanged(facts, known, index)
    return _new(facts, known, indexed)


def _current_digest(
    facts: RevisionFacts, known: int, indexed: Mapping[int, HistoryEntry]
) -> str | ReadRevision | None:
    """The digest of revision ``known`` from the index or a hint, else from its snapshot."""
    entry = indexed.get(known)
    digest = entry.digest if entry is not None else None
    digest = digest or next((d for n, d in facts.hints if n == known and d), None)
    if digest is not None:
        return digest
    if known not in facts.read:
        return ReadRevision(known)
    snapshot = _decoded(facts.read[known], known)
    return snapshot.digest if snapshot is not None else None


def _unchanged(
    facts: RevisionFacts, number: int, index: list[HistoryEntry]
) -> RevisionPlan | Lookup | LostRace:
    """The content at hand is revision ``number``: complete the index and prune if needed."""
    keep = retained_numbers(number, facts.limit)
    in_index = {entry.number for entry in index}
    stale = any(n < keep.start for n in in_index)
    if number in in_index and not stale:
        return _plan(facts, number, new=False, store=None, entries=index, prune=())
    entries = {entry.number: entry for entry in index if entry.number in keep}
    if facts.stored is None:
        # The limit was lowered (prune what is stored beyond it), or the index
        # lags the content: an upgrade from a version without history, or a
        # crash after the target write, perhaps more than one in a row.
        return ListRevisions()
    stored = facts.stored
    # An index written after an interrupted prune names deleted revisions.
    entries = {n: entry for n, entry in entries.items() if n in stored}
    if number not in entries:
        # Index every retained revision it misses, not only the current one,
        # since pruning goes by the index.
        for n in sorted(n for n in stored if n in keep and n not in entries):
            if (found := _decoded(stored[n], n)) is not None:
                entries[n] = history_entry(found)
    store: StoreSnapshot | None = None
    if number not in entries:
        # Make sure the current revision has a snapshot, then index it.
        found = _decoded(facts.read.get(number), number)
        if found is not None:
            entries[number] = history_entry(found)
        else:
            cause = change_cause_for(
                facts.annotations.get(CHANGE_CAUSE_ANNOTATION),
                index[-1].change_cause if index else "",
            )
            outcome = _store_or_reuse(facts, number, cause, guessed=False)
            if not isinstance(outcome, tuple):
                return LostRace(number)
            entries[number], store = outcome
    prune = tuple(sorted(n for n in stored if n < keep.start))
    return _plan(facts, number, new=False, store=store, entries=entries.values(), prune=prune)


def _new(
    facts: RevisionFacts, known: int, indexed: Mapping[int, HistoryEntry]
) -> RevisionPlan | Lookup | LostRace:
    """The content at hand differs from revision ``known``: it is the next revision."""
    if facts.stored is not None:
        return _new_listed(facts, known, indexed, facts.stored)
    if known > 0 and known not in indexed:
        return ListRevisions()
    # The usual case: the index is complete, so N+1 is a guess that is almost
    # always right and needs no list call.  A create that meets other content
    # under that name turns it into a list after all.
    number = known + 1
    previous = indexed.get(known)
    cause = change_cause_for(
        facts.annotations.get(CHANGE_CAUSE_ANNOTATION), previous.change_cause if previous else ""
    )
    found = _store_or_reuse(facts, number, cause, guessed=True)
    if not isinstance(found, tuple):
        return found
    new_entry, store = found
    keep = retained_numbers(number, facts.limit)
    stale = tuple(sorted(n for n in indexed if n < keep.start))
    entries = [e for n, e in indexed.items() if n in keep] + [new_entry]
    return _plan(facts, number, new=True, store=store, entries=entries, prune=stale)


def _new_listed(
    facts: RevisionFacts,
    known: int,
    indexed: Mapping[int, HistoryEntry],
    stored: Mapping[int, object],
) -> RevisionPlan | LostRace:
    """A new revision when the index cannot be trusted to know every stored number."""
    top = max(stored, default=0)
    found = _decoded(stored[top], top) if top > known else None
    if found is not None and found.digest == facts.digest:
        # An interrupted earlier attempt at this very content.
        number, new_entry, store = top, history_entry(found), None
    else:
        number = max(known, top) + 1
        previous = indexed.get(known)
        previous_cause = previous.change_cause if previous is not None else ""
        if previous is None and known in stored:
            earlier = _decoded(stored[known], known)
            previous_cause = earlier.change_cause if earlier is not None else ""
        cause = change_cause_for(facts.annotations.get(CHANGE_CAUSE_ANNOTATION), previous_cause)
        outcome = _store_or_reuse(facts, number, cause, guessed=False)
        if not isinstance(outcome, tuple):
            return LostRace(number)
        new_entry, store = outcome
    keep = retained_numbers(number, facts.limit)
    entries: dict[int, HistoryEntry] = {}
    for n in sorted(n for n in stored if n in keep):
        if n in indexed:
            entries[n] = indexed[n]
        elif (earlier := _decoded(stored[n], n)) is not None:
            entries[n] = history_entry(earlier)
    entries[number] = new_entry
    prune = tuple(sorted(n for n in stored if n < keep.start))
    return _plan(facts, number, new=True, store=store, entries=entries.values(), prune=prune)


def _store_or_reuse(
    facts: RevisionFacts, number: int, cause: str, *, guessed: bool
) -> tuple[HistoryEntry, StoreSnapshot | None] | ListRevisions | LostRace:
    """Revision ``number`` for the content at hand: store it, or reuse what a create found.

    A create that found the content at hand under that name met an interrupted
    earlier attempt: it is reused (its cause and time stay).  Other content
    there makes a guessed number a list, and a listed one a lost race.
    """
    if number not in facts.taken:
        entry = _index_line(facts.kind, number, facts.now, cause, facts.digest)
        return entry, StoreSnapshot(number, cause, facts.now)
    found = _same(facts, number)
    if found is not None:
        return history_entry(found), None
    return ListRevisions() if guessed else LostRace(number)


def _plan(
    facts: RevisionFacts,
    number: int,
    *,
    new: bool,
    store: StoreSnapshot | None,
    entries: Iterable[HistoryEntry],
    prune: tuple[int, ...],
) -> RevisionPlan:
    """The steps in their order; the index only when it differs from the resource's."""
    desired = {
        REVISION_ANNOTATION: str(number),
        HISTORY_ANNOTATION: encode_history(list(entries), limit=facts.limit + 1),
    }
    steps: list[Step] = [store] if store is not None else []
    steps.append(Serve(number))
    if prune:
        steps.append(Prune(prune))
    if any(facts.annotations.get(key) != value for key, value in desired.items()):
        steps.append(WriteIndex(number, desired))
    return RevisionPlan(number, new, tuple(steps))


def _decoded(data: object, number: int) -> Snapshot | None:
    """The snapshot in ``data``, or None when there is none or it is unreadable."""
    if data is None:
        return None
    try:
        return decode_snapshot(data, number)
    except DocumentError:
        return None


def _same(facts: RevisionFacts, number: int) -> Snapshot | None:
    """What a create found under ``number``, if it is the content at hand (an earlier attempt)."""
    found = _decoded(facts.taken.get(number), number)
    return found if found is not None and found.digest == facts.digest else None


def _index_line(kind: str, number: int, created: str, cause: str, digest: str) -> HistoryEntry:
    """The index line of a revision (profiles carry a short digest, SealedSecrets none)."""
    short = short_digest(digest) if kind == CONFIG_PROFILE_KIND else None
    return HistoryEntry(number, created, clip_cause(cause), short)
