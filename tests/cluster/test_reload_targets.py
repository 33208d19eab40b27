"""``spec.reload.targets`` on the real control plane: sources that name their workloads.

A ConfigProfile or SealedSecret lists workloads by kind and name or by label
selector; those roll like annotated ones (once per effective change, the
workload's own strategy still deciding), only ever in the source's namespace,
and the source's ``status.workloads`` says which revision each one records.
ReplicaSet and ControllerRevision counts made by kube-controller-manager are
the ground truth for "rolled"; "left alone" is asserted only after a positive
signal that the same pass ran (another workload's rollout or record).
"""

from __future__ import annotations

import pytest
import yaml

from kstrata.crypto import PublicKeyBundle
from kstrata.domain.crds import GROUP, VERSION
from support.cluster import TestCluster
from support.operator import running_operator
from support.reloads import (
    annotation,
    apply,
    apply_profile,
    apps,
    controller_revisions,
    create_daemon_set,
    create_deployment,
    custom,
    deployment,
    replica_sets,
    rollout_events,
    sealed_manifest,
    status_workloads,
    template_annotation,
    wait_count,
    wait_recorded,
    wait_revision,
    wait_sealed_revision,
    wait_template,
)
from support.sealed_secrets import operator_for, published_bundle
from support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("kstrata_crds")


def test_targets_by_name_roll_in_their_namespace_only(
    cluster: TestCluster, namespace: str, other_namespace: str
) -> None:
    targets = [
        {"kind": "Deployment", "name": "web"},
        {"kind": "DaemonSet", "name": "agent"},
        {"kind": "Deployment", "name": "quiet"},
    ]
    with running_operator(cluster, namespaces=(namespace, other_namespace)):
        # None of these workloads is annotated: the profile names them.
        create_deployment(cluster, namespace, "web", {})
        create_daemon_set(cluster, namespace, "agent", {})
        create_deployment(cluster, namespace, "quiet", {"kstrata.dev/reload-strategy": "none"})
        create_deployment(cluster, namespace, "bystander", {})
        # Same name, another namespace: a target never reaches across.
        create_deployment(cluster, other_namespace, "web", {})
        apply_profile(
            cluster, namespace, "payments", {"base": {"port": 1}, "reload": {"targets": targets}}
        )
        wait_revision(cluster, namespace, "payments", 1)
        # First sight of a target records, and restarts nothing.
        wait_recorded(cluster, namespace, "web", "payments=1")
        wait_for(
            lambda: (
                status_workloads(cluster, namespace, "payments")
                == [
                    {"kind": "DaemonSet", "name": "agent", "revision": 1},
                    {"kind": "Deployment", "name": "web", "revision": 1},
                ]
            ),
            timeout=30,
            what="status.workloads at revision 1",
        )
        wait_count(lambda: replica_sets(cluster, namespace, "web"), 1, "web RS")
        wait_count(
            lambda: controller_revisions(cluster, namespace, "agent", "DaemonSet"), 1, "agent CRs"
        )

        for port in (2, 3):
            apply_profile(
                cluster,
                namespace,
                "payments",
                {"base": {"port": port}, "reload": {"targets": targets}},
            )
            wait_revision(cluster, namespace, "payments", port)
            wait_template(cluster, namespace, "web", f"payments={port}")
            wait_count(lambda: replica_sets(cluster, namespace, "web"), port, "web RS")
            wait_count(
                lambda: controller_revisions(cluster, namespace, "agent", "DaemonSet"),
                port,
                "agent CRs",
            )
        wait_for(
            lambda: (
                [w.get("revision") for w in status_workloads(cluster, namespace, "payments")]
                == [3, 3]
            ),
            timeout=30,
            what="status.workloads at revision 3",
        )
        wait_for(
            lambda: len(rollout_events(cluster, namespace, "web")) >= 2, timeout=30, what="events"
        )
        assert len(rollout_events(cluster, namespace, "web")) == 2
        assert replica_sets(cluster, namespace, "web") == 3
        # Same passes as web's rollouts: the strategy "none" and the untargeted
        # workload were evaluated and left alone; the other namespace never seen.
        for name in ("quiet", "bystander"):
            assert replica_sets(cluster, namespace, name) == 1, name
            assert template_annotation(deployment(cluster, namespace, name)) is None
        assert annotation(deployment(cluster, namespace, "bystander")) is None
        assert replica_sets(cluster, other_namespace, "web") == 1
        assert annotation(deployment(cluster, other_namespace, "web")) is None
        assert template_annotation(deployment(cluster, other_namespace, "web")) is None


def test_a_target_cannot_name_another_namespace(
    cluster: TestCluster, namespace: str, other_namespace: str
) -> None:
    """A ``namespace`` in a target is not part of the API: the apiserver drops or refuses it."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigProfile",
        "metadata": {"name": "payments"},
        "spec": {
            "base": {"port": 1},
            "reload": {
                "targets": [{"kind": "Deployment", "name": "web", "namespace": other_namespace}]
            },
        },
    }
    refused = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=False
    )
    assert refused.returncode != 0
    assert "namespace" in refused.stderr
    with running_operator(cluster, namespaces=(namespace, other_namespace)):
        create_deployment(cluster, other_namespace, "web", {})
        create_deployment(cluster, namespace, "api", {"kstrata.dev/reload": "payments"})
        # Without strict field validation the field is pruned on the way in.
        custom(cluster).create_namespaced_custom_object(
            GROUP, VERSION, namespace, "configprofiles", body
        )
        stored = custom(cluster).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "configprofiles", "payments"
        )
        assert stored["spec"]["reload"]["targets"] == [{"kind": "Deployment", "name": "web"}]
        wait_revision(cluster, namespace, "payments", 1)
        wait_recorded(cluster, namespace, "api", "payments=1")
        apply_profile(
            cluster,
            namespace,
            "payments",
            {"base": {"port": 2}, "reload": {"targets": [{"kind": "Deployment", "name": "web"}]}},
        )
        wait_revision(cluster, namespace, "payments", 2)
        # api rolling proves the pass ran; the other namespace's web was never touched.
        wait_count(lambda: replica_sets(cluster, namespace, "api"), 2, "api RS")
        wait_for(
            lambda: (
                status_workloads(cluster, namespace, "payments")
                == [{"kind": "Deployment", "name": "api", "revision": 2}]
            ),
            timeout=30,
            what="status.workloads with api only",
        )
        other = deployment(cluster, other_namespace, "web")
        assert annotation(other) is None
        assert template_annotation(other) is None
        assert replica_sets(cluster, other_namespace, "web") == 1
        assert not rollout_events(cluster, other_namespace, "web")


def test_sealed_secret_targets_by_selector(
    cluster: TestCluster, namespace: str, other_namespace: str
) -> None:
    keys = other_namespace  # the operator's own namespace in this test
    backend = {"kind": "Deployment", "selector": {"matchLabels": {"tier": "backend"}}}

    def apply_sealed(value: bytes, bundle: PublicKeyBundle) -> None:
        apply(cluster, namespace, sealed_manifest(bundle, namespace, value, targets=[backend]))

    def labelled(name: str, tier: str, ns: str = namespace) -> None:
        create_deployment(cluster, ns, name, {})
        apps(cluster).patch_namespaced_deployment(
            name, ns, {"metadata": {"labels": {"tier": tier}}}
        )

    with operator_for(cluster, namespace, keys):
        bundle = published_bundle(cluster, keys)
        labelled("orders", "backend")
        labelled("frontend", "frontend")
        labelled("elsewhere", "backend", ns=keys)
        apply_sealed(b"one", bundle)
        wait_sealed_revision(cluster, namespace, "db", 1)
        wait_recorded(cluster, namespace, "orders", "db=1")
        wait_for(
            lambda: (
                status_workloads(cluster, namespace, "db", "sealedsecrets")
                == [{"kind": "Deployment", "name": "orders", "revision": 1}]
            ),
            timeout=30,
            what="the SealedSecret's status.workloads",
        )

        apply_sealed(b"two", bundle)
        wait_sealed_revision(cluster, namespace, "db", 2)
        wait_count(lambda: replica_sets(cluster, namespace, "orders"), 2, "orders RS")
        assert template_annotation(deployment(cluster, namespace, "orders")) == "db=2"
        assert replica_sets(cluster, namespace, "frontend") == 1
        assert annotation(deployment(cluster, namespace, "frontend")) is None
        assert annotation(deployment(cluster, keys, "elsewhere")) is None

        # Relabelling makes a workload a target: recorded at once, no restart.
        apps(cluster).patch_namespaced_deployment(
            "frontend", namespace, {"metadata": {"labels": {"tier": "backend"}}}
        )
        wait_recorded(cluster, namespace, "frontend", "db=2")
        assert replica_sets(cluster, namespace, "frontend") == 1

        apply_sealed(b"three", bundle)
        wait_sealed_revision(cluster, namespace, "db", 3)
        for name in ("orders", "frontend"):
            wait_template(cluster, namespace, name, "db=3")
        wait_count(lambda: replica_sets(cluster, namespace, "orders"), 3, "orders RS")
        wait_count(lambda: replica_sets(cluster, namespace, "frontend"), 2, "frontend RS")
        wait_for(
            lambda: (
                status_workloads(cluster, namespace, "db", "sealedsecrets")
                == [
                    {"kind": "Deployment", "name": "frontend", "revision": 3},
                    {"kind": "Deployment", "name": "orders", "revision": 3},
                ]
            ),
            timeout=30,
            what="both workloads at revision 3 in status",
        )
        assert replica_sets(cluster, keys, "elsewhere") == 1
        assert annotation(deployment(cluster, keys, "elsewhere")) is None
