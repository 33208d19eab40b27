"""The local control plane is a real Kubernetes: these behaviours need real components.

Each test would fail against a mock API server or without kube-controller-manager.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from support.cluster import TestCluster
from support.waiting import wait_for

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.kstrata.dev"},
    "spec": {
        "group": "test.kstrata.dev",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_kubectl_and_server_report_their_versions(cluster: TestCluster) -> None:
    report = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert report["serverVersion"]["major"] == "1"
    if cluster.plane is not None:
        # The embedded binaries are stamped with the version the Go module pins.
        pinned = cluster.plane.kubernetes_version
        assert report["clientVersion"]["gitVersion"] == pinned
        assert report["serverVersion"]["gitVersion"] == pinned
        assert report["serverVersion"]["minor"] == pinned.split(".")[1]


def test_custom_resource_is_created_validated_and_watched(
    cluster: TestCluster, namespace: str
) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.test.kstrata.dev"
    )
    events: queue.Queue[tuple[str, str]] = queue.Queue()
    watcher = watch.Watch()  # type: ignore[no-untyped-call]
    started = threading.Event()

    def follow() -> None:
        stream = watcher.stream(  # type: ignore[no-untyped-call]
            cluster.custom.list_namespaced_custom_object,
            "test.kstrata.dev",
            "v1",
            namespace,
            "widgets",
            timeout_seconds=60,
        )
        started.set()
        try:
            for event in stream:
                events.put((event["type"], event["object"]["metadata"]["name"]))
        except ProtocolError:
            # watcher.stop() and the namespace teardown end the stream mid-chunk.
            return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    started.wait(10)
    body = {
        "apiVersion": "test.kstrata.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3},
    }
    cluster.custom.create_namespaced_custom_object(
        "test.kstrata.dev", "v1", namespace, "widgets", body
    )
    seen = wait_for(lambda: _drain_until(events, ("ADDED", "w1")), timeout=30, what="ADDED w1")
    assert seen == ("ADDED", "w1")
    watcher.stop()  # type: ignore[no-untyped-call]

    # The structural schema is enforced by the apiserver itself.
    invalid = dict(body, metadata={"name": "w2"}, spec={"size": 0})
    with pytest.raises(ApiException) as rejected:
        cluster.custom.create_namespaced_custom_object(
            "test.kstrata.dev", "v1", namespace, "widgets", invalid
        )
    assert rejected.value.status == 422


def _drain_until(
    events: queue.Queue[tuple[str, str]], wanted: tuple[str, str]
) -> tuple[str, str] | None:
    while True:
        try:
            event = events.get(timeout=0.2)
        except queue.Empty:
            return None
        if event == wanted:
            return event


def test_deployment_gets_a_replicaset_from_the_controller_manager(
    cluster: TestCluster, namespace: str
) -> None:
    labels = {"app": "web"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
            ),
        ),
    )
    created = cluster.apps.create_namespaced_deployment(namespace, deployment)

    def owned_replicasets() -> list[client.V1ReplicaSet]:
        items = cluster.apps.list_namespaced_replica_set(namespace).items
        return [
            rs
            for rs in items
            if any(ref.uid == created.metadata.uid for ref in rs.metadata.owner_references or [])
        ]

    replicasets = wait_for(owned_replicasets, timeout=60, what="a ReplicaSet for the Deployment")
    assert len(replicasets) == 1
    assert replicasets[0].spec.replicas == 1


def test_deleted_namespace_really_disappears(cluster: TestCluster) -> None:
    name = f"gone-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    cluster.core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content"), data={"a": "1"})
    )
    cluster.core.delete_namespace(name)
    # Only kube-controller-manager's namespace controller empties it and removes the finalizer.
    wait_for(
        lambda: not cluster.exists(cluster.core.read_namespace, name),
        timeout=90,
        what=f"namespace {name} to be deleted",
    )
    assert not cluster.exists(cluster.core.read_namespace, name)


def test_update_with_a_stale_resource_version_conflicts(
    cluster: TestCluster, namespace: str
) -> None:
    original = cluster.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"v": "1"})
    )
    fresh = cluster.core.read_namespaced_config_map("cm", namespace)
    fresh.data = {"v": "2"}
    cluster.core.replace_namespaced_config_map("cm", namespace, fresh)
    original.data = {"v": "3"}
    with pytest.raises(ApiException) as conflict:
        cluster.core.replace_namespaced_config_map("cm", namespace, original)
    assert conflict.value.status == 409
    assert cluster.core.read_namespaced_config_map("cm", namespace).data == {"v": "2"}


def test_dependents_are_garbage_collected_with_their_owner(
    cluster: TestCluster, namespace: str
) -> None:
    owner = cluster.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=str(owner.metadata.uid)
    )
    cluster.core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference])
        ),
    )
    cluster.core.delete_namespaced_config_map("owner", namespace)
    wait_for(
        lambda: not cluster.exists(cluster.core.read_namespaced_config_map, "dependent", namespace),
        timeout=60,
        what="the dependent to be garbage-collected",
    )
    assert not cluster.exists(cluster.core.read_namespaced_config_map, "dependent", namespace)
