"""ConfigProfile benchmarks on the real local control plane.

* change latency: a profile's spec is written (what ``kubectl apply`` does),
  and the clock stops when a watch on the ConfigMap delivers the new content;
  p50/p99 over ``--changes`` changes (targets: 100 ms / 500 ms), each made
  once the operator is done with the previous one, and again back to back;
* cold reconcile: ``--profiles`` profiles across ``--namespaces`` namespaces
  exist before the operator starts; objects/s until every ConfigMap is
  written, and the operator's peak RSS (targets: >= 50/s, <= 200 MiB);
* restart: the operator is restarted with every profile unchanged; the number
  of objects whose resourceVersion moved (target: 0 writes);
* offline CLI cold start: ``kstrata render`` and ``kstrata validate`` as new
  processes (target: <= 200 ms).

    .venv/bin/python benchmarks/bench_configprofiles.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from harness import (
    REPO,
    Bench,
    Follower,
    control_plane,
    kopf_handled,
    operator,
    operator_done_with,
    percentiles,
    wait,
)

GROUP, VERSION, PLURAL = "kstrata.dev", "v1alpha1", "configprofiles"
OK_RECONCILES = 'kstrata_reconcile_total{kind="ConfigProfile",result="ok"}'


def profile(name: str, base: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigProfile",
        "metadata": {"name": name},
        "spec": {
            "base": base,
            "schema": {"type": "object", "properties": {"i": {"type": "integer"}}},
        },
    }


def change_latency(bench: Bench, changes: int) -> dict[str, Any]:
    """Change → ConfigMap, for changes one at a time and for changes back to back.

    ``one_at_a_time`` (the target's measure): each change is written once the
    operator has finished every write of the previous one, as changes to one
    profile come in practice.  ``back_to_back``: the next change is written
    the moment the ConfigMap shows the previous one, while the operator still
    writes the previous change's status, index and kopf's record, so it also
    measures the queue behind them (kopf handles one object's events in order).
    """
    namespace = "bench-latency"
    bench.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    with operator(bench, "--namespace", namespace):
        profiles = Follower(
            lambda ns, **kw: bench.custom.list_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, **kw
            ),
            namespace,
        )
        config_maps = Follower(bench.core.list_namespaced_config_map, namespace, config_value)

        def measure(name: str, *, one_at_a_time: bool) -> dict[str, Any]:
            bench.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, profile(name, {"i": 0, "pad": "x" * 200})
            )
            samples = []
            for i in range(changes + 1):
                if i == 0 or one_at_a_time:
                    profiles.wait_until(name, operator_done_with)
                if i == 0:
                    continue
                started = time.perf_counter()
                bench.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, {"spec": {"base": {"i": i}}}
                )
                samples.append(config_maps.wait_for([(name, i)]) - started)
            return percentiles(samples)

        results = {
            "one_at_a_time": measure("one", one_at_a_time=True),
            "back_to_back": measure("burst", one_at_a_time=False),
        }
        config_maps.stop()
        profiles.stop()
    return results


def config_value(config_map: Any) -> int | None:
    """The ``i`` a benchmark profile renders into its ConfigMap."""
    data = config_map.data or {}
    return yaml.safe_load(data["config.yaml"])["i"] if "config.yaml" in data else None


def cold_reconcile_and_restart(bench: Bench, profiles: int, namespaces: int) -> dict[str, Any]:
    names = [f"bench-{n:02d}" for n in range(namespaces)]
    for name in names:
        bench.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def create(index: int) -> None:
        namespace = names[index % namespaces]
        body = profile(
            f"app-{index:04d}",
            {"i": index, "service": {"port": 8000 + index % 100, "replicas": 2}},
        )
        bench.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(profiles)))

    def state() -> dict[str, str]:
        versions = {}
        for item in bench.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]:
            meta = item["metadata"]
            versions[f"cfp/{meta['namespace']}/{meta['name']}"] = meta["resourceVersion"]
        for cm in bench.core.list_config_map_for_all_namespaces(
            label_selector="app.kubernetes.io/managed-by=kstrata"
        ).items:
            versions[f"cm/{cm.metadata.namespace}/{cm.metadata.name}"] = (
                cm.metadata.resource_version
            )
        return versions

    def settled() -> bool:
        """kopf has handled every profile's current state, kstrata's own annotations included."""
        items = bench.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        return len(items) >= profiles and all(kopf_handled(item) for item in items)

    spawned = time.perf_counter()
    with operator(bench) as running:
        ready = time.perf_counter()
        wait(lambda: running.metric(OK_RECONCILES) >= profiles, 600, "cold reconcile", 0.2)
        done = time.perf_counter()
        # Stop only once kopf has finished its own bookkeeping, as a real rollout would.
        wait(settled, 300, "kopf to settle", 0.5)
        settled_at = time.perf_counter()
        rss = running.rss_peak_mib()
    before = state()
    config_maps = sum(1 for key in before if key.startswith("cm/"))
    with operator(bench) as restarted:
        wait(lambda: restarted.metric(OK_RECONCILES) >= profiles, 600, "resume", 0.2)
        resumed_rss = restarted.rss_peak_mib()
    after = state()
    moved = sorted(key for key in before if after.get(key) != before[key])
    return {
        "profiles": profiles,
        "namespaces": namespaces,
        "config_maps_written": config_maps,
        "seconds_from_process_start": round(done - spawned, 2),
        "seconds_from_ready": round(done - ready, 2),
        "objects_per_second": round(profiles / (done - ready), 1),
        # Until kopf has also written its bookkeeping on every profile (a
        # settle check every 0.5 s: up to that much late).
        "seconds_until_kopf_settled": round(settled_at - ready, 2),
        "operator_peak_rss_mib": round(rss, 1),
        "restart_objects_written": len(moved),
        "restart_written_examples": moved[:5],
        "restart_operator_peak_rss_mib": round(resumed_rss, 1),
    }


def cli_cold_start(runs: int) -> dict[str, Any]:
    examples = REPO / "examples" / "config"
    files = ["-f", str(examples / "payments.yaml"), "-f", str(examples / "platform-defaults.yaml")]
    # A normal user environment: bytecode caching on.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    kstrata = str(Path(sys.executable).with_name("kstrata"))
    results = {}
    for command in (["render", *files], ["validate", *files], ["version"]):
        subprocess.run([kstrata, *command], env=env, capture_output=True, check=True)  # warm .pyc
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([kstrata, *command], env=env, capture_output=True, check=True)
            samples.append(time.perf_counter() - started)
        results[command[0]] = {
            "median_ms": round(statistics.median(samples) * 1000, 1),
            "min_ms": round(min(samples) * 1000, 1),
            "max_ms": round(max(samples) * 1000, 1),
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=120)
    parser.add_argument("--profiles", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--cli-runs", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {"cli_cold_start": cli_cold_start(args.cli_runs)}
    print(json.dumps(results, indent=2), flush=True)
    with control_plane() as bench:
        results["change_latency"] = change_latency(bench, args.changes)
        print(json.dumps(results["change_latency"], indent=2), flush=True)
        results["cold_reconcile"] = cold_reconcile_and_restart(
            bench, args.profiles, args.namespaces
        )
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
