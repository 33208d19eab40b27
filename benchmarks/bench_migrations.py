"""What ``kstrata migrate reloader`` takes for N workloads (issue 15's closing note).

The import timings (Bitnami, SOPS) are offline and live in bench_imports.py;
this one needs an API server, so it runs on its own embedded control plane
(benchmarks/harness.py).  It creates ``--objects`` workloads, Deployments,
StatefulSets, DaemonSets and CronJobs in turn, in five namespaces, each with
one of Reloader's annotation variants (``auto``, the typed ``auto``s, named
ConfigMaps and Secrets, ``search`` with ``match`` on a source, ``auto:
"false"`` beside a named reload), plus per namespace a ConfigMap with
``match`` and one with ``ignore``.  Then it times, as a user runs them,

    kstrata migrate reloader -A            (dry run: lists and translates)
    kstrata migrate reloader -A --apply    (writes every workload and source)

checks the result (every workload carries ``kstrata.dev/reload`` and none of
Reloader's workload annotations; every ignored source carries
``kstrata.dev/reload-ignore``) and that a second ``--apply`` changes nothing
(kstrata's and Reloader's annotations as they were, and the resourceVersion of
every ConfigMap, Secret and CronJob: the others get status writes from their
controllers meanwhile).  ``--runs`` dry runs; one ``--apply`` per
fresh set of workloads (each run deletes and recreates them).  Wall times;
the numbers go into docs/config-management-guide.md ("Coming from
sealed-secrets", the migrations table) by hand.

    .venv/bin/python benchmarks/bench_migrations.py [--objects 100] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from harness import Bench, control_plane

KSTRATA = str(Path(sys.executable).parent / "kstrata")
NAMESPACES = 5
RELOADER_PREFIX = "reloader.stakater.com"
RELOAD = "kstrata.dev/reload"
RELOAD_IGNORE = "kstrata.dev/reload-ignore"

#: Reloader's workload annotation variants, and the kstrata.dev/reload value each becomes.
VARIANTS: list[tuple[dict[str, str], str]] = [
    ({"reloader.stakater.com/auto": "true"}, "auto"),
    ({"configmap.reloader.stakater.com/auto": "true"}, "auto-configmaps"),
    ({"secret.reloader.stakater.com/auto": "true"}, "auto-secrets"),
    (
        {"configmap.reloader.stakater.com/reload": "settings,flags"},
        "configmap/flags,configmap/settings",
    ),
    ({"secret.reloader.stakater.com/reload": "creds"}, "secret/creds"),
    ({"reloader.stakater.com/search": "true"}, "configmap/settings"),
    (
        {"reloader.stakater.com/auto": "false", "secret.reloader.stakater.com/reload": "creds"},
        "secret/creds",
    ),
]
KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")


def pod_spec(restart: str = "Always") -> dict[str, Any]:
    return {
        "restartPolicy": restart,
        "containers": [
            {
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "envFrom": [{"secretRef": {"name": "creds", "optional": True}}],
            }
        ],
        "volumes": [
            {"name": n, "configMap": {"name": n, "optional": True}}
            for n in ("settings", "flags", "noisy")
        ],
    }


def workload(kind: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
    labels = {"app": name}
    template = {"metadata": {"labels": labels}, "spec": pod_spec()}
    meta = {"name": name, "annotations": annotations}
    if kind == "CronJob":
        job = {"template": {"spec": pod_spec("Never")}}
        spec: dict[str, Any] = {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": job}}
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": meta, "spec": spec}
    spec = {"selector": {"matchLabels": labels}, "template": template}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def source(kind: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
    data = "stringData" if kind == "Secret" else "data"
    value = "bench-canary-not-a-secret"
    meta = {"name": name, "annotations": annotations}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, data: {"k": value}}


def objects(count: int) -> dict[str, list[dict[str, Any]]]:
    """Per namespace: its sources and its share of ``count`` workloads."""
    per: dict[str, list[dict[str, Any]]] = {
        f"mig-{n}": [
            source("ConfigMap", "settings", {"reloader.stakater.com/match": "true"}),
            source("ConfigMap", "flags", {}),
            source("ConfigMap", "noisy", {"reloader.stakater.com/ignore": "true"}),
            source("Secret", "creds", {}),
        ]
        for n in range(NAMESPACES)
    }
    for index in range(count):
        annotations, _ = VARIANTS[index % len(VARIANTS)]
        kind = KINDS[index % len(KINDS)]
        per[f"mig-{index % NAMESPACES}"].append(workload(kind, f"w-{index}", annotations))
    return per


def expected(count: int) -> dict[tuple[str, str, str], str]:
    return {
        (KINDS[i % len(KINDS)], f"mig-{i % NAMESPACES}", f"w-{i}"): VARIANTS[i % len(VARIANTS)][1]
        for i in range(count)
    }


def create(bench: Bench, count: int) -> None:
    for namespace, objs in objects(count).items():
        bench.kubectl("create", "namespace", namespace)
        bench.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objs))


def delete(bench: Bench) -> None:
    names = [f"namespace/mig-{n}" for n in range(NAMESPACES)]
    bench.kubectl("delete", "--wait=true", "--timeout=120s", *names)


def state(bench: Bench) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Kind, namespace, name -> annotations and resourceVersion of every object created."""
    out = json.loads(
        bench.kubectl(
            "get", "-A", "-o", "json",
            "deployments,statefulsets,daemonsets,cronjobs,configmaps,secrets",
        )
    )  # fmt: skip
    found = {}
    for obj in out["items"]:
        meta = obj["metadata"]
        if not meta["namespace"].startswith("mig-") or meta["name"] == "kube-root-ca.crt":
            continue
        found[(obj["kind"], meta["namespace"], meta["name"])] = {
            "annotations": meta.get("annotations") or {},
            "resourceVersion": meta["resourceVersion"],
        }
    return found


#: Kinds no controller of the control plane writes to here (a CronJob's schedule
#: is a year away): their resourceVersion moves only if someone writes them.
UNTOUCHED = ("ConfigMap", "Secret", "CronJob")
#: The annotations ``migrate`` reads or writes.
OURS = ("kstrata.dev/", "reloader.stakater.com/", "configmap.reloader", "secret.reloader")


def unchanged(found: dict[tuple[str, str, str], dict[str, Any]]) -> dict[Any, Any]:
    """What a write by ``migrate`` would change: kstrata's and Reloader's annotations,
    and the resourceVersion of objects no controller updates (Deployments,
    StatefulSets and DaemonSets get status writes and, a Deployment,
    ``deployment.kubernetes.io/revision`` from their controllers meanwhile)."""
    return {
        key: (
            {k: v for k, v in entry["annotations"].items() if k.startswith(OURS)},
            entry["resourceVersion"] if key[0] in UNTOUCHED else None,
        )
        for key, entry in found.items()
    }


def check(before: dict[tuple[str, str, str], dict[str, Any]], count: int) -> None:
    for key, reload in expected(count).items():
        annotations = before[key]["annotations"]
        if annotations.get(RELOAD) != reload:
            raise SystemExit(f"{key}: {RELOAD}={annotations.get(RELOAD)!r}, expected {reload!r}")
        if any(RELOADER_PREFIX in k for k in annotations):
            raise SystemExit(f"{key}: Reloader's annotations left: {sorted(annotations)}")
    for n in range(NAMESPACES):
        noisy = before[("ConfigMap", f"mig-{n}", "noisy")]["annotations"]
        if noisy.get(RELOAD_IGNORE) != "true":
            raise SystemExit(f"mig-{n}/noisy: no {RELOAD_IGNORE}")


def run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    seconds = round(time.perf_counter() - started, 2)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:])}: exit {out.returncode}\n{out.stderr}")
    return seconds, out.stdout


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"objects": args.objects, "dry_run_seconds": [], "apply_seconds": []}
    result["dry_run_cpu_seconds"] = []
    result["apply_cpu_seconds"] = []
    result["second_apply_seconds"] = []
    with control_plane() as bench:
        env = dict(os.environ, KUBECONFIG=str(bench.plane.kubeconfig))
        migrate = [KSTRATA, "migrate", "reloader", "-A"]
        for number in range(args.runs):
            create(bench, args.objects)
            cpu = children_cpu()
            seconds, out = run(migrate, env)
            result["dry_run_cpu_seconds"].append(round(children_cpu() - cpu, 2))
            result["dry_run_seconds"].append(seconds)
            listed = sum(1 for line in out.splitlines() if line.startswith(KINDS))
            if listed != args.objects:
                raise SystemExit(f"dry run listed {listed} workloads, expected {args.objects}")
            cpu = children_cpu()
            seconds, _ = run([*migrate, "--apply"], env)
            result["apply_cpu_seconds"].append(round(children_cpu() - cpu, 2))
            result["apply_seconds"].append(seconds)
            after = state(bench)
            check(after, args.objects)
            seconds, out = run([*migrate, "--apply"], env)
            result["second_apply_seconds"].append(seconds)
            before, now = unchanged(after), unchanged(state(bench))
            if now != before:
                changed = sorted(
                    k for k in before.keys() | now.keys() if before.get(k) != now.get(k)
                )
                raise SystemExit(f"a second --apply changed {changed[:5]}")
            if any(line.startswith(KINDS) for line in out.splitlines()):
                raise SystemExit(f"a second --apply still lists workloads:\n{out}")
            if number < args.runs - 1:
                delete(bench)
        result["load_average"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
