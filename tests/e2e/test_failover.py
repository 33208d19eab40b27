"""The active operator pod deleted in the middle of a burst of changes: the standby takes over.

Both replicas run (kopf peering: the higher priority works, the other
waits).  While ``kubectl apply`` writes a series of changes to a profile,
the active pod is deleted as a rolling update or a node drain would.  Every
apply must still be admitted (both replicas serve the webhook), the standby
must take over, the last change must reach every pod, and no revision may
be rolled out twice.
"""

from __future__ import annotations

from typing import Any

import yaml

from support.e2e import (
    OPERATOR_NAMESPACE,
    OPERATOR_SELECTOR,
    Installed,
    apply,
    config_profile,
    deployment,
    install_kstrata,
    logs,
    pods_of,
    restricted_container,
    wait_rolled_out,
)
from support.waiting import wait_for

CHANGES = 12
DELETE_AFTER = 4


def profile(version: int) -> dict[str, Any]:
    return config_profile("app", "app-config", {"version": version})


def active_operator(cluster: Any) -> str:
    """The running operator pod with the highest peering priority (the one that works)."""
    peering: Any = cluster.custom.get_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings", "kstrata"
    )
    running = {
        p.metadata.name
        for p in cluster.core.list_namespaced_pod(
            OPERATOR_NAMESPACE, label_selector=OPERATOR_SELECTOR
        ).items
        if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
    }
    peers = {k: v for k, v in (peering.get("status") or {}).items() if k in running}
    leader: str = max(peers, key=lambda name: int(peers[name]["priority"]))
    return leader


def test_standby_takes_over_mid_burst(kstrata: Installed, e2e_namespace: str) -> None:
    cluster, ns = kstrata.cluster, e2e_namespace
    apply(
        cluster,
        ns,
        profile(0),
        deployment(
            "app",
            [
                restricted_container(
                    "app",
                    ["sh", "-c", "cat /etc/app/config.yaml; exec sleep 100000"],
                    volumeMounts=[{"name": "config", "mountPath": "/etc/app"}],
                )
            ],
            [{"name": "config", "configMap": {"name": "app-config"}}],
            annotations={"kstrata.dev/reload": "app"},
        ),
    )
    wait_rolled_out(cluster, ns, "app")
    active = active_operator(cluster)

    for version in range(1, CHANGES + 1):
        # Each apply must be admitted: the webhook is served by both replicas.
        apply(cluster, ns, profile(version))
        if version == DELETE_AFTER:
            cluster.kubectl("delete", "pod", "-n", OPERATOR_NAMESPACE, active, "--wait=false")

    def converged() -> bool:
        body: Any = cluster.custom.get_namespaced_custom_object(
            "kstrata.dev", "v1alpha1", ns, "configprofiles", "app"
        )
        status = body.get("status") or {}
        ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
        return (
            status.get("observedGeneration") == body["metadata"]["generation"]
            and bool(ready)
            and ready[0]["status"] == "True"
        )

    wait_for(converged, timeout=120, interval=0.5, what="the profile converged on the last change")
    wait_for(
        lambda: (
            {logs(cluster, ns, p.metadata.name) for p in pods_of(cluster, ns, "app")}
            == {yaml.safe_dump({"version": CHANGES})}
        ),
        timeout=120,
        interval=0.5,
        what="every pod serving the last change",
    )
    wait_rolled_out(cluster, ns, "app")
    assert active_operator(cluster) != active
    # No revision rolled out twice: each ReplicaSet carries a different one.
    sets = cluster.apps.list_namespaced_replica_set(ns, label_selector="app=app").items
    markers = [
        (s.spec.template.metadata.annotations or {}).get("kstrata.dev/revisions") for s in sets
    ]
    assert len(markers) == len(set(markers)), markers
    # The Deployment brings the operator back to two replicas.
    install_kstrata(cluster)
