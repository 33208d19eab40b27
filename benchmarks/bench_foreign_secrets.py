"""Operator memory with many Secrets kstrata does not manage (issue 14, item 8).

Before: kopf's Secret watch received every Secret in the cluster, data
included, and kept per-object state for each.  After: it selects
``app.kubernetes.io/managed-by=kstrata``, and foreign Secrets that matter
come from a metadata-only watch, started only when a workload follows one.

On its own control plane: ``--secrets`` foreign Secrets of ``--size`` bytes
in ``--namespaces`` namespaces, and one Deployment that reloads on one of
them (``kstrata.dev/reload: secret/NAME``), so the metadata watch runs.  The
operator (``python -m kstrata operator run``, benchmarks/harness.py) is
started once per variant; its RSS is read once the Deployment carries its
record (the operator has seen what it needs) and ``--idle-after`` seconds
more (median of 5 readings 1 s apart), with its peak (VmHWM).

A variant is a checkout's ``operator/`` directory put first on PYTHONPATH
(``--variant NAME=PATH``); ``current`` is this checkout.

    .venv/bin/python benchmarks/bench_foreign_secrets.py \
        --variant before=/tmp/before/operator --variant after=operator
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client

from harness import control_plane, operator, wait


def secret_body(name: str, size: int, index: int) -> dict[str, Any]:
    value = (f"{index:08d}" * (size // 8 + 1))[:size].encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {"value": base64.b64encode(value).decode()},
    }


def deployment(name: str, secret_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"kstrata.dev/reload": f"secret/{secret_name}"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--idle-after", type=float, default=10.0)
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    variants = [v.split("=", 1) for v in args.variant] or [["current", "operator"]]
    results: dict[str, Any] = {"secrets": args.secrets, "size": args.size, "variants": {}}
    with control_plane() as bench:
        names = [f"foreign-{n:02d}" for n in range(args.namespaces)]
        for name in names:
            bench.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        bench.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name="kstrata-system"))
        )

        def create(index: int) -> None:
            namespace = names[index % len(names)]
            body = secret_body(f"s-{index:05d}", args.size, index)
            bench.core.create_namespaced_secret(namespace, body)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(args.secrets)))
        apps = client.AppsV1Api(bench.core.api_client)
        apps.create_namespaced_deployment(names[0], deployment("follower", "s-00000"))

        def recorded() -> bool:
            found = apps.read_namespaced_deployment("follower", names[0])
            return "kstrata.dev/revisions" in (found.metadata.annotations or {})

        base_path = os.environ.get("PYTHONPATH", "")
        for label, path in variants:
            os.environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(Path(path).resolve()), base_path) if p
            )
            # A fresh record each time: the operator records on first sight.
            apps.patch_namespaced_deployment(
                "follower",
                names[0],
                {"metadata": {"annotations": {"kstrata.dev/revisions": None}}},
            )
            started = time.monotonic()
            with operator(bench) as running:
                wait(recorded, 300, "the follower's record", 0.2)
                ready = time.monotonic() - started
                time.sleep(args.idle_after)
                idle = []
                for _ in range(5):
                    idle.append(running.rss_mib())
                    time.sleep(1)
                results["variants"][label] = {
                    "idle_rss_mib": round(statistics.median(idle), 1),
                    "peak_rss_mib": round(running.rss_peak_mib(), 1),
                    "record_after_seconds": round(ready, 1),
                }
            print(json.dumps({label: results["variants"][label]}), flush=True)
        os.environ["PYTHONPATH"] = base_path
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
