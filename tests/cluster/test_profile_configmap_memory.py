"""A ConfigProfile change writes its ConfigMap from the reconciler's memory, without a GET.

The reconciler keeps, per profile, what it needs of the ConfigMap it last
wrote or read (``kstrata.app.profiles.ConfigMapMemory``), and a new render is
PUT from it with its resourceVersion (issue 18 item 2: one round trip less
before the rollout).  What must not change: a ConfigMap edited by hand makes
that PUT fail with 409, and the same reconcile reads it and writes the
render (the edit's metadata kept, its data not); a render equal to what is
remembered still reads, so a hand edit or deletion is repaired as before;
a deleted profile's entry goes.

The operator runs in this process; its requests to the real control plane
are recorded on their way through ``KubeApi`` (and sent as usual), with the
error class of any refused one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kstrata.app.profiles import ConfigMapMemory
from kstrata.errors import KstrataError
from kstrata.kube.api import KubeApi
from support.cluster import TestCluster
from support.config_profiles import PLURAL, apply, get_profile, profile, wait_ready
from support.operator import running_operator
from support.waiting import wait_for

GROUP, VERSION = "kstrata.dev", "v1alpha1"

pytestmark = pytest.mark.usefixtures("kstrata_crds")


class ConfigMapRequests:
    """The operator's requests for one ConfigMap: (method, "ok" or the error's class name)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, str]] = []

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()

    def of(self, namespace: str, name: str) -> list[tuple[str, str]]:
        path = f"/namespaces/{namespace}/configmaps/{name}"
        with self.lock:
            return [(method, outcome) for method, where, outcome in self.seen if where == path]


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> ConfigMapRequests:
    recorded = ConfigMapRequests()
    send = KubeApi._call

    def call(self: KubeApi, method: str, path: str, what: str, **kwargs: Any) -> Any:
        # A create is a POST to the collection: recorded under the object's path.
        body = kwargs.get("body")
        if method == "POST" and path.endswith("/configmaps") and isinstance(body, dict):
            where = f"{path[path.index('/namespaces/') :]}/{body['metadata']['name']}"
        else:
            where = path[path.index("/namespaces/") :] if "/namespaces/" in path else path
        try:
            answer = send(self, method, path, what, **kwargs)
        except KstrataError as error:
            outcome = type(error).__name__
            raise
        else:
            outcome = "ok"
            return answer
        finally:
            with recorded.lock:
                recorded.seen.append((method, where, outcome))

    monkeypatch.setattr(KubeApi, "_call", call)
    return recorded


@pytest.fixture
def memories(monkeypatch: pytest.MonkeyPatch) -> list[ConfigMapMemory]:
    """Every ``ConfigMapMemory`` made while the test runs (the operator's is the first)."""
    made: list[ConfigMapMemory] = []
    init = ConfigMapMemory.__init__

    def recording(self: ConfigMapMemory, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ConfigMapMemory, "__init__", recording)
    return made


@pytest.fixture
def operator(cluster: TestCluster, namespace: str) -> Iterator[None]:
    with running_operator(cluster, namespaces=(namespace,)):
        yield


def served(cluster: TestCluster, namespace: str, name: str) -> Any:
    return yaml.safe_load(
        cluster.core.read_namespaced_config_map(name, namespace).data["config.yaml"]
    )


def serves(cluster: TestCluster, namespace: str, name: str, config: Any) -> bool:
    found = cluster.core.read_namespaced_config_map(name, namespace)
    return bool(yaml.safe_load((found.data or {}).get("config.yaml") or "null") == config)


def test_a_change_writes_the_config_map_without_reading_it(
    cluster: TestCluster, namespace: str, requests: ConfigMapRequests, operator: None
) -> None:
    apply(cluster, namespace, profile("web", {"base": {"v": 0}}))
    wait_ready(cluster, namespace, "web", revision=1)
    for v in (1, 2, 3):
        requests.clear()
        apply(cluster, namespace, profile("web", {"base": {"v": v}}))
        wait_ready(cluster, namespace, "web", revision=v + 1)
        assert served(cluster, namespace, "web") == {"v": v}
        # One PUT, from memory: no GET before it.
        assert requests.of(namespace, "web") == [("PUT", "ok")]
    labels = cluster.core.read_namespaced_config_map("web", namespace).metadata.labels
    assert labels["kstrata.dev/revision"] == "4"


def test_a_change_after_a_hand_edit_or_deletion_reads_and_writes_the_render(
    cluster: TestCluster, namespace: str, requests: ConfigMapRequests, operator: None
) -> None:
    apply(cluster, namespace, profile("web", {"base": {"v": 1}}))
    wait_ready(cluster, namespace, "web", revision=1)
    # Edited by hand: other data, and an annotation of its own.
    cluster.core.patch_namespaced_config_map(
        "web",
        namespace,
        {"metadata": {"annotations": {"team": "payments"}}, "data": {"config.yaml": "v: 99\n"}},
    )
    requests.clear()
    apply(cluster, namespace, profile("web", {"base": {"v": 2}}))
    wait_ready(cluster, namespace, "web", revision=2)
    wait_for(lambda: serves(cluster, namespace, "web", {"v": 2}), timeout=30, what="the render")
    # The PUT from memory was refused (its resourceVersion is the edit's
    # predecessor); the reconcile read the ConfigMap and wrote over it.
    assert requests.of(namespace, "web") == [
        ("PUT", "ConflictError"),
        ("GET", "ok"),
        ("PUT", "ok"),
    ]
    found = cluster.core.read_namespaced_config_map("web", namespace)
    assert found.metadata.annotations == {"team": "payments"}
    assert found.metadata.labels["kstrata.dev/revision"] == "2"

    # The next change goes from memory again, and carries what the edit added.
    requests.clear()
    apply(cluster, namespace, profile("web", {"base": {"v": 3}}))
    wait_ready(cluster, namespace, "web", revision=3)
    assert requests.of(namespace, "web") == [("PUT", "ok")]
    found = cluster.core.read_namespaced_config_map("web", namespace)
    assert yaml.safe_load(found.data["config.yaml"]) == {"v": 3}
    assert found.metadata.annotations == {"team": "payments"}

    # Deleted by hand, then changed: the PUT from memory finds nothing (404),
    # the reconcile reads and creates it.
    cluster.core.delete_namespaced_config_map("web", namespace)
    requests.clear()
    apply(cluster, namespace, profile("web", {"base": {"v": 4}}))
    wait_ready(cluster, namespace, "web", revision=4)
    wait_for(lambda: serves(cluster, namespace, "web", {"v": 4}), timeout=30, what="the render")
    assert requests.of(namespace, "web") == [
        ("PUT", "NotFoundError"),
        ("GET", "NotFoundError"),
        ("POST", "ok"),
    ]


def test_a_render_equal_to_the_memory_still_reads_and_repairs(
    cluster: TestCluster, namespace: str, requests: ConfigMapRequests, operator: None
) -> None:
    apply(cluster, namespace, profile("web", {"base": {"v": 1}}))
    wait_ready(cluster, namespace, "web", revision=1)
    cluster.core.patch_namespaced_config_map("web", namespace, {"data": {"config.yaml": "v: 99\n"}})
    # A spec change that renders the same output: read, repaired, no new revision.
    requests.clear()
    apply(cluster, namespace, profile("web", {"base": {"v": 1}, "revisionHistoryLimit": 5}))
    wait_for(lambda: serves(cluster, namespace, "web", {"v": 1}), timeout=30, what="the repair")
    wait_ready(cluster, namespace, "web", revision=1)
    assert requests.of(namespace, "web") == [("GET", "ok"), ("PUT", "ok")]

    # Deleted by hand: the same, it is created again.
    cluster.core.delete_namespaced_config_map("web", namespace)
    requests.clear()
    apply(cluster, namespace, profile("web", {"base": {"v": 1}, "revisionHistoryLimit": 6}))
    wait_for(
        lambda: cluster.exists(cluster.core.read_namespaced_config_map, "web", namespace),
        timeout=30,
        what="the ConfigMap created again",
    )
    assert serves(cluster, namespace, "web", {"v": 1})
    wait_ready(cluster, namespace, "web", revision=1)
    assert requests.of(namespace, "web") == [("GET", "NotFoundError"), ("POST", "ok")]


def test_a_deleted_profile_is_forgotten(
    cluster: TestCluster, namespace: str, memories: list[ConfigMapMemory]
) -> None:
    with running_operator(cluster, namespaces=(namespace,)):
        memory = memories[0]
        for name in ("a", "b"):
            apply(cluster, namespace, profile(name, {"base": {"v": 1}}))
        uids = {
            name: wait_ready(cluster, namespace, name, revision=1)["metadata"]["uid"]
            for name in "ab"
        }
        assert all(memory.get(uid) is not None for uid in uids.values())
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a")
        wait_for(lambda: memory.get(uids["a"]) is None, timeout=30, what="a forgotten")
        assert memory.get(uids["b"]) is not None
        assert len(memory) == 1
        assert get_profile(cluster, namespace, "b")["metadata"]["uid"] == uids["b"]
