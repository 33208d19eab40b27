"""Workloads, profiles and rollouts on the real control plane: what the reload tests share.

Creating Deployments, StatefulSets and DaemonSets that mount a profile's
ConfigMap, applying profiles (alone, or with a SealedSecret in one change
set), and reading the ground truth of a rollout (ReplicaSets,
ControllerRevisions, the recorded annotation, reload passes).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

from kstrata.crypto import PublicKeyBundle
from kstrata.domain.crds import GROUP, VERSION
from support.cluster import TestCluster
from support.sealed_secrets import seal_for, sealed_secret
from support.waiting import wait_for

PLURAL = "configprofiles"
RECORD = "kstrata.dev/revisions"


def apps(cluster: TestCluster) -> Any:
    """Untyped handles: the tests treat API objects as loosely as the client does."""
    return cluster.apps


def custom(cluster: TestCluster) -> Any:
    return cluster.custom


def core(cluster: TestCluster) -> Any:
    return cluster.core


def config_map(name: str, data: dict[str, str], annotations: dict[str, str] | None = None) -> Any:
    """A plain ConfigMap manifest (no namespace: ``apply`` gives it)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "annotations": annotations or {}},
        "data": data,
    }


def secret(name: str, data: dict[str, str], annotations: dict[str, str] | None = None) -> Any:
    """A plain Secret manifest, its values as ``stringData``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "annotations": annotations or {}},
        "stringData": data,
    }


def pod_spec(config_maps: tuple[str, ...] = (), secrets: tuple[str, ...] = ()) -> Any:
    """A pod mounting ``config_maps`` and taking ``secrets`` as env, all optional."""
    volumes = [{"name": f"cm-{n}", "configMap": {"name": n, "optional": True}} for n in config_maps]
    env_from = [{"secretRef": {"name": n, "optional": True}} for n in secrets]
    return {
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10", "envFrom": env_from}],
        "volumes": volumes,
    }


def deployment_manifest(
    name: str,
    annotations: dict[str, str],
    config_maps: tuple[str, ...] = (),
    secrets: tuple[str, ...] = (),
    *,
    app: str | None = None,
) -> Any:
    """A one-replica Deployment of :func:`pod_spec` pods, labelled ``app: name`` (or ``app``)."""
    label = name if app is None else app
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": label}},
            "template": {
                "metadata": {"labels": {"app": label}},
                "spec": pod_spec(config_maps, secrets),
            },
        },
    }


def apply(cluster: TestCluster, namespace: str, *objects: Any) -> None:
    """One kubectl apply of all objects (as ``kubectl apply -f dir/`` would send them)."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))


def apply_profile(cluster: TestCluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigProfile",
        "metadata": {"name": name},
        "spec": spec,
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))


def profile_status(cluster: TestCluster, namespace: str, name: str) -> dict[str, Any]:
    body = custom(cluster).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return dict(body.get("status") or {})


def wait_revision(cluster: TestCluster, namespace: str, name: str, revision: int) -> None:
    def ready() -> bool:
        status = profile_status(cluster, namespace, name)
        ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
        return status.get("revision") == revision and bool(ready) and ready[0]["status"] == "True"

    wait_for(ready, timeout=30, what=f"{namespace}/{name} at revision {revision}")


def sealed_manifest(
    bundle: PublicKeyBundle,
    namespace: str,
    value: bytes,
    *,
    name: str = "db",
    targets: list[dict[str, Any]] | None = None,
) -> Any:
    """A SealedSecret whose one item ``password`` is ``value`` sealed (strict scope) for
    ``namespace``/``name``, with ``targets`` as its ``spec.reload.targets`` if given.

    No namespace in the manifest: ``apply`` or :func:`apply_profile_and_sealed` gives it.
    """
    token = seal_for(bundle, value, namespace=namespace, name=name, item="password")
    spec: dict[str, Any] = {"encryptedData": {"password": token}}
    if targets:
        spec["reload"] = {"targets": targets}
    return sealed_secret(name, spec)


def apply_profile_and_sealed(
    cluster: TestCluster, namespace: str, directory: Path, profile: Any, sealed: Any
) -> None:
    """A ConfigProfile and a SealedSecret changed together, as ``kubectl apply -f dir/``
    sends them: two files (the profile's first), one apply, the operator sees two writes."""
    for prefix, body in (("a", profile), ("b", sealed)):
        placed = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
        (directory / f"{prefix}-{body['metadata']['name']}.yaml").write_text(yaml.safe_dump(placed))
    cluster.kubectl("apply", "-f", str(directory))


def wait_sealed_revision(cluster: TestCluster, namespace: str, name: str, revision: int) -> None:
    """Wait for the SealedSecret's ``status.revision`` (its Ready condition is not looked at)."""

    def at() -> bool:
        body = custom(cluster).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "sealedsecrets", name
        )
        return bool((body.get("status") or {}).get("revision") == revision)

    wait_for(at, timeout=30, what=f"{name} at revision {revision}")


def pod_template(config_map: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "x"}},
        "spec": {
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
            "volumes": [{"name": "config", "configMap": {"name": config_map, "optional": True}}],
        },
    }


def create_deployment(
    cluster: TestCluster, namespace: str, name: str, annotations: dict[str, str], app: str = "x"
) -> None:
    """A Deployment mounting the ``payments`` ConfigMap; its pods labelled ``app`` (shared
    by default, as the StatefulSets and DaemonSets here are)."""
    body = deployment_manifest(name, annotations, ("payments",), app=app)
    apps(cluster).create_namespaced_deployment(namespace, body)


def pod_revisions(cluster: TestCluster, namespace: str, deployment: str) -> list[str | None]:
    """``kstrata.dev/revisions`` on each pod of one Deployment (its ReplicaSets' pods)."""
    pods = cluster.core.list_namespaced_pod(namespace).items
    return [
        (p.metadata.annotations or {}).get("kstrata.dev/revisions")
        for p in pods
        if any(
            r.kind == "ReplicaSet" and r.name.rsplit("-", 1)[0] == deployment
            for r in p.metadata.owner_references or []
        )
    ]


def create_stateful_set(
    cluster: TestCluster, namespace: str, name: str, annotations: dict[str, str]
) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": 0,
            "serviceName": name,
            "selector": {"matchLabels": {"app": "x"}},
            "template": pod_template("payments"),
        },
    }
    apps(cluster).create_namespaced_stateful_set(namespace, body)


def create_daemon_set(
    cluster: TestCluster, namespace: str, name: str, annotations: dict[str, str]
) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": pod_template("payments"),
        },
    }
    apps(cluster).create_namespaced_daemon_set(namespace, body)


def deployment(cluster: TestCluster, namespace: str, name: str) -> Any:
    return apps(cluster).read_namespaced_deployment(name, namespace)


def annotation(obj: Any, key: str = RECORD) -> str | None:
    found = (obj.metadata.annotations or {}).get(key)
    return None if found is None else str(found)


def template_annotation(obj: Any) -> str | None:
    found = (obj.spec.template.metadata.annotations or {}).get(RECORD)
    return None if found is None else str(found)


def wait_template(cluster: TestCluster, namespace: str, name: str, expected: str) -> None:
    """Wait for the Deployment's pod template to carry ``expected`` as its revisions record."""
    wait_for(
        lambda: template_annotation(deployment(cluster, namespace, name)) == expected,
        timeout=30,
        what=f"{name} to roll to {expected}",
    )


def replica_sets(cluster: TestCluster, namespace: str, name: str) -> int:
    items = apps(cluster).list_namespaced_replica_set(namespace).items
    return len(
        [
            rs
            for rs in items
            if any(
                o.kind == "Deployment" and o.name == name
                for o in rs.metadata.owner_references or []
            )
        ]
    )


def controller_revisions(
    cluster: TestCluster, namespace: str, name: str, kind: str = "StatefulSet"
) -> int:
    """ControllerRevisions of a StatefulSet or DaemonSet: one per pod-template change."""
    items = apps(cluster).list_namespaced_controller_revision(namespace).items
    return len(
        [
            cr
            for cr in items
            if any(o.kind == kind and o.name == name for o in cr.metadata.owner_references or [])
        ]
    )


def status_workloads(
    cluster: TestCluster, namespace: str, name: str, plural: str = PLURAL
) -> list[dict[str, Any]]:
    body = custom(cluster).get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    return list((body.get("status") or {}).get("workloads") or [])


def wait_count(count: Any, expected: int, what: str) -> None:
    wait_for(lambda: count() == expected, timeout=30, what=f"{what} == {expected}")


def wait_recorded(cluster: TestCluster, namespace: str, name: str, value: str) -> None:
    wait_for(
        lambda: annotation(deployment(cluster, namespace, name)) == value,
        timeout=30,
        what=f"{name} to record {value}",
    )


def passes() -> float:
    return REGISTRY.get_sample_value("kstrata_reload_passes_total", {"result": "ok"}) or 0.0


def wait_passes_after(before: float) -> None:
    wait_for(lambda: passes() > before, timeout=30, what="a reload pass")


def rollout_events(cluster: TestCluster, namespace: str, name: str) -> list[Any]:
    events = core(cluster).list_namespaced_event(namespace).items
    return [e for e in events if e.involved_object.name == name and e.reason == "RollingRestart"]


@contextlib.contextmanager
def cpu_burners(enabled: bool) -> Iterator[None]:
    """One busy loop per core for the duration, as on a loaded CI machine; always killed."""
    burners: list[subprocess.Popen[bytes]] = []
    try:
        if enabled:
            for _ in range(os.cpu_count() or 1):
                burners.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        yield
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait()
