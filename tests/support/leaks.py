"""Find a secret value that escaped: the canary scan behind the leak tests.

Why this exists: ``value not in text`` misses the same value base64'd by a
client, hex-dumped by a debug log or hashed into a label.  A leak test seals
a unique random canary, drives the operator and the CLI through every flow,
collects everything a user or an attacker could read (objects, events,
``/metrics``, logs, CLI output) as ``location -> text`` and asks :func:`scan`
for every encoded form of the canary listed in :func:`encoded_forms`.

Boundary: :func:`encoded_forms`, :func:`flatten` and :func:`scan` are pure
(unit-tested in ``tests/unit/test_leak_scanner.py``, so the scan cannot pass
silently); :func:`cluster_texts` reads a test cluster through ``kubectl`` and
leaves out exactly one thing, the ``data``/``stringData`` of Secrets written
by a SealedSecret (their controller), which is where the value belongs.
Nothing here ever returns or prints a canary: hits carry a location, the
canary's label and the form's name, and locations are redacted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from support.cluster import TestCluster

#: Object fields that hold the value by design, for Secrets written by a SealedSecret.
SECRET_VALUE_FIELDS = ("data", "stringData")
REDACTED = "<redacted>"


@dataclass(frozen=True)
class Canary:
    """A value that must never be seen outside a produced Secret's data."""

    label: str
    value: bytes

    @classmethod
    def new(cls, label: str) -> Canary:
        return cls(label, f"kstrata-canary-{label}-{uuid.uuid4().hex}".encode())

    @property
    def text(self) -> str:
        return self.value.decode()

    def __repr__(self) -> str:
        # A failing assertion prints its operands: never the value itself.
        return f"Canary({self.label!r})"


@dataclass(frozen=True, order=True)
class Hit:
    """One encoded form of one canary found at one location (never the value)."""

    location: str
    canary: str
    form: str

    def __str__(self) -> str:
        return f"{self.location}: canary {self.canary!r} as {self.form}"


def _b64_variants(name: str, raw: bytes) -> dict[str, str]:
    std = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode()
    return {
        f"{name} base64": std,
        f"{name} base64 unpadded": std.rstrip("="),
        f"{name} base64url": url,
        f"{name} base64url unpadded": url.rstrip("="),
    }


def _b64_cores(value: bytes) -> dict[str, str]:
    """The characters base64 of ``value`` has at each offset inside a longer stream.

    A value embedded in a larger encoded document (a JSON manifest, base64'd
    whole) starts at byte offset 0, 1 or 2 of a 3-byte group; only the
    characters whose six bits all come from the value are fixed.
    """
    cores: dict[str, str] = {}
    for offset in range(3):
        first_bit, end_bit = 8 * offset, 8 * (offset + len(value))
        start, end = -(-first_bit // 6), end_bit // 6
        padded = b"\0" * offset + value + b"\0\0"
        std = base64.b64encode(padded).decode()[start:end]
        url = base64.urlsafe_b64encode(padded).decode()[start:end]
        cores[f"base64 inside a stream (offset {offset})"] = std
        cores[f"base64url inside a stream (offset {offset})"] = url
    return cores


def encoded_forms(value: bytes) -> dict[str, str]:
    """Every form of ``value`` the scan looks for, by name.

    Raw; base64 standard and urlsafe, with and without padding, and at every
    alignment inside a longer stream; hex lower and upper; SHA-1 and SHA-256
    digests as hex lower and upper and as base64 (standard and urlsafe, with
    and without padding).
    """
    forms: dict[str, str] = {}
    try:
        forms["raw"] = value.decode()
    except UnicodeDecodeError:
        forms["raw (latin-1)"] = value.decode("latin-1")
    forms.update({k.removeprefix(" "): v for k, v in _b64_variants("", value).items()})
    forms.update(_b64_cores(value))
    forms["hex"] = value.hex()
    forms["HEX"] = value.hex().upper()
    for algorithm in ("sha1", "sha256"):
        digest = hashlib.new(algorithm, value).digest()
        forms[f"{algorithm} hex"] = digest.hex()
        forms[f"{algorithm} HEX"] = digest.hex().upper()
        forms.update(_b64_variants(algorithm, digest))
    # A one-byte value has no fixed character at some alignments: an empty
    # form would match (and redact) everything.
    return {name: form for name, form in forms.items() if form}


def flatten(obj: object, where: str) -> Iterator[tuple[str, str]]:
    """Every string of a JSON-like value, map keys included, with its path.

    Keys count: an annotation or label *key* can leak as well as its value.
    """
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            path = f"{where}.{key}"
            yield f"{path} (key)", str(key)
            yield from flatten(value, path)
    elif isinstance(obj, list | tuple):
        for index, value in enumerate(obj):
            yield from flatten(value, f"{where}[{index}]")
    elif obj is not None:
        yield where, str(obj)


def redact(text: str, canaries: Iterable[Canary]) -> str:
    """``text`` with every form of every canary replaced (for locations and messages)."""
    for canary in canaries:
        # Longest first, so a form is never half-replaced by one of its substrings.
        for form in sorted(encoded_forms(canary.value).values(), key=len, reverse=True):
            text = text.replace(form, REDACTED)
    return text


def scan(texts: Mapping[str, str], canaries: Iterable[Canary]) -> list[Hit]:
    """Every (location, canary, form) where a form of a canary occurs; sorted."""
    wanted = [(c, encoded_forms(c.value)) for c in canaries]
    everyone = [c for c, _ in wanted]
    hits: set[Hit] = set()
    for location, text in texts.items():
        for canary, forms in wanted:
            for form_name, form in forms.items():
                if form in text:
                    hits.add(Hit(redact(location, everyone), canary.label, form_name))
    return sorted(hits)


def report(hits: Iterable[Hit]) -> str:
    """A readable list of hits for an assertion message (locations only)."""
    lines = [str(hit) for hit in hits]
    return f"{len(lines)} leak(s):\n  " + "\n  ".join(lines) if lines else "no leak"


# --- what to scan ----------------------------------------------------------


def is_produced_secret(obj: Mapping[str, Any]) -> bool:
    """A Secret whose controller is a SealedSecret: its data is the one place values belong."""
    if obj.get("kind") != "Secret":
        return False
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("controller") and r.get("kind") == "SealedSecret" for r in refs)


def object_texts(obj: Mapping[str, Any]) -> dict[str, str]:
    """The strings of one API object, by ``Kind namespace/name path``.

    The whole object is scanned (spec, status, metadata with every label and
    annotation, an event's message, reason and note), except the value
    fields of a produced Secret.
    """
    meta = obj.get("metadata") or {}
    where = f"{obj.get('kind', '?')} {meta.get('namespace') or '-'}/{meta.get('name', '?')}"
    skip = SECRET_VALUE_FIELDS if is_produced_secret(obj) else ()
    texts: dict[str, str] = {}
    for key, value in obj.items():
        if key in skip:
            continue
        for path, text in flatten(value, f"{where} {key}"):
            texts[path] = text
    return texts


@dataclass(frozen=True)
class ClusterDump:
    """What :func:`cluster_texts` collected, and what it deliberately left out."""

    texts: dict[str, str]
    #: ``namespace/name`` of every produced Secret whose data was not scanned.
    produced_secrets: frozenset[str]
    #: ``kind`` names seen, so a test can check the dump is not empty of what matters.
    kinds: frozenset[str]
    #: The produced Secrets' data, for a positive control (the scan must find it there).
    produced_data: dict[str, str]


def namespaced_listable_resources(cluster: TestCluster) -> list[str]:
    """Every namespaced resource type the API server can list (discovery, via kubectl)."""
    out = cluster.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def _items(kubectl_json: str) -> list[dict[str, Any]]:
    """kubectl prints a List for several objects, the object itself for one."""
    document: dict[str, Any] = json.loads(kubectl_json)
    items: list[dict[str, Any]] = document.get("items", [document])
    return items


def cluster_texts(cluster: TestCluster, namespaces: Iterable[str]) -> ClusterDump:
    """Every object of every listable kind in ``namespaces``, and those Namespaces themselves.

    Both event APIs (core v1 and events.k8s.io/v1), ControllerRevisions, Leases
    and anything else discovery lists are included: a leak is looked for where
    nobody thought of looking.
    """
    names = list(namespaces)
    kinds = ",".join(namespaced_listable_resources(cluster))
    objects: list[dict[str, Any]] = []
    for namespace in names:
        objects.extend(_items(cluster.kubectl("get", kinds, "-n", namespace, "-o", "json").stdout))
    objects.extend(_items(cluster.kubectl("get", "namespaces", *names, "-o", "json").stdout))
    texts: dict[str, str] = {}
    produced: set[str] = set()
    produced_data: dict[str, str] = {}
    for obj in objects:
        texts.update(object_texts(obj))
        if is_produced_secret(obj):
            meta = obj["metadata"]
            where = f"{meta['namespace']}/{meta['name']}"
            produced.add(where)
            for field in SECRET_VALUE_FIELDS:
                for path, text in flatten(obj.get(field), f"Secret {where} {field}"):
                    produced_data[path] = text
    return ClusterDump(
        texts,
        frozenset(produced),
        frozenset(str(obj.get("kind")) for obj in objects),
        produced_data,
    )


class LogCapture(logging.Handler):
    """Every log record of the process, formatted with its traceback, one text per record.

    With ``redacting`` canaries, each record is also rewritten after capture:
    its message and traceback text lose every form of the canaries, so the
    handlers that run after this one (pytest's captured-log report, kopf's
    stderr stream) never print a leaked value, even when the test fails.
    Install it on the root logger before those handlers to get that effect.
    """

    def __init__(self, redacting: Iterable[Canary] = ()) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.records: list[tuple[str, str]] = []
        self.redacting = tuple(redacting)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            # Structured extras (kopf's object references, say) count as log output too.
            extras = {
                k: v for k, v in vars(record).items() if k not in _UNSCANNED_RECORD_ATTRIBUTES
            }
            if extras:
                text += " " + repr(extras)
        except Exception:  # a broken record must not hide the others
            text = f"{record.levelname} {record.name} (unformattable) {record.msg!r}"
        self.records.append((record.name, text))
        if self.redacting:
            self._redact(record)

    def _redact(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg, record.args = redact(message, self.redacting), None
        # format() above cached the traceback text; later formatters reuse it.
        if record.exc_text:
            record.exc_info, record.exc_text = None, redact(record.exc_text, self.redacting)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.redacting)

    def texts(self) -> dict[str, str]:
        return {f"log #{i} ({name})": text for i, (name, text) in enumerate(self.records)}


#: Attributes every record has (already in the formatted text), and kopf's
#: operator settings (the same large, value-free object on every record).
_UNSCANNED_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName", "settings"}


@dataclass
class CliTranscript:
    """The output of every CLI call of a test, by description (never by argv: it holds values)."""

    outputs: dict[str, str]

    def record(self, what: str, code: int, out: str, err: str) -> None:
        index = len(self.outputs)
        self.outputs[f"cli #{index} {what} (exit {code}) stdout"] = out
        self.outputs[f"cli #{index} {what} (exit {code}) stderr"] = err


def debug_logging(*names: str) -> Callable[[], None]:
    """Set the root and the named loggers to DEBUG; return what undoes it."""
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in names)]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)

    def restore() -> None:
        for logger, level in zip(loggers, before, strict=True):
            logger.setLevel(level)

    return restore


@contextlib.contextmanager
def captured_logs(*names: str, redacting: Iterable[Canary] = ()) -> Iterator[LogCapture]:
    """Every log record of this process at DEBUG (the root and ``names``), for a leak scan.

    The capture is first among the root handlers, so with ``redacting``
    pytest's captured-log report and kopf's own stream only ever see records
    with the canaries redacted.
    """
    capture = LogCapture(redacting=redacting)
    restore = debug_logging(*names)
    root = logging.getLogger()
    root.handlers.insert(0, capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        restore()
