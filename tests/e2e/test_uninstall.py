"""``kubectl delete -k`` of the overlay uninstalls kstrata cleanly; the node keeps working.

Named to run last in the tier (the kstrata fixture installs again if a test
needs it afterwards).
"""

from __future__ import annotations

from support.e2e import (
    Installed,
    apply,
    deployment,
    logs,
    pods_of,
    restricted_container,
    uninstall_kstrata,
    wait_rolled_out,
)


def test_uninstall_leaves_nothing_that_blocks_writes(
    kstrata: Installed, e2e_namespace: str
) -> None:
    cluster = kstrata.cluster
    uninstall_kstrata(cluster)
    left = cluster.kubectl(
        "get",
        "validatingwebhookconfigurations,crd,clusterrole,clusterrolebinding",
        "-l",
        "app.kubernetes.io/part-of=kstrata",
        "-o",
        "name",
    )
    assert left.stdout.strip() == ""
    assert (
        cluster.kubectl(
            "get", "validatingwebhookconfiguration", "kstrata.dev", check=False
        ).returncode
        != 0
    )
    # Writes are not blocked, and the node still runs pods.
    apply(
        cluster,
        e2e_namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "after"},
            "data": {"a": "b"},
        },
        deployment(
            "after",
            [restricted_container("app", ["sh", "-c", "echo alive; exec sleep 100000"])],
            [],
            replicas=1,
        ),
    )
    wait_rolled_out(cluster, e2e_namespace, "after")
    (pod,) = pods_of(cluster, e2e_namespace, "after")
    assert logs(cluster, e2e_namespace, pod.metadata.name) == "alive\n"
