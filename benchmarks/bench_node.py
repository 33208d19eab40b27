"""Change to serving pods on the real node: rolling restarts beside the rollout alone, hot reload.

What users wait for is not the ConfigMap write but every pod serving the new
configuration.  On the local node (tools/node, root only), with kstrata
installed as pods (manifests/overlays/local):

* rolling: ``kubectl apply`` of a changed ConfigProfile -> every pod of a
  3-replica Deployment is new, Ready, and printed the new config at start.
  Interleaved with the baseline, the rollout alone: the same Deployment's
  template patched directly (what any reload controller ends with), timed to
  the same condition.  Target: p50 within 1.2x of the baseline.
* hot reload: ``kubectl apply`` of a changed profile -> the in-process app
  (examples/hot-reload/app.py, kstrata.watch) has applied the new file.
  Dominated by the kubelet's sync period (10 s on this node).  Target: p95 <=
  sync period + 2 s.
* set-up: seconds for the node cluster to start (warm caches) and for
  kstrata's two pods to be Ready.

Without root it reports that it did not run (and exits 0: ``make bench``
stays runnable anywhere).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tools" / "node"))
sys.path.insert(0, str(REPO / "tests"))

import node  # noqa: E402

from harness import percentiles  # noqa: E402
from kstrata.kube.connection import connect  # noqa: E402
from support.cluster import TestCluster  # noqa: E402
from support.e2e import (  # noqa: E402
    apply,
    config_profile,
    deployment,
    install_kstrata,
    logs,
    pods_of,
    restricted_container,
    wait_rolled_out,
)

SYNC_PERIOD = 10.0
REPLICAS = 3
NS = "bench-node"


def profile(name: str, config_map: str, version: int) -> dict[str, Any]:
    return config_profile(
        name, config_map, {"version": version, "port": 8080, "features": ["search"]}
    )


def _serving(cluster: TestCluster, old: set[str], expected_log: str | None) -> bool:
    pods = [p for p in pods_of(cluster, NS, "rolling") if p.metadata.deletion_timestamp is None]
    if len(pods) != REPLICAS or old & {p.metadata.name for p in pods}:
        return False
    for pod in pods:
        statuses = pod.status.container_statuses or []
        if not statuses or not all(s.ready for s in statuses):
            return False
        if expected_log is not None and logs(cluster, NS, pod.metadata.name) != expected_log:
            return False
    return True


def _until(probe: Any, timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(interval)


def rolling(cluster: TestCluster, changes: int) -> dict[str, Any]:
    apply(cluster, NS, profile("rolling", "rolling-config", 0))
    apply(
        cluster,
        NS,
        deployment(
            "rolling",
            [
                restricted_container(
                    "app",
                    ["sh", "-c", "cat /etc/app/config.yaml; exec sleep 100000"],
                    volumeMounts=[{"name": "config", "mountPath": "/etc/app"}],
                    readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1},
                )
            ],
            [{"name": "config", "configMap": {"name": "rolling-config"}}],
            replicas=REPLICAS,
            annotations={"kstrata.dev/reload": "rolling"},
        ),
    )
    wait_rolled_out(cluster, NS, "rolling", timeout=180)
    kstrata_samples: list[float] = []
    floor_samples: list[float] = []
    for version in range(1, changes + 1):
        # kstrata: a profile change, to every pod printing it.
        old = {p.metadata.name for p in pods_of(cluster, NS, "rolling")}
        expected = yaml.safe_dump({"features": ["search"], "port": 8080, "version": version})
        started = time.monotonic()
        apply(cluster, NS, profile("rolling", "rolling-config", version))
        _until(lambda o=old, e=expected: _serving(cluster, o, e), timeout=180)
        kstrata_samples.append(time.monotonic() - started)
        # The floor: the same rollout, the template patched directly.
        old = {p.metadata.name for p in pods_of(cluster, NS, "rolling")}
        patch = {"spec": {"template": {"metadata": {"annotations": {"bench/nonce": str(version)}}}}}
        started = time.monotonic()
        cluster.apps.patch_namespaced_deployment("rolling", NS, patch)
        _until(lambda o=old: _serving(cluster, o, None), timeout=180)
        floor_samples.append(time.monotonic() - started)
        print(
            f"  change {version}: kstrata {kstrata_samples[-1]:.2f} s,"
            f" template patch {floor_samples[-1]:.2f} s",
            flush=True,
        )
    k, f = percentiles(kstrata_samples), percentiles(floor_samples)
    return {
        "replicas": REPLICAS,
        "n": changes,
        "kstrata_s": k,
        "rollout_alone_s": f,
        "ratio_p50": round(k["p50_ms"] / f["p50_ms"], 3),
    }


def hot_reload(cluster: TestCluster, changes: int) -> dict[str, Any]:
    app = (REPO / "examples" / "hot-reload" / "app.py").read_text()
    apply(
        cluster,
        NS,
        profile("hot", "hot-config", 0),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "hot-app"},
            "data": {"app.py": app},
        },
        deployment(
            "hot",
            [
                restricted_container(
                    "app",
                    ["python3", "/app/app.py", "--config", "/etc/app/config.yaml"],
                    volumeMounts=[
                        {"name": "config", "mountPath": "/etc/app"},
                        {"name": "code", "mountPath": "/app"},
                    ],
                )
            ],
            [
                {"name": "config", "configMap": {"name": "hot-config"}},
                {"name": "code", "configMap": {"name": "hot-app"}},
            ],
            replicas=1,
            annotations={"kstrata.dev/reload": "hot", "kstrata.dev/reload-strategy": "hot"},
        ),
    )
    wait_rolled_out(cluster, NS, "hot", timeout=180)
    (pod,) = pods_of(cluster, NS, "hot")
    name = pod.metadata.name
    samples: list[float] = []
    for version in range(1, changes + 1):
        started = time.monotonic()
        apply(cluster, NS, profile("hot", "hot-config", version))
        wanted = f"app: configuration {version + 1} applied"
        _until(lambda w=wanted: w in logs(cluster, NS, name), timeout=60, interval=0.2)
        samples.append(time.monotonic() - started)
        print(f"  hot change {version}: {samples[-1]:.2f} s", flush=True)
    (after,) = pods_of(cluster, NS, "hot")
    return {
        "n": changes,
        "sync_period_s": SYNC_PERIOD,
        "change_to_applied_s": percentiles(samples),
        "restarts": sum(s.restart_count for s in after.status.container_statuses),
        "same_pod": after.metadata.name == name,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--hot-changes", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any]
    if os.geteuid() != 0:
        result = {"skipped": "the real node needs root"}
        print(json.dumps(result))
    else:
        result = {}
        with tempfile.TemporaryDirectory() as tmp:
            cluster = node.Cluster(Path(tmp) / "plane")
            started = time.monotonic()
            cluster.start()
            try:
                setup = time.monotonic() - started
                plane = cluster.plane
                test_cluster = TestCluster(
                    plane.kubeconfig, str(plane.kubectl), connect(plane.kubeconfig), plane=plane
                )
                started = time.monotonic()
                install_kstrata(test_cluster)
                install = time.monotonic() - started
                test_cluster.kubectl("create", "namespace", NS)
                test_cluster.kubectl("label", "namespace", NS, "kstrata.dev/environment=prod")
                print(f"node cluster up in {setup:.1f} s; kstrata Ready in {install:.1f} s")
                result["setup_s"] = round(setup, 2)
                result["install_kstrata_s"] = round(install, 2)
                result["rolling"] = rolling(test_cluster, args.changes)
                result["hot_reload"] = hot_reload(test_cluster, args.hot_changes)
            finally:
                started = time.monotonic()
                cluster.stop()
                result_stop = time.monotonic() - started
            result["teardown_s"] = round(result_stop, 2)
            result["leftovers"] = node.leftovers()
        print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
