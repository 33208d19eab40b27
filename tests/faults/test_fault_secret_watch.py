"""The metadata watch of Secrets meets 410 Gone after etcd is compacted, and lists again.

The same real fault as test_fault_etcd.py's second part: while the API
server is paused, etcd is restarted, written outside the API server's prefix
and compacted at its current revision, so the API server's watch caches list
again and close their watchers; a watch resuming from its last
resourceVersion then gets 410 Gone.  kstrata's own watch
(kstrata.kube.metadata_watch, which follows foreign Secrets for reloads and
adoption) must list again and go on delivering.
"""

from __future__ import annotations

import base64
import signal
import threading
from typing import Any

import pytest

from kstrata.kube.api import SECRETS, KubeApi
from kstrata.kube.metadata_watch import MetadataWatch, ObjectVersion
from support.cluster import TestCluster
from support.faults import etcd_call, etcd_healthy, etcd_revision
from support.waiting import wait_for

pytestmark = [pytest.mark.cluster]

FAULT_KEY = base64.b64encode(b"/kstrata-faults/secret-watch").decode()


def test_the_secret_metadata_watch_lists_again_after_410(
    plane: Any, cluster: TestCluster, namespace: str
) -> None:
    api = KubeApi(cluster.connection)
    lock = threading.Lock()
    listings: list[set[tuple[str, str]]] = []
    added: list[str] = []

    def listed(objects: dict[tuple[str, str], ObjectVersion]) -> None:
        with lock:
            listings.append(set(objects))

    def changed(type_: str, found: ObjectVersion) -> None:
        if type_ == "ADDED":
            with lock:
                added.append(found.name)

    def secret(name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}

    watch = MetadataWatch(
        cluster.connection,
        SECRETS,
        namespace=namespace,
        on_listed=listed,
        on_changed=changed,
        backoff=0.2,
        max_backoff=2.0,
    )
    watch.start()
    try:
        wait_for(lambda: listings, what="the first listing")
        api.create(SECRETS, namespace, secret("before"))
        wait_for(lambda: "before" in added, what="the watch to deliver")

        apiserver = next(c for c in plane.components if c.name == "kube-apiserver").process
        apiserver.send_signal(signal.SIGSTOP)
        try:
            plane.restart("etcd")
            wait_for(lambda: etcd_healthy(plane), timeout=60, interval=0.05, what="etcd")
            for tick in range(2):
                value = base64.b64encode(str(tick).encode()).decode()
                etcd_call(plane, "/v3/kv/put", {"key": FAULT_KEY, "value": value})
            revision = etcd_revision(plane)
            etcd_call(plane, "/v3/kv/compaction", {"revision": revision, "physical": True})
        finally:
            apiserver.send_signal(signal.SIGCONT)
        wait_for(plane.apiserver_ready, timeout=60, interval=0.05, what="kube-apiserver")
        etcd_call(plane, "/v3/kv/deleterange", {"key": FAULT_KEY})

        # Made while the watch is (re)connecting: it must reach the watch either
        # through the new listing or as an event after it.
        api.create(SECRETS, namespace, secret("during"))
        wait_for(lambda: watch.lists >= 2, timeout=120, what="a listing after 410 Gone")
        wait_for(
            lambda: "during" in added or any((namespace, "during") in seen for seen in listings),
            timeout=60,
            what="the Secret made around the fault",
        )
        api.create(SECRETS, namespace, secret("after"))
        wait_for(lambda: "after" in added, timeout=60, what="events after the new listing")
        assert watch.running
    finally:
        watch.stop()
