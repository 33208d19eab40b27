"""A metadata-only watch: which objects of a kind exist, and when each one changes.

Why: the operator follows some Secrets it does not manage (a workload that
reloads on ``secret/NAME`` or ``auto``; a Secret in the way of a
SealedSecret), but must not receive every Secret of the cluster with its
data.  The API server can send objects as ``PartialObjectMetadata``
(``Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1``):
no ``data``, no ``type``, only ``metadata``.  This watch keeps nothing of
what it receives but namespace, name, uid and resourceVersion, hands those to
its caller, and drops the rest of the metadata at once: labels and
annotations (kubectl's ``last-applied-configuration`` annotation of a Secret
made with ``kubectl apply`` holds its data) never outlive the parsing of one
event.  The caller decides which objects matter and reads those by name.

The loop (one thread per watch, blocking reads over
:mod:`kstrata.kube.transport`):

* LIST, in pages of 500, as ``PartialObjectMetadataList``; the caller gets
  the whole listing once (``on_listed``), so it can tell what was deleted
  while the watch was away, then the watch resumes from the list's
  resourceVersion;
* WATCH with bookmarks (``allowWatchBookmarks``), resuming from the last
  resourceVersion seen (event or bookmark) when the server ends the stream
  (``timeoutSeconds``) or the connection breaks;
* 410 Gone (the resume point was compacted), as an HTTP status or as an
  ``ERROR`` event: LIST again;
* any other failure: wait with a bounded, jittered exponential backoff
  (``backoff`` up to ``max_backoff``), reset once a stream delivers;
* ``stop()`` ends it at once: it shuts the open connection down, so a
  blocked read returns, and the thread is joined.

Nothing read here is ever logged: failures name the resource, the status
code and the exception type only.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from kstrata.kube.api import Resource
from kstrata.kube.connection import Cluster
from kstrata.payloads import KubeObject

logger = logging.getLogger(__name__)

ACCEPT_LIST: Final = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
ACCEPT_WATCH: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
#: A watch event larger than this (metadata only) is malformed: the stream restarts.
MAX_EVENT_BYTES: Final = 8 * 1024 * 1024
_PAGE: Final = "500"


@dataclass(frozen=True)
class ObjectVersion:
    """What the watch keeps of one object: where it is, which one, which version."""

    namespace: str
    name: str
    uid: str
    resource_version: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class WatchEvent:
    """One line of a watch stream, reduced to what the loop and its caller use."""

    #: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    type: str
    #: The object (None for BOOKMARK and ERROR).
    object: ObjectVersion | None
    #: Where to resume after this event ("" if it names none).
    resource_version: str
    #: An ERROR event's Status code (410: the resume point is gone).
    code: int | None = None


class WatchGone(Exception):
    """The resume point is no longer available (410 Gone): list again."""


class StreamError(Exception):
    """A stream or list failed in a way worth a backoff (status code, never the body)."""


def object_version(item: Any) -> ObjectVersion | None:
    """The identity of a ``PartialObjectMetadata`` (or full object); None if malformed."""
    meta = item.get("metadata") if isinstance(item, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    return ObjectVersion(
        namespace=str(meta.get("namespace") or ""),
        name=meta["name"],
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def parse_event(line: bytes) -> WatchEvent | None:
    """One watch line as a ``WatchEvent``; None for a line that is not one (skipped)."""
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        return None
    kind, body = raw["type"], raw.get("object")
    if kind == "ERROR":
        code = body.get("code") if isinstance(body, dict) else None
        return WatchEvent(kind, None, "", code if isinstance(code, int) else None)
    found = object_version(body)
    if found is None:
        return None
    if kind == "BOOKMARK":
        return WatchEvent(kind, None, found.resource_version)
    return WatchEvent(kind, found, found.resource_version)


def split_lines(chunks: Iterator[bytes], limit: int = MAX_EVENT_BYTES) -> Iterator[bytes]:
    """Newline-delimited lines out of arbitrary chunks; a line over ``limit`` is an error."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        while True:
            line, found, rest = pending.partition(b"\n")
            if not found:
                break
            pending = rest
            if line.strip():
                yield line
        if len(pending) > limit:
            raise StreamError("a watch event exceeds the size limit")
    if pending.strip():
        yield pending


Listed = Callable[[dict[tuple[str, str], ObjectVersion]], None]
Changed = Callable[[str, ObjectVersion], None]


class MetadataWatch:
    """Follow one kind's objects as metadata, in one namespace or cluster-wide.

    ``on_listed(objects)`` is called after every (re)list with every object
    by (namespace, name); ``on_changed(type, object)`` for every ADDED,
    MODIFIED and DELETED event after it.  Both run on the watch's own thread
    and must not block for long (hand work to another thread or loop).
    """

    def __init__(
        self,
        cluster: Cluster,
        resource: Resource[KubeObject],
        *,
        on_listed: Listed,
        on_changed: Changed,
        namespace: str | None = None,
        server_timeout: int = 300,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        resource_version: str | None = None,
    ) -> None:
        self._transport = cluster.transport
        self._resource = resource
        self._namespace = namespace
        self._on_listed = on_listed
        self._on_changed = on_changed
        self._server_timeout = server_timeout
        self._backoff = backoff
        self._max_backoff = max(max_backoff, backoff)
        #: Where the next watch starts; None: list first.  A given one is resumed
        #: from as a restarted watch would (a 410 then lists).
        self._since = resource_version
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None
        self._thread: threading.Thread | None = None
        #: How many times it listed, and how many streams it opened (for tests).
        self.lists = 0
        self.streams = 0

    @property
    def where(self) -> str:
        inside = f" in {self._namespace}" if self._namespace else " cluster-wide"
        return f"{self._resource.plural}{inside}"

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"kstrata-watch-{self._resource.plural}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the loop now: the open stream is shut down, the thread joined."""
        self._stopping.set()
        with self._lock:
            response = self._response
        if response is not None:
            _shutdown(response)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        delay = self._backoff
        while not self._stopping.is_set():
            try:
                if self._since is None:
                    self._since = self._list()
                    self.lists += 1
                    delay = self._backoff
                if self._watch():
                    delay = self._backoff
            except WatchGone:
                logger.info("watch of %s expired (410 Gone): listing again", self.where)
                self._since = None
                continue
            except Exception as error:  # noqa: BLE001 - the watch must outlive any failure
                if self._stopping.is_set():
                    return
                # Type and status only: a library's message may quote what it read.
                logger.warning(
                    "watch of %s failed (%s); again in %.1f s",
                    self.where,
                    _describe(error),
                    delay,
                )
                self._stopping.wait(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
                delay = min(delay * 2, self._max_backoff)

    def _list(self) -> str:
        path = self._resource.path(self._namespace)
        objects: dict[tuple[str, str], ObjectVersion] = {}
        token = ""
        while True:
            query = [("limit", _PAGE)] + ([("continue", token)] if token else [])
            response = self._transport.request("GET", path, query=query, accept=ACCEPT_LIST)
            if response.status == 410:
                raise WatchGone  # the continue token expired: list from the start
            if not 200 <= response.status < 300:
                raise StreamError(f"list answered {response.status}")
            page = json.loads(response.data)
            for item in page.get("items") or []:
                found = object_version(item)
                if found is not None:
                    objects[found.key] = found
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                self._on_listed(objects)
                return str(meta.get("resourceVersion") or "")

    def _watch(self) -> bool:
        """Follow the stream until the server ends it; True if it delivered anything."""
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self._server_timeout)),
        ]
        if self._since:
            query.append(("resourceVersion", self._since))
        response = self._transport.stream(
            self._resource.path(self._namespace),
            query=query,
            accept=ACCEPT_WATCH,
            # Longer than the server's own timeout (bookmarks come about every
            # minute): a read that waits this long is a dead connection.
            read_timeout=self._server_timeout + 30.0,
        )
        self.streams += 1
        with self._lock:
            self._response = response
        if self._stopping.is_set():
            _shutdown(response)
        delivered = False
        try:
            if response.status == 410:
                raise WatchGone
            if not 200 <= response.status < 300:
                raise StreamError(f"watch answered {response.status}")
            for line in split_lines(response.stream(65536, decode_content=True)):
                event = parse_event(line)
                if event is None:
                    continue
                if event.type == "ERROR":
                    if event.code == 410:
                        raise WatchGone
                    raise StreamError(f"watch error event {event.code}")
                delivered = True
                if event.resource_version:
                    self._since = event.resource_version
                if event.object is not None and event.type in ("ADDED", "MODIFIED", "DELETED"):
                    self._on_changed(event.type, event.object)
        finally:
            with self._lock:
                self._response = None
            _shutdown(response)
        return delivered


def _shutdown(response: Any) -> None:
    """Close a streaming response, also from another thread while a read blocks.

    The connection is closed, not returned to the pool: a watch holds it for
    minutes, and one shut down mid-read cannot be reused.
    """
    try:
        shutdown = getattr(response, "shutdown", None)
        if shutdown is not None:
            shutdown()  # urllib3 >= 2.3: unblocks a read in progress
        response.close()
    except Exception:  # noqa: BLE001, S110 - closing is best effort
        pass


def _describe(error: BaseException) -> str:
    if isinstance(error, StreamError):
        return str(error)
    status = getattr(error, "status", None)
    return type(error).__name__ + (f" {status}" if status else "")
