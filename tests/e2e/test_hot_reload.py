"""Hot reload on a real node: the example sidecar signals the app once per change, no restart.

This runs examples/hot-reload/k8s/sidecar.yaml as shipped, with its
placeholder images swapped for the local toolbox (and the example's
sighup-app.sh mounted into the app container, which the placeholder image
would have baked in).  The ConfigMap comes from a ConfigProfile with
``kstrata.dev/reload-strategy: hot``: kstrata renders it and writes nothing
to the Deployment; the kubelet swaps the file in the running pod; the
sidecar (``kstrata watch --signal HUP``) signals the app once the new file
is complete and valid.  The app copies what it loaded to a status file,
read here with ``kubectl exec``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from support.e2e import (
    TOOLBOX_IMAGE,
    Installed,
    apply,
    config_profile,
    logs,
    pods_of,
    wait_rolled_out,
)
from support.waiting import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hot-reload"


def profile(greeting: str, port: int) -> dict[str, Any]:
    return config_profile(
        "app", "app-config", {"greeting": greeting, "port": port, "features": ["search"]}
    )


def example_workload() -> list[dict[str, Any]]:
    """The example's schema ConfigMap and sidecar Deployment, on local images."""
    configmaps = list(yaml.safe_load_all((EXAMPLE / "k8s" / "configmap.yaml").read_text()))
    schema = next(c for c in configmaps if c["metadata"]["name"] == "app-config-schema")
    scripts = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "app-scripts"},
        "data": {"sighup-app.sh": (EXAMPLE / "sighup-app.sh").read_text()},
    }
    workload = yaml.safe_load((EXAMPLE / "k8s" / "sidecar.yaml").read_text())
    workload["metadata"]["annotations"] = {
        "kstrata.dev/reload": "app",
        "kstrata.dev/reload-strategy": "hot",
    }
    pod = workload["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = 2
    app, reload = pod["containers"]
    app["image"] = reload["image"] = TOOLBOX_IMAGE
    app["command"] = ["sh", "/scripts/sighup-app.sh"]
    app["env"].append({"name": "STATUS", "value": "/run/app/status"})
    app["volumeMounts"].append({"name": "scripts", "mountPath": "/scripts", "readOnly": True})
    pod["volumes"].append({"name": "scripts", "configMap": {"name": "app-scripts"}})
    # The placeholder kstrata image had kstrata as its entry point; the toolbox has a shell.
    reload["command"] = ["kstrata"]
    return [schema, scripts, workload]


def serves(cluster: Any, namespace: str, greeting: str) -> bool:
    return bool(yaml.safe_load(served(cluster, namespace))["greeting"] == greeting)


def signalled(cluster: Any, namespace: str, name: str, times: int) -> bool:
    return logs(cluster, namespace, name, "reload").count("reloaded: sent SIGHUP") >= times


def equals(read: Callable[[], object], expected: object) -> bool:
    return read() == expected


def served(cluster: Any, namespace: str) -> str:
    return str(cluster.core.read_namespaced_config_map("app-config", namespace).data["config.yaml"])


def test_hot_reload_signals_once_per_change_and_never_restarts(
    kstrata: Installed, e2e_namespace: str
) -> None:
    cluster, ns = kstrata.cluster, e2e_namespace
    apply(cluster, ns, profile("hello", 8080), *example_workload())
    wait_rolled_out(cluster, ns, "sighup-app")
    (pod,) = pods_of(cluster, ns, "sighup-app")
    name = pod.metadata.name

    def status_file() -> str:
        return str(
            cluster.kubectl(
                "exec", "-n", ns, name, "-c", "app", "--", "cat", "/run/app/status"
            ).stdout
        )

    def pod_annotation(pod: str) -> str | None:
        found = cluster.core.read_namespaced_pod(pod, ns).metadata.annotations or {}
        return found.get("kstrata.dev/revisions")

    wait_for(lambda: status_file() == served(cluster, ns), timeout=30, what="first load")
    # First sight records on the Deployment only: the running pod is not touched.
    assert pod_annotation(name) is None
    for change, (greeting, port) in enumerate([("bonjour", 8081), ("hallo", 8082)], start=1):
        started = time.monotonic()
        apply(cluster, ns, profile(greeting, port))
        wait_for(
            partial(serves, cluster, ns, greeting),
            timeout=30,
            what="the ConfigMap rendered",
        )
        expected = served(cluster, ns)
        # kstrata tells the kubelet to sync the pod (an annotation on the pod
        # itself), so the file swaps now rather than at the kubelet's next
        # periodic sync; bench_node.py measures how much sooner.
        wait_for(
            partial(equals, partial(pod_annotation, name), f"app={change + 1}"),
            timeout=30,
            what=f"the pod told to sync to change {change}",
        )
        wait_for(
            partial(equals, status_file, expected),
            timeout=40,
            interval=0.5,
            what=f"change {change} loaded by the app",
        )
        print(f"change {change} reached the app in {time.monotonic() - started:.1f} s")
        wait_for(
            partial(signalled, cluster, ns, name, change),
            timeout=10,
            what="the sidecar's report",
        )

    # Exactly one signal per change, one load per signal (plus the first).
    assert logs(cluster, ns, name, "reload").count("reloaded: sent SIGHUP") == 2
    assert logs(cluster, ns, name, "app").count("sighup-app: loaded") == 3
    # No restart: the same pod, no container restarts, no second ReplicaSet.
    (now,) = pods_of(cluster, ns, "sighup-app")
    assert now.metadata.name == name
    assert all(s.restart_count == 0 for s in now.status.container_statuses)
    sets = cluster.apps.list_namespaced_replica_set(ns, label_selector="app=sighup-app").items
    assert len(sets) == 1
    template = cluster.apps.read_namespaced_deployment("sighup-app", ns).spec.template
    assert "kstrata.dev/revisions" not in (template.metadata.annotations or {})
