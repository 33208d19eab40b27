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
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kstrata.errors import DocumentError, SnapshotTooLargeError
from kstrata.wellknown import (
    CONFIG_PROFILE_KIND,
    CONFIG_PROFILE_SHORT_NAME,
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
    spec: dict[str, Any]
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


def _document(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "format": SNAPSHOT_FORMAT,
        "kind": snapshot.kind,
        "number": snapshot.number,
        "spec": snapshot.spec,
        "environment": snapshot.environment,
        "rendered": snapshot.rendered,
        "fingerprints": snapshot.fingerprints,
        "digest": snapshot.digest,
        "changeCause": snapshot.change_cause,
        "created": snapshot.created,
    }


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encoded_size(data: Mapping[str, Any]) -> int:
    """Bytes the encoded ``data`` takes as JSON (what counts against etcd's limit)."""
    return len(_dumps(data).encode("utf-8"))


def encode_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    """The ControllerRevision ``data`` for ``snapshot``; deterministic.

    Plain JSON up to :data:`COMPRESS_ABOVE` bytes, gzip+base64 above;
    ``SnapshotTooLargeError`` if even that exceeds :data:`MAX_SNAPSHOT_BYTES`.
    """
    document = _document(snapshot)
    text = _dumps(document).encode("utf-8")
    if len(text) <= COMPRESS_ABOVE:
        return document
    packed = base64.b64encode(gzip.compress(text, compresslevel=6, mtime=0)).decode("ascii")
    data: dict[str, Any] = {
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


def _text(document: Mapping[str, Any], key: str) -> str:
    value = document.get(key, "")
    if not isinstance(value, str):
        raise DocumentError(f"revision snapshot field {key} must be a string")
    return value


def decode_snapshot(data: Any, number: int) -> Snapshot:
    """The snapshot in a ControllerRevision's ``data`` (revision ``number``).

    ``DocumentError`` on an unknown format, a corrupt payload, or a snapshot
    that says it is another revision.
    """
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise DocumentError(f"revision {number}: not a {SNAPSHOT_FORMAT} snapshot")
    document: Any = data
    if "encoding" in data:
        if data["encoding"] != ENCODING_GZIP:
            raise DocumentError(f"revision {number}: unknown snapshot encoding")
        try:
            document = json.loads(_inflate(data.get("payload")))
        except (UnicodeDecodeError, ValueError) as exc:
            raise DocumentError(f"revision {number}: snapshot payload is not JSON") from exc
        if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
            raise DocumentError(f"revision {number}: not a {SNAPSHOT_FORMAT} snapshot")
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
    digest = short_digest(snapshot.digest) if snapshot.kind == CONFIG_PROFILE_KIND else None
    return HistoryEntry(
        snapshot.number, snapshot.created, clip_cause(snapshot.change_cause), digest
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
