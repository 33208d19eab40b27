"""Reloads under the shipped RBAC: ``reload: auto``, plain ConfigMaps and CronJobs
work with exactly the rights manifests/ grants the operator's ServiceAccount.

Why a test of its own: before plain sources existed, ``kstrata.dev/reload:
auto`` listed ConfigMaps by label while the ClusterRole granted only
get/create/update on ConfigMaps, so every auto pass failed with 403 in a
real install and no test noticed (they ran as cluster admin).  Here the
operator runs in-process with a token of ``kstrata-system/kstrata`` only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from support.cluster import TestCluster
from support.operator import running_operator
from support.serviceaccount import (
    NOT_APPLIED,
    as_service_account,
    installed,
    mint_kubeconfig,
    render,
)
from support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE, ACCOUNT = "kstrata-system", "kstrata"
RECORD = "kstrata.dev/revisions"
#: No webhook is served here: its configuration would refuse every profile write.
SKIPPED = NOT_APPLIED | {"ValidatingWebhookConfiguration"}


def apply(cluster: TestCluster, namespace: str, *objects: Any) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))


def pod_spec() -> Any:
    return {
        "containers": [
            {
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "envFrom": [{"configMapRef": {"name": "plain", "optional": True}}],
            }
        ],
        "volumes": [{"name": "cfg", "configMap": {"name": "payments", "optional": True}}],
    }


def records(cluster: TestCluster, namespace: str) -> tuple[str, str]:
    """The record on the Deployment's pod template and on the CronJob's job template."""
    web = cluster.apps.read_namespaced_deployment("web", namespace)
    nightly = client.BatchV1Api(cluster.api).read_namespaced_cron_job("nightly", namespace)
    job_meta = nightly.spec.job_template.spec.template.metadata
    return (
        str((web.spec.template.metadata.annotations or {}).get(RECORD)),
        str(((job_meta.annotations if job_meta else None) or {}).get(RECORD)),
    )


def test_auto_reloads_of_profiles_plain_config_maps_and_cron_jobs_with_the_shipped_rbac(
    cluster: TestCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("kopf", "kstrata"):
        caplog.set_level(logging.DEBUG, logger=name)
    objects = [o for o in render(cluster, REPO / "manifests") if o["kind"] not in SKIPPED]
    with cluster.temporary_namespace("rbac-reload") as ns, installed(cluster, objects):
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *(f"crd/{o['metadata']['name']}" for o in objects if o["kind"].endswith("Definition")),
        )
        wait_for(
            lambda: cluster.exists(
                cluster.core.read_namespaced_service_account, ACCOUNT, OPERATOR_NAMESPACE
            ),
            timeout=30,
            what="the ServiceAccount",
        )
        kubeconfig = mint_kubeconfig(cluster, OPERATOR_NAMESPACE, ACCOUNT, tmp_path / "sa.yaml")
        profile = {
            "apiVersion": "kstrata.dev/v1alpha1",
            "kind": "ConfigProfile",
            "metadata": {"name": "payments"},
            "spec": {"base": {"port": 1}},
        }
        plain = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain"}}
        auto = {"kstrata.dev/reload": "auto"}
        web = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "annotations": auto},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec()},
            },
        }
        nightly = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly", "annotations": auto},
            "spec": {
                "schedule": "0 0 1 1 *",
                "suspend": True,
                "jobTemplate": {
                    "spec": {"template": {"spec": dict(pod_spec(), restartPolicy="Never")}}
                },
            },
        }
        apply(cluster, ns, profile, dict(plain, data={"mode": "a"}), web, nightly)
        with running_operator(
            as_service_account(cluster, kubeconfig),
            operator_namespace=OPERATOR_NAMESPACE,
        ) as operator:

            def recorded() -> str | None:
                found = cluster.apps.read_namespaced_deployment("web", ns).metadata.annotations
                value = (found or {}).get(RECORD)
                return (
                    str(value)
                    if value and "payments=1" in value and "configmap/plain=" in value
                    else None
                )

            first = wait_for(recorded, timeout=60, what="web to record the profile and plain")
            apply(cluster, ns, dict(plain, data={"mode": "b"}))
            wait_for(
                lambda: all("configmap/plain=" in r and r != first for r in records(cluster, ns)),
                timeout=30,
                what="the Deployment and the CronJob to roll for the plain ConfigMap",
            )
            after_plain = records(cluster, ns)
            apply(cluster, ns, dict(profile, spec={"base": {"port": 2}}))
            wait_for(
                lambda: all("payments=2" in r for r in records(cluster, ns)),
                timeout=30,
                what="the Deployment and the CronJob to roll for the profile",
            )
            assert after_plain != records(cluster, ns)
        logs = caplog.text + (operator.runner.output or "")
        forbidden = [
            line
            for line in logs.splitlines()
            if "forbidden" in line.lower() or "not enough permissions" in line.lower()
        ]
        assert forbidden == []
