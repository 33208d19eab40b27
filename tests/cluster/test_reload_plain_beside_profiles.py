"""Plain ConfigMap and Secret changes in a namespace that also has ConfigProfiles.

A pass for a followed ConfigMap's or Secret's data change decides on the
watch's copies of its followers, with no LIST, when nothing else changed
since a pass covered the whole namespace (``ReloadTriggers.plain_followers``).
What must hold on the real control plane: each change rolls each follower
once, a ConfigMap and a Secret written together roll a workload that follows
both once, the profile's own follower rolls only for the profile, and the
passes list no ConfigProfiles (the apiserver's own request counter says so).

Ground truth for rollouts is kube-controller-manager's ReplicaSets, read once
the deployment controller has observed the latest template.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.cluster import TestCluster
from support.operator import running_operator
from support.reloads import apply, apply_profile, config_map, deployment_manifest, secret
from support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("kstrata_crds")

RECORD = "kstrata.dev/revisions"
CHANGES = 4


def replica_sets(cluster: TestCluster, namespace: str, name: str) -> int:
    def observed() -> bool:
        found = cluster.apps.read_namespaced_deployment(name, namespace)
        return (found.status.observed_generation or 0) >= (found.metadata.generation or 1)

    wait_for(observed, timeout=30, what=f"the deployment controller to observe {name}")
    return len(
        [
            rs
            for rs in cluster.apps.list_namespaced_replica_set(namespace).items
            if any(o.kind == "Deployment" and o.name == name for o in rs.metadata.owner_references)
        ]
    )


def wait_rolled(cluster: TestCluster, namespace: str, name: str, count: int) -> None:
    wait_for(
        lambda: replica_sets(cluster, namespace, name) >= count,
        timeout=30,
        what=f"{name} to have {count} ReplicaSets",
    )


def recorded(cluster: TestCluster, namespace: str, name: str) -> str:
    found = cluster.apps.read_namespaced_deployment(name, namespace)
    return str((found.metadata.annotations or {}).get(RECORD) or "")


def profile_lists(cluster: TestCluster) -> float:
    """The apiserver's count of LIST requests for ConfigProfiles in a namespace."""
    exposition = cluster.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    wanted = ('resource="configprofiles"', 'verb="LIST"', 'scope="namespace"')
    for line in exposition.splitlines():
        if line.startswith("apiserver_request_total{") and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def write_together(cluster: TestCluster, namespace: str, value: str, token: str) -> float:
    """Write ``cfg``'s and ``creds``' new data from two threads at once: one change set.

    Not one ``kubectl apply``: kubectl writes one object after the other,
    reading the next and computing its patch in between.  Traced with
    ``-v=6`` on a 2-core machine, its two writes came back 0.1-0.5 s apart
    at load 5-10 and 0.5-14.9 s apart at load 17-33, where the pair rolled
    twice whenever they were over 1 s apart: writes that far apart are
    two change sets by the product's own rule (docs/architecture.md,
    Reloads), which no controller may merge.  Written from two threads,
    they came back 0-0.58 s apart at that load.  What the operator must
    absorb is its own latency after that: the watches, and the Secret's
    metadata event and GET (``ReloadTriggers.plain_reading``).

    Returns how far apart the two answers came back (seconds), for a failure's message.
    """
    barrier = threading.Barrier(2)

    def write_config_map() -> float:
        barrier.wait(timeout=30)
        cluster.core.patch_namespaced_config_map("cfg", namespace, {"data": {"v": value}})
        return time.monotonic()

    def write_secret() -> float:
        barrier.wait(timeout=30)
        cluster.core.patch_namespaced_secret("creds", namespace, {"stringData": {"token": token}})
        return time.monotonic()

    with ThreadPoolExecutor(2) as pool:
        answers = [pool.submit(write_config_map), pool.submit(write_secret)]
        first, second = (answer.result() for answer in answers)
    return abs(first - second)


def test_plain_changes_beside_a_profile_roll_their_followers_once_without_lists(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:
    ns = namespace
    apply_profile(cluster, ns, "p", {"base": {"v": 0}})
    apply(cluster, ns, config_map("cfg", {"v": "0"}), secret("creds", {"token": "plain-canary-0"}))
    apply(
        cluster,
        ns,
        deployment_manifest("web", {"kstrata.dev/reload": "p"}),
        deployment_manifest("single", {"kstrata.dev/reload": "configmap/cfg"}),
        deployment_manifest("pair", {"kstrata.dev/reload": "configmap/cfg,secret/creds"}),
    )
    settings = {"namespaces": (ns, keys_namespace), "operator_namespace": keys_namespace}
    with running_operator(cluster, **settings):
        for name, key in (("web", "p="), ("single", "configmap/cfg="), ("pair", "secret/creds=")):

            def records(name: str = name, key: str = key) -> bool:
                return key in recorded(cluster, ns, name)

            wait_for(records, timeout=60, what=f"{name} to record what it follows")
        lists_before = profile_lists(cluster)

        # One ConfigMap change at a time: each rolls both of its followers once
        # (``pair`` once the namespace has settled: it follows two sources).
        for i in range(1, CHANGES + 1):
            apply(cluster, ns, config_map("cfg", {"v": str(i)}))
            wait_rolled(cluster, ns, "single", 1 + i)
            wait_rolled(cluster, ns, "pair", 1 + i)
        # A ConfigMap and a Secret written together: one rollout of the workload following both.
        apart = write_together(cluster, ns, "set", "plain-canary-1")
        wait_rolled(cluster, ns, "pair", 2 + CHANGES)
        wait_rolled(cluster, ns, "single", 2 + CHANGES)
        lists_after = profile_lists(cluster)

        # The profile's follower rolls for the profile only, and still does.
        assert replica_sets(cluster, ns, "web") == 1
        apply_profile(cluster, ns, "p", {"base": {"v": 1}})
        wait_rolled(cluster, ns, "web", 2)

        counts = {name: replica_sets(cluster, ns, name) for name in ("web", "single", "pair")}
        expected = {"web": 2, "single": 2 + CHANGES, "pair": 2 + CHANGES}
        assert counts == expected, f"the change set's writes came back {apart:.3f} s apart"
    # The plain changes' passes read no ConfigProfiles (one LIST allowed for a
    # watch of kopf's that relists meanwhile); a pass that lists would have
    # made one per change.
    assert lists_after - lists_before <= 1, (lists_before, lists_after)
