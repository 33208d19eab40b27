"""kstrata.kube.metadata_watch against the real API server: metadata only, 410, resume, stop.

The watch the operator follows foreign Secrets with (controller.followed_secrets)
must never receive a Secret's data, must resume from where it was after the
server ends a stream, and must stop at once when asked, even while a read
blocks.  Its 410 Gone (a compacted resume point) is in
tests/faults/test_fault_secret_watch.py: only a fault makes one.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import pytest

from kstrata.kube.api import SECRETS, KubeApi
from kstrata.kube.metadata_watch import ACCEPT_WATCH, MetadataWatch, ObjectVersion
from kstrata.kube.transport import Transport
from support.cluster import TestCluster
from support.leaks import Canary
from support.waiting import wait_for

pytestmark = pytest.mark.cluster


class Recorder:
    """What a watch handed on, and the raw lines the API server sent for its kind."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.listings: list[dict[tuple[str, str], ObjectVersion]] = []
        self.events: list[tuple[str, ObjectVersion]] = []

    def listed(self, objects: dict[tuple[str, str], ObjectVersion]) -> None:
        with self.lock:
            self.listings.append(dict(objects))

    def changed(self, type_: str, found: ObjectVersion) -> None:
        with self.lock:
            self.events.append((type_, found))

    def seen(self, type_: str, namespace: str, name: str) -> list[ObjectVersion]:
        with self.lock:
            return [o for t, o in self.events if t == type_ and o.key == (namespace, name)]


def secret(namespace: str, name: str, value: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"v": base64.b64encode(value).decode()},
    }


def watch_for(
    cluster: TestCluster, namespace: str, recorder: Recorder, **options: Any
) -> MetadataWatch:
    return MetadataWatch(
        cluster.connection,
        SECRETS,
        namespace=namespace,
        on_listed=recorder.listed,
        on_changed=recorder.changed,
        **options,
    )


def test_the_watch_reports_versions_never_data(cluster: TestCluster, namespace: str) -> None:
    api = KubeApi(cluster.connection)
    canary = Canary.new("metadata-watch")
    api.create(SECRETS, namespace, secret(namespace, "before", canary.value))
    recorder = Recorder()
    watch = watch_for(cluster, namespace, recorder)
    watch.start()
    try:
        listing = wait_for(lambda: recorder.listings, what="the first listing")[0]
        assert set(listing) == {(namespace, "before")}
        api.create(SECRETS, namespace, secret(namespace, "after", canary.value))
        added = wait_for(lambda: recorder.seen("ADDED", namespace, "after"), what="ADDED")
        # A metadata-only change moves the resourceVersion: the watch reports it.
        patched = api.patch(SECRETS, namespace, "after", {"metadata": {"labels": {"x": "y"}}})
        modified = wait_for(lambda: recorder.seen("MODIFIED", namespace, "after"), what="MODIFIED")
        assert modified[-1].resource_version == patched["metadata"]["resourceVersion"]
        assert modified[-1].resource_version != added[0].resource_version
        assert modified[-1].uid == added[0].uid
        api.delete(SECRETS, namespace, "after")
        wait_for(lambda: recorder.seen("DELETED", namespace, "after"), what="DELETED")
        assert watch.lists == 1
    finally:
        started = time.monotonic()
        watch.stop()
        stopped = time.monotonic() - started
    # Stopped while its read was blocked on an idle stream: at once, not at a timeout.
    assert not watch.running
    assert stopped < 2.0, f"stop took {stopped:.1f} s"


def test_what_the_api_server_sends_it_holds_no_data(cluster: TestCluster, namespace: str) -> None:
    # The Accept header the watch sends: the API server leaves data out (a raw
    # request, so the bytes on the wire are what is checked, not the parser).
    api = KubeApi(cluster.connection)
    canary = Canary.new("metadata-wire")
    api.create(SECRETS, namespace, secret(namespace, "wire", canary.value))
    transport: Transport = cluster.connection.transport
    response = transport.stream(
        SECRETS.path(namespace),
        query=[("watch", "true"), ("timeoutSeconds", "1")],
        accept=ACCEPT_WATCH,
        read_timeout=30,
    )
    raw = response.read()
    response.release_conn()
    first = json.loads(raw.splitlines()[0])
    assert first["object"]["kind"] == "PartialObjectMetadata"
    assert "data" not in first["object"]
    encoded = base64.b64encode(canary.value)
    assert canary.value not in raw
    assert encoded not in raw


def test_a_stream_the_server_ends_is_resumed_without_a_list(
    cluster: TestCluster, namespace: str
) -> None:
    api = KubeApi(cluster.connection)
    recorder = Recorder()
    watch = watch_for(cluster, namespace, recorder, server_timeout=1)
    watch.start()
    try:
        wait_for(lambda: recorder.listings, what="the first listing")
        # The server ends each stream after a second (timeoutSeconds=1).
        wait_for(lambda: watch.streams >= 3, timeout=30, what="two streams ended and resumed")
        api.create(SECRETS, namespace, secret(namespace, "later", b"1"))
        wait_for(lambda: recorder.seen("ADDED", namespace, "later"), what="ADDED")
        assert watch.lists == 1
        assert len(recorder.listings) == 1
    finally:
        watch.stop()
