"""Helpers for the end-to-end tier: install kstrata as pods, run workloads, read what pods saw.

Everything here talks to the node cluster the way a user would: kubectl for
manifests and logs, the kstrata CLI as a subprocess, the API for waiting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from support.cluster import TestCluster
from support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
OVERLAY = REPO_ROOT / "manifests" / "overlays" / "local"
OPERATOR_NAMESPACE = "kstrata-system"
OPERATOR_IMAGE = "kstrata-operator:dev"
TOOLBOX_IMAGE = "kstrata-toolbox:dev"
OPERATOR_SELECTOR = "app.kubernetes.io/name=kstrata,app.kubernetes.io/component=operator"


@dataclass(frozen=True)
class Installed:
    cluster: TestCluster
    pods: tuple[str, ...]


def _deployment_settled(cluster: TestCluster, namespace: str, name: str) -> bool:
    body: Any = cluster.apps.read_namespaced_deployment(name, namespace)
    status, wanted = body.status, body.spec.replicas
    return bool(
        status.observed_generation == body.metadata.generation
        and (status.updated_replicas or 0) == wanted
        and (status.ready_replicas or 0) == wanted
        and (status.available_replicas or 0) == wanted
        and (status.replicas or 0) == wanted
    )


def wait_rolled_out(cluster: TestCluster, namespace: str, name: str, timeout: float = 120) -> None:
    """The Deployment's newest template is what every one of its pods runs, all Ready."""
    wait_for(
        lambda: _deployment_settled(cluster, namespace, name),
        timeout=timeout,
        interval=0.2,
        what=f"deployment {namespace}/{name} rolled out",
    )
    wait_for(
        lambda: (
            all(
                pod.metadata.deletion_timestamp is None for pod in pods_of(cluster, namespace, name)
            )
            and len(pods_of(cluster, namespace, name)) == _replicas(cluster, namespace, name)
        ),
        timeout=timeout,
        interval=0.2,
        what=f"old pods of {namespace}/{name} gone",
    )


def _replicas(cluster: TestCluster, namespace: str, name: str) -> int:
    return int(cluster.apps.read_namespaced_deployment(name, namespace).spec.replicas or 0)


def pods_of(cluster: TestCluster, namespace: str, deployment: str) -> list[Any]:
    body: Any = cluster.apps.read_namespaced_deployment(deployment, namespace)
    selector = ",".join(f"{k}={v}" for k, v in body.spec.selector.match_labels.items())
    return list(cluster.core.list_namespaced_pod(namespace, label_selector=selector).items)


def install_kstrata(cluster: TestCluster) -> Installed:
    """``kubectl apply -k manifests/overlays/local``; both operator replicas Ready."""
    cluster.kubectl("apply", "-k", str(OVERLAY))
    return Installed(cluster, wait_serving(cluster))


def uninstall_kstrata(cluster: TestCluster) -> None:
    """``kubectl delete -k manifests/overlays/local`` (CRDs and namespace too), if installed."""
    cluster.kubectl(
        "delete", "-k", str(OVERLAY), "--ignore-not-found", "--wait=true", "--timeout=120s"
    )
    wait_for(
        lambda: not cluster.exists(cluster.core.read_namespace, OPERATOR_NAMESPACE),
        timeout=120,
        what="the operator namespace gone",
    )


def wait_serving(cluster: TestCluster) -> tuple[str, ...]:
    """However installed: every operator replica Ready and the webhook answering; pod names."""
    wait_rolled_out(cluster, OPERATOR_NAMESPACE, "kstrata", timeout=180)
    # The webhook answers only once a replica has written the caBundle and
    # listens; until then failurePolicy: Fail refuses every ConfigProfile write.
    wait_for(
        lambda: _webhook_ca_written(cluster),
        timeout=60,
        what="the operator to write the webhook's caBundle",
    )
    # Ready pods are not yet a reachable Service: kube-proxy programs the new
    # endpoints a moment later.  A server-side dry run goes through the webhook.
    wait_for(
        lambda: _webhook_answers(cluster),
        timeout=60,
        interval=0.2,
        what="the webhook to answer through its Service",
    )
    pods = cluster.core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=OPERATOR_SELECTOR)
    return tuple(sorted(p.metadata.name or "" for p in pods.items))


def _webhook_ca_written(cluster: TestCluster) -> bool:
    result = cluster.kubectl(
        "get",
        "validatingwebhookconfiguration",
        "kstrata.dev",
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
        check=False,
    )
    return result.returncode == 0 and len(result.stdout) > 100


PROBE_PROFILE = REPO_ROOT / "examples" / "config" / "platform-defaults.yaml"


def _webhook_answers(cluster: TestCluster) -> bool:
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", "default", "-f", str(PROBE_PROFILE), check=False
    )
    return result.returncode == 0


def apply(cluster: TestCluster, namespace: str, *documents: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(list(documents)))


def kstrata_cli(cluster: TestCluster, *args: str, input: str | None = None) -> str:
    """The kstrata CLI as a user runs it, against the node cluster."""
    command = [str(Path(sys.executable).parent / "kstrata"), *args]
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    result = subprocess.run(
        command, input=input, capture_output=True, text=True, timeout=60, env=env
    )
    if result.returncode != 0:
        raise AssertionError(f"kstrata {args[0]} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def config_profile(name: str, config_map: str, base: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A ConfigProfile rendering ``base`` (and any further spec fields) into ``config_map``."""
    return {
        "apiVersion": "kstrata.dev/v1alpha1",
        "kind": "ConfigProfile",
        "metadata": {"name": name},
        "spec": {
            "base": base,
            "output": {"configMapName": config_map, "format": "yaml"},
            **spec,
        },
    }


def sealed_secret(cluster: TestCluster, namespace: str, name: str, **values: str) -> dict[str, Any]:
    """A SealedSecret sealed by ``kstrata seal`` with the cluster's key; no value in clear."""
    literals = [
        arg for key, value in values.items() for arg in ("--from-literal", f"{key}={value}")
    ]
    manifest = kstrata_cli(cluster, "seal", "-n", namespace, "--name", name, *literals)
    assert not any(value in manifest for value in values.values())
    return dict(yaml.safe_load(manifest))


def logs(cluster: TestCluster, namespace: str, pod: str, container: str | None = None) -> str:
    args = ["logs", "-n", namespace, pod]
    if container:
        args += ["-c", container]
    return cluster.kubectl(*args).stdout


def restricted_container(name: str, command: list[str], **extra: Any) -> dict[str, Any]:
    """A container meeting the restricted Pod Security Standard, from the toolbox image."""
    return {
        "name": name,
        "image": TOOLBOX_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **extra,
    }


def deployment(
    name: str,
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    *,
    replicas: int = 2,
    annotations: dict[str, str] | None = None,
    **pod_spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            # One new pod at a time and none removed before its successor is
            # Ready, as most applications roll.
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "enableServiceLinks": False,
                    "containers": containers,
                    "volumes": volumes,
                    **pod_spec,
                },
            },
        },
    }
