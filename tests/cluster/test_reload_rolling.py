"""Rolling restarts on the real control plane: one rollout per effective change, no more.

kube-controller-manager makes a new ReplicaSet per Deployment rollout and a new
ControllerRevision per StatefulSet or DaemonSet template change (a DaemonSet
gets its revisions even on this node-less control plane), so those counts are
the ground truth.  "Nothing happened" is only asserted after a positive signal
that the operator has processed the change (a status, a recorded annotation,
a reload pass counted in the metrics, or a later rollout that proves the
count).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kstrata.crypto import PublicKeyBundle
from support.cluster import TestCluster
from support.config_profiles import profile
from support.operator import running_operator
from support.reloads import (
    annotation,
    apply_profile,
    apply_profile_and_sealed,
    apps,
    controller_revisions,
    cpu_burners,
    create_daemon_set,
    create_deployment,
    create_stateful_set,
    deployment,
    passes,
    pod_revisions,
    profile_status,
    replica_sets,
    rollout_events,
    sealed_manifest,
    status_workloads,
    template_annotation,
    wait_count,
    wait_passes_after,
    wait_recorded,
    wait_revision,
    wait_sealed_revision,
    wait_template,
)
from support.sealed_secrets import operator_for, published_bundle
from support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("kstrata_crds")


def test_one_rollout_per_effective_change_and_none_otherwise(
    cluster: TestCluster, namespace: str, other_namespace: str
) -> None:
    schema = {"type": "object", "properties": {"port": {"type": "integer"}}}
    with running_operator(cluster, namespaces=(namespace, other_namespace)):
        for ns in (namespace, other_namespace):
            apply_profile(cluster, ns, "payments", {"schema": schema, "base": {"port": 1}})
            wait_revision(cluster, ns, "payments", 1)
        create_deployment(cluster, namespace, "web", {"kstrata.dev/reload": "payments"})
        create_stateful_set(cluster, namespace, "db", {"kstrata.dev/reload": "auto"})
        create_daemon_set(cluster, namespace, "agent", {"kstrata.dev/reload": "payments"})
        create_deployment(cluster, namespace, "bystander", {})
        for strategy in ("hot", "none"):
            create_deployment(
                cluster,
                namespace,
                f"s-{strategy}",
                {"kstrata.dev/reload": "payments", "kstrata.dev/reload-strategy": strategy},
            )
        create_deployment(cluster, other_namespace, "web", {"kstrata.dev/reload": "payments"})
        wait_recorded(cluster, namespace, "web", "payments=1")
        wait_recorded(cluster, other_namespace, "web", "payments=1")
        wait_for(
            lambda: (
                annotation(apps(cluster).read_namespaced_stateful_set("db", namespace))
                == "payments=1"
            ),
            timeout=30,
            what="db to record payments=1",
        )
        names = ("web", "bystander", "s-hot", "s-none")
        for name in names:
            wait_count(lambda n=name: replica_sets(cluster, namespace, n), 1, f"{name} RS")
        wait_count(lambda: replica_sets(cluster, other_namespace, "web"), 1, "other/web RS")
        wait_count(lambda: controller_revisions(cluster, namespace, "db"), 1, "db revisions")
        wait_count(
            lambda: controller_revisions(cluster, namespace, "agent", "DaemonSet"),
            1,
            "agent revisions",
        )
        # The profile's status lists its rolling workloads (not hot/none, not bystanders).
        wait_for(
            lambda: (
                status_workloads(cluster, namespace, "payments")
                == [
                    {"kind": "DaemonSet", "name": "agent", "revision": 1},
                    {"kind": "Deployment", "name": "web", "revision": 1},
                    {"kind": "StatefulSet", "name": "db", "revision": 1},
                ]
            ),
            timeout=30,
            what="status.workloads at revision 1",
        )

        # An effective change: exactly one rollout of each opted-in rolling workload.
        apply_profile(cluster, namespace, "payments", {"schema": schema, "base": {"port": 2}})
        wait_revision(cluster, namespace, "payments", 2)
        wait_for(
            lambda: template_annotation(deployment(cluster, namespace, "web")) == "payments=2",
            timeout=30,
            what="web's pod template to carry payments=2",
        )
        wait_count(lambda: replica_sets(cluster, namespace, "web"), 2, "web RS")
        wait_count(lambda: controller_revisions(cluster, namespace, "db"), 2, "db revisions")
        wait_count(
            lambda: controller_revisions(cluster, namespace, "agent", "DaemonSet"),
            2,
            "agent revisions",
        )
        wait_for(
            lambda: (
                [w.get("revision") for w in status_workloads(cluster, namespace, "payments")]
                == [2, 2, 2]
            ),
            timeout=30,
            what="status.workloads at revision 2",
        )
        # The hot workload's own pod is told to sync (an annotation on the pod,
        # never the template); a bystander's pod under the same selector is not.
        wait_for(
            lambda: pod_revisions(cluster, namespace, "s-hot") == ["payments=2"],
            timeout=30,
            what="s-hot's pod to be told to sync to payments=2",
        )
        assert pod_revisions(cluster, namespace, "bystander") == [None]
        (event,) = wait_for(
            lambda: rollout_events(cluster, namespace, "web"), timeout=30, what="the event"
        )
        assert event.type == "Normal"
        assert "payments 1->2" in event.message

        # Invalid input keeps the revision: Ready=False is the signal it was processed.
        apply_profile(cluster, namespace, "payments", {"schema": schema, "base": {"port": "x"}})

        def invalid() -> bool:
            status = profile_status(cluster, namespace, "payments")
            ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
            return bool(ready) and ready[0]["reason"] == "SchemaViolation"

        wait_for(invalid, timeout=30, what="the invalid change to be rejected")
        assert profile_status(cluster, namespace, "payments")["revision"] == 2

        # A metadata-only edit (a label) does not change the revision either.
        # kopf handles one object's events in order, so the label edit is
        # processed before the next spec change: if it made a revision or a
        # rollout, the counts below would be one higher.
        cluster.kubectl("label", "-n", namespace, "configprofile/payments", "team=pay")

        # The next effective change proves the count: one more, not two or three.
        apply_profile(cluster, namespace, "payments", {"schema": schema, "base": {"port": 3}})
        wait_revision(cluster, namespace, "payments", 3)
        wait_for(
            lambda: template_annotation(deployment(cluster, namespace, "web")) == "payments=3",
            timeout=30,
            what="web's pod template to carry payments=3",
        )
        wait_count(lambda: replica_sets(cluster, namespace, "web"), 3, "web RS")
        wait_for(
            lambda: len(rollout_events(cluster, namespace, "web")) >= 2, timeout=30, what="events"
        )
        assert len(rollout_events(cluster, namespace, "web")) == 2
        wait_count(
            lambda: controller_revisions(cluster, namespace, "agent", "DaemonSet"),
            3,
            "agent revisions",
        )
        assert controller_revisions(cluster, namespace, "db") == 3

        # Same pass as web's rollouts: the others were evaluated and left alone.
        for name in ("bystander", "s-hot", "s-none"):
            assert replica_sets(cluster, namespace, name) == 1, name
            assert template_annotation(deployment(cluster, namespace, name)) is None
        assert annotation(deployment(cluster, namespace, "bystander")) is None
        assert profile_status(cluster, namespace, "payments")["revision"] == 3
        assert replica_sets(cluster, other_namespace, "web") == 1
        assert annotation(deployment(cluster, other_namespace, "web")) == "payments=1"
        assert profile_status(cluster, other_namespace, "payments")["revision"] == 1
        assert status_workloads(cluster, other_namespace, "payments") == [
            {"kind": "Deployment", "name": "web", "revision": 1}
        ]


def test_operator_restart_rolls_nothing(cluster: TestCluster, namespace: str) -> None:
    apply_spec = {"base": {"port": 1}}
    with running_operator(cluster, namespaces=(namespace,)):
        apply_profile(cluster, namespace, "payments", apply_spec)
        wait_revision(cluster, namespace, "payments", 1)
        create_deployment(cluster, namespace, "web", {"kstrata.dev/reload": "payments"})
        wait_recorded(cluster, namespace, "web", "payments=1")
        apply_profile(cluster, namespace, "payments", {"base": {"port": 2}})
        wait_revision(cluster, namespace, "payments", 2)
        wait_recorded(cluster, namespace, "web", "payments=2")
        wait_count(lambda: replica_sets(cluster, namespace, "web"), 2, "web RS")

    before = passes()
    with running_operator(cluster, namespaces=(namespace,)):
        # The first sight of the profile and of the workload schedule a pass.
        wait_passes_after(before)
        assert replica_sets(cluster, namespace, "web") == 2
        assert template_annotation(deployment(cluster, namespace, "web")) == "payments=2"
        (event,) = rollout_events(cluster, namespace, "web")
        assert "payments 1->2" in event.message


def test_paused_holds_then_one_rollout_to_the_latest(cluster: TestCluster, namespace: str) -> None:
    with running_operator(cluster, namespaces=(namespace,)):
        apply_profile(cluster, namespace, "payments", {"base": {"port": 1}})
        wait_revision(cluster, namespace, "payments", 1)
        create_deployment(
            cluster,
            namespace,
            "web",
            {"kstrata.dev/reload": "payments", "kstrata.dev/reload-paused": "true"},
        )
        wait_recorded(cluster, namespace, "web", "payments=1")
        wait_count(lambda: replica_sets(cluster, namespace, "web"), 1, "web RS")
        for port, revision in ((2, 2), (3, 3)):
            before = passes()
            apply_profile(cluster, namespace, "payments", {"base": {"port": port}})
            wait_revision(cluster, namespace, "payments", revision)
            wait_passes_after(before)
            assert replica_sets(cluster, namespace, "web") == 1
            assert annotation(deployment(cluster, namespace, "web")) == "payments=1"

        cluster.kubectl("annotate", "-n", namespace, "deployment/web", "kstrata.dev/reload-paused-")
        wait_for(
            lambda: template_annotation(deployment(cluster, namespace, "web")) == "payments=3",
            timeout=30,
            what="the held change to roll out",
        )
        wait_count(lambda: replica_sets(cluster, namespace, "web"), 2, "web RS")
        wait_for(lambda: rollout_events(cluster, namespace, "web"), timeout=30, what="the event")
        # A further pass (triggered by a pause/unpause round) changes nothing.
        before = passes()
        cluster.kubectl(
            "annotate", "-n", namespace, "deployment/web", "kstrata.dev/reload-paused=true"
        )
        wait_passes_after(before)
        assert replica_sets(cluster, namespace, "web") == 2
        (event,) = rollout_events(cluster, namespace, "web")
        assert "payments 1->3" in event.message


@pytest.mark.parametrize("burning", [False, True], ids=["quiet", "both-cores-burning"])
def test_profile_and_sealed_secret_changed_together_roll_once(
    cluster: TestCluster, namespace: str, other_namespace: str, tmp_path: Path, burning: bool
) -> None:
    """One ``kubectl apply -f dir/`` with both changes rolls once, with the default settings.

    Also with a busy loop on every core, started before the operator: the
    operator then sees the two spec writes up to ~0.5 s apart.  A workload
    beside it that follows only the profile rolls once per change too.
    """
    keys = other_namespace  # the operator's own namespace in this test

    def apply_together(port: int, value: bytes, bundle: PublicKeyBundle) -> None:
        payments = profile("payments", {"base": {"port": port}})
        sealed = sealed_manifest(bundle, namespace, value)
        apply_profile_and_sealed(cluster, namespace, tmp_path, payments, sealed)

    rounds = (2, 3, 4)
    with cpu_burners(burning), operator_for(cluster, namespace, keys):
        bundle = published_bundle(cluster, keys)
        apply_together(1, b"one", bundle)
        wait_revision(cluster, namespace, "payments", 1)
        wait_sealed_revision(cluster, namespace, "db", 1)
        create_deployment(cluster, namespace, "web", {"kstrata.dev/reload": "payments,db"})
        create_deployment(cluster, namespace, "single", {"kstrata.dev/reload": "payments"}, "y")
        wait_recorded(cluster, namespace, "web", "db=1,payments=1")
        wait_recorded(cluster, namespace, "single", "payments=1")
        wait_count(lambda: replica_sets(cluster, namespace, "web"), 1, "web RS")
        wait_count(lambda: replica_sets(cluster, namespace, "single"), 1, "single RS")

        for round_ in rounds:
            apply_together(round_, f"value {round_}".encode(), bundle)
            wait_revision(cluster, namespace, "payments", round_)
            wait_sealed_revision(cluster, namespace, "db", round_)
            both = f"db={round_},payments={round_}"
            wait_template(cluster, namespace, "web", both)  # one rollout carrying both
            wait_count(lambda: replica_sets(cluster, namespace, "web"), round_, "web RS")
            wait_template(cluster, namespace, "single", f"payments={round_}")
            wait_count(lambda: replica_sets(cluster, namespace, "single"), round_, "single RS")
        # One rollout per change set: each event names both sources.  Passes of
        # a namespace run one after another and the last one is over once both
        # events are there, so a second rollout of any set would be counted.
        changes = len(rounds)
        wait_for(
            lambda: len(rollout_events(cluster, namespace, "web")) >= changes,
            timeout=30,
            what="the events",
        )
        wait_for(
            lambda: len(rollout_events(cluster, namespace, "single")) >= changes,
            timeout=30,
            what="the single-source workload's events",
        )
        events = rollout_events(cluster, namespace, "web")
        assert len(events) == changes
        for event in events:
            assert "db " in event.message
            assert "payments " in event.message
        assert len(rollout_events(cluster, namespace, "single")) == changes
        assert replica_sets(cluster, namespace, "web") == changes + 1
        assert replica_sets(cluster, namespace, "single") == changes + 1
