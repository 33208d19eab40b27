"""Rolling-reload benchmarks on the real local control plane, default settings.

* change latency: a ConfigProfile's spec is written (what ``kubectl apply``
  does) and the clock stops when a watch on the opted-in Deployment delivers
  the pod template carrying the new revision; p50/p99 over ``--changes``
  changes (targets: 100 ms / 500 ms), each made once the operator is done
  with the previous one, and again back to back.  Also reported: the part
  after the profile's new ``status.revision`` reached a watch, i.e. the
  reload controller's own share, and the operator's
  ``kstrata_reload_latency_seconds``;
* fan-out: one profile used by ``--fan-out`` Deployments; time from the
  profile write to the last Deployment's pod template patched, p95 over
  ``--fan-out-changes`` changes, each made once the Deployment controller
  has caught up with the previous one (target: 2 s);
* change set: a ConfigProfile and a SealedSecret changed by one
  ``kubectl apply -f dir/``, ``--change-sets`` times; ReplicaSets made by
  kube-controller-manager count the rollouts (target: exactly one per set),
  and the latency from the start of ``kubectl apply`` to the rollout.

    .venv/bin/python benchmarks/bench_reloads.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from harness import (
    Bench,
    Follower,
    OperatorProcess,
    control_plane,
    operator,
    operator_done_with,
    percentiles,
    wait,
)
from kstrata.crypto import PublicKeyBundle, Scope, SealingContext, seal

GROUP, VERSION = "kstrata.dev", "v1alpha1"
RECORD = "kstrata.dev/revisions"
KEYS_NAMESPACE = "bench-keys"
PATCHED = 'kstrata_reload_rollouts_total{result="patched",strategy="rolling"}'


def profile(name: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigProfile",
        "metadata": {"name": name},
        "spec": {
            "base": {"i": i, "pad": "x" * 200},
            "schema": {"type": "object", "properties": {"i": {"type": "integer"}}},
        },
    }


def deployment(name: str, uses: str) -> client.V1Deployment:
    # No replicas: the pod template patch and the new ReplicaSet are what is
    # measured; pods would stay Pending on this node-less control plane anyway.
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, annotations={"kstrata.dev/reload": uses}),
        spec=client.V1DeploymentSpec(
            replicas=0,
            # Keep every ReplicaSet: they count the rollouts.
            revision_history_limit=1000,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="app", image="registry.k8s.io/pause:3.10")]
                ),
            ),
        ),
    )


def template_record(obj: Any) -> str | None:
    annotations = obj.spec.template.metadata.annotations or {}
    return annotations.get(RECORD)


def status_revision(obj: Any) -> int | None:
    return (obj.get("status") or {}).get("revision")


def namespaced_profiles(bench: Bench) -> Callable[..., Any]:
    def call(namespace: str, **kwargs: Any) -> Any:
        return bench.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "configprofiles", **kwargs
        )

    return call


def create_namespace(bench: Bench, name: str) -> None:
    bench.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


def write_profile(bench: Bench, namespace: str, name: str, i: int) -> float:
    started = time.perf_counter()
    bench.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "configprofiles", name, {"spec": {"base": {"i": i}}}
    )
    return started


def change_latency(bench: Bench, namespace: str, changes: int) -> dict[str, Any]:
    """Change → pod template, one change at a time and back to back.

    ``one_at_a_time`` (the target's measure): each change is written once the
    operator and the Deployment controller are done with the previous one
    (the profile's ``status.workloads`` shows the rollout, kopf has recorded
    the spec, the Deployment's status caught up).  ``back_to_back``: the next
    change is written the moment the template shows the previous one, while
    the operator still writes the previous pass's event and status.
    """
    apps = client.AppsV1Api(bench.cluster.api_client)
    deployments = Follower(apps.list_namespaced_deployment, namespace, template_record)
    revisions = Follower(namespaced_profiles(bench), namespace, status_revision)

    def measure(name: str, workload: str, *, one_at_a_time: bool) -> dict[str, Any]:
        bench.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "configprofiles", profile(name, 0)
        )
        revisions.wait_for([(name, 1)])
        apps.create_namespaced_deployment(namespace, deployment(workload, name))
        wait(
            lambda: (
                (
                    apps.read_namespaced_deployment(workload, namespace).metadata.annotations or {}
                ).get(RECORD)
                == f"{name}=1"
            ),
            30,
            f"{workload} to record {name}=1",
        )

        def rolled_and_recorded(item: dict[str, Any]) -> bool:
            status = item.get("status") or {}
            entry = {"kind": "Deployment", "name": workload, "revision": status.get("revision")}
            return operator_done_with(item) and entry in (status.get("workloads") or [])

        end_to_end, after_revision = [], []
        for i in range(1, changes + 1):
            if one_at_a_time:
                revisions.wait_until(name, rolled_and_recorded)
                deployments.wait_until(
                    workload, lambda d: d.status.observed_generation == d.metadata.generation
                )
            started = write_profile(bench, namespace, name, i)
            patched = deployments.wait_for([(workload, f"{name}={i + 1}")])
            end_to_end.append(patched - started)
            after_revision.append(patched - revisions.wait_for([(name, i + 1)]))
        return {
            "change_to_template": percentiles(end_to_end),
            "revision_to_template": percentiles(after_revision),
        }

    results = {
        "one_at_a_time": measure("p", "web", one_at_a_time=True),
        "back_to_back": measure("b", "burst", one_at_a_time=False),
    }
    deployments.stop()
    revisions.stop()
    return results


def fan_out(bench: Bench, namespace: str, workloads: int, changes: int) -> dict[str, Any]:
    apps = client.AppsV1Api(bench.cluster.api_client)
    deployments = Follower(apps.list_namespaced_deployment, namespace, template_record)
    revisions = Follower(namespaced_profiles(bench), namespace, status_revision)
    bench.custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "configprofiles", profile("q", 0)
    )
    revisions.wait_for([("q", 1)])
    names = [f"w-{n:02d}" for n in range(workloads)]
    for name in names:
        apps.create_namespaced_deployment(namespace, deployment(name, "q"))

    def recorded() -> bool:
        items = apps.list_namespaced_deployment(namespace).items
        return sum((d.metadata.annotations or {}).get(RECORD) == "q=1" for d in items) == workloads

    wait(recorded, 60, "every workload to record q=1", 0.2)

    def settled() -> bool:
        """The Deployment controller has caught up with every rollout so far."""
        items = apps.list_namespaced_deployment(namespace).items
        return all(d.status.observed_generation == d.metadata.generation for d in items)

    last, after_revision = [], []
    for i in range(1, changes + 1):
        # One change at a time, as changes to one profile are in practice: the
        # churn of the previous fan-out (50 new ReplicaSets, status updates)
        # is over before the clock starts.
        wait(settled, 60, "the previous rollouts to settle", 0.1)
        started = write_profile(bench, namespace, "q", i)
        patched = deployments.wait_for([(n, f"q={i + 1}") for n in names], timeout=60)
        last.append(patched - started)
        after_revision.append(patched - revisions.wait_for([("q", i + 1)]))
    deployments.stop()
    revisions.stop()
    return {
        "workloads": workloads,
        "change_to_last_template": percentiles(last),
        "revision_to_last_template": percentiles(after_revision),
    }


def change_sets(
    bench: Bench, running: OperatorProcess, namespace: str, sets: int
) -> dict[str, Any]:
    apps = client.AppsV1Api(bench.cluster.api_client)
    deployments = Follower(apps.list_namespaced_deployment, namespace, template_record)
    bundle = wait(
        lambda: _public_keys(bench),
        60,
        "the published public keys",
        0.2,
    )

    def sealed(i: int) -> dict[str, Any]:
        context = SealingContext.bind(
            Scope("strict"), item="password", namespace=namespace, name="db"
        )
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": namespace},
            "spec": {"encryptedData": {"password": seal(f"v{i}".encode(), bundle.newest, context)}},
        }

    def apply_both(directory: Path, i: int) -> float:
        config = dict(profile("payments", i), metadata={"name": "payments", "namespace": namespace})
        (directory / "a-payments.yaml").write_text(yaml.safe_dump(config))
        (directory / "b-db.yaml").write_text(yaml.safe_dump(sealed(i)))
        started = time.perf_counter()
        bench.kubectl("apply", "-f", str(directory))
        return started

    def replica_sets() -> int:
        return len(replica_set_records())

    def replica_set_records() -> list[str | None]:
        items = apps.list_namespaced_replica_set(namespace, label_selector="app=web").items
        return [template_record(rs) for rs in items]

    with tempfile.TemporaryDirectory(prefix="kstrata-bench-") as tmp:
        directory = Path(tmp)
        apply_both(directory, 0)
        wait(lambda: _revisions(bench, namespace) == (1, 1), 30, "both at revision 1")
        apps.create_namespaced_deployment(namespace, deployment("web", "payments,db"))
        wait(replica_sets, 30, "the first ReplicaSet")
        wait(
            lambda: (
                (apps.read_namespaced_deployment("web", namespace).metadata.annotations or {}).get(
                    RECORD
                )
                == "db=1,payments=1"
            ),
            30,
            "web to record both",
        )
        patched_before = running.metric(PATCHED)
        latencies = []
        for i in range(1, sets + 1):
            started = apply_both(directory, i)
            both = f"db={i + 1},payments={i + 1}"
            latencies.append(deployments.wait_for([("web", both)]) - started)
        # A sentinel: one more change of the profile alone.  Passes of a
        # namespace run one after another, so once it has rolled, any second
        # rollout of an earlier change set would have happened too.
        sentinel = sets + 1
        write_profile(bench, namespace, "payments", sentinel)
        deployments.wait_for([("web", f"db={sets + 1},payments={sentinel + 1}")])
        patched = running.metric(PATCHED) - patched_before - 1  # not the sentinel's
        sentinel_record = f"db={sets + 1},payments={sentinel + 1}"
        wait(lambda: sentinel_record in replica_set_records(), 30, "the sentinel's ReplicaSet")
        # The Deployment controller only makes a ReplicaSet for the template it
        # sees, so this count can only hide a double rollout, not invent one.
        made = len(replica_set_records()) - 2  # neither the first nor the sentinel's
    deployments.stop()
    return {
        "change_sets": sets,
        "pod_template_patches": patched,
        "replica_sets_made": made,
        "rollouts_per_change_set": round(patched / sets, 2),
        "kubectl_apply_to_template": percentiles(latencies),
    }


def _public_keys(bench: Bench) -> PublicKeyBundle | None:
    try:
        found = bench.core.read_namespaced_config_map("kstrata-sealing-public-keys", KEYS_NAMESPACE)
    except client.ApiException:
        return None
    return PublicKeyBundle.parse(found.data["keys.json"])


def _revisions(bench: Bench, namespace: str) -> tuple[int | None, int | None]:
    found = []
    for plural, name in (("configprofiles", "payments"), ("sealedsecrets", "db")):
        body = bench.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        found.append(status_revision(body))
    return found[0], found[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=120)
    parser.add_argument("--fan-out", type=int, default=50)
    parser.add_argument("--fan-out-changes", type=int, default=20)
    parser.add_argument("--change-sets", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    namespaces = ("bench-reload", "bench-fanout", "bench-sets")
    results: dict[str, Any] = {}
    with control_plane() as bench:
        for name in (*namespaces, KEYS_NAMESPACE):
            create_namespace(bench, name)
        selected = [arg for name in (*namespaces, KEYS_NAMESPACE) for arg in ("--namespace", name)]
        with operator(bench, *selected, "--operator-namespace", KEYS_NAMESPACE) as running:
            results["change_latency"] = change_latency(bench, namespaces[0], args.changes)
            print(json.dumps(results, indent=2), flush=True)
            results["fan_out"] = fan_out(bench, namespaces[1], args.fan_out, args.fan_out_changes)
            print(json.dumps(results["fan_out"], indent=2), flush=True)
            results["change_sets"] = change_sets(bench, running, namespaces[2], args.change_sets)
            results["operator_latency_histogram_count"] = running.metric(
                "kstrata_reload_latency_seconds_count"
            )
            results["operator_peak_rss_mib"] = round(running.rss_peak_mib(), 1)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
