"""A ConfigProfile change reaches every pod of a Deployment by a rolling restart.

Each pod prints, once, the configuration file it was started with and then
idles; its log is therefore exactly the config it was given.  After
``kubectl apply`` of a change, new pods must print the new config, the old
pods must be gone, and no pod (of any ReplicaSet, seen at any time during
the rollout) may have started with anything but one whole revision.
"""

from __future__ import annotations

import threading
from typing import Any

import yaml

from support.e2e import (
    Installed,
    apply,
    config_profile,
    deployment,
    logs,
    pods_of,
    restricted_container,
    wait_rolled_out,
)
from support.waiting import wait_for

PRINT_CONFIG_THEN_IDLE = ["sh", "-c", "cat /etc/app/config.yaml; exec sleep 100000"]


def profile(message: str, pool: int) -> dict[str, Any]:
    return config_profile(
        "app",
        "app-config",
        {"message": message, "database": {"pool": 1}},
        schema={"type": "object", "required": ["message"]},
        environments={"prod": {"database": {"pool": pool}}},
    )


def served(cluster: Any, namespace: str) -> str:
    """The config file the ConfigMap serves now."""
    data = cluster.core.read_namespaced_config_map("app-config", namespace).data
    return str(data["config.yaml"])


class PodLogRecorder:
    """Every pod of a Deployment seen while it rolls, with the config it printed."""

    def __init__(self, cluster: Any, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.seen: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PodLogRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.record()
            self._stop.wait(0.2)

    def record(self) -> None:
        for pod in pods_of(self.cluster, self.namespace, self.name):
            name = pod.metadata.name
            statuses = pod.status.container_statuses or []
            started = any(s.state.running or s.state.terminated for s in statuses)
            if started and name not in self.seen:
                text = logs(self.cluster, self.namespace, name)
                if text:
                    self.seen[name] = text


def test_change_rolls_every_pod_onto_the_new_config(kstrata: Installed, e2e_namespace: str) -> None:
    cluster, ns = kstrata.cluster, e2e_namespace
    apply(cluster, ns, profile("hello", 20))
    apply(
        cluster,
        ns,
        deployment(
            "app",
            [
                restricted_container(
                    "app",
                    PRINT_CONFIG_THEN_IDLE,
                    volumeMounts=[{"name": "config", "mountPath": "/etc/app"}],
                )
            ],
            [{"name": "config", "configMap": {"name": "app-config"}}],
            annotations={"kstrata.dev/reload": "app"},
        ),
    )
    wait_rolled_out(cluster, ns, "app")
    first = {p.metadata.name for p in pods_of(cluster, ns, "app")}
    before = served(cluster, ns)
    assert yaml.safe_load(before) == {"message": "hello", "database": {"pool": 20}}
    for pod in first:
        assert logs(cluster, ns, pod) == before

    with PodLogRecorder(cluster, ns, "app") as recorder:
        apply(cluster, ns, profile("goodbye", 30))
        wait_for(
            lambda: not first & {p.metadata.name for p in pods_of(cluster, ns, "app")},
            timeout=120,
            what="every old pod replaced",
        )
        wait_rolled_out(cluster, ns, "app")
        recorder.record()

    after = served(cluster, ns)
    assert yaml.safe_load(after) == {"message": "goodbye", "database": {"pool": 30}}
    now = {p.metadata.name for p in pods_of(cluster, ns, "app")}
    assert len(now) == 2
    assert not now & first
    for pod in now:
        assert logs(cluster, ns, pod) == after
    # Every pod that ever started printed one whole revision, never a mix.
    assert recorder.seen
    assert set(recorder.seen.values()) <= {before, after}
    # One rollout: exactly two ReplicaSets ever existed for the Deployment.
    sets = cluster.apps.list_namespaced_replica_set(ns, label_selector="app=app").items
    assert len(sets) == 2
