"""The metrics the alerts and the dashboard read, as the real programs export them.

``promtool check metrics`` lints the operator's own /metrics output after it
served a valid and refused an invalid ConfigProfile (so the labelled series
exist); and the API server's admission-webhook metrics that the webhook
alerts select are shown to exist, with the labels the alerts use, after a
call to a webhook named like kstrata's failed.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster import TestCluster
from support.integration_tools import MONITORING
from support.operator import RunningOperator, running_operator
from support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("kstrata_crds")]

GROUP, VERSION = "kstrata.dev", "v1alpha1"


def profile(name: str, replicas: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigProfile",
        "metadata": {"name": name},
        "spec": {
            "schema": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
            "base": {"replicas": replicas},
        },
    }


def ready_status(cluster: TestCluster, namespace: str, name: str) -> str | None:
    body = cluster.kstrata_object("configprofiles", namespace, name)
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return str(condition["status"])
    return None


@pytest.fixture
def operator(cluster: TestCluster, namespace: str) -> Iterator[RunningOperator]:
    with running_operator(cluster, namespaces=(namespace,)) as running:
        yield running


def test_promtool_accepts_the_operators_real_metrics(
    cluster: TestCluster, namespace: str, operator: RunningOperator, promtool: Path
) -> None:
    for name, replicas in (("good", 2), ("bad", "two")):
        cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(profile(name, replicas))
        )
    wait_for(lambda: ready_status(cluster, namespace, "good") == "True", timeout=30, what="good")
    wait_for(lambda: ready_status(cluster, namespace, "bad") == "False", timeout=30, what="bad")
    exposition = operator.metrics()
    # The series the alerts and the dashboard need are really there.
    assert 'kstrata_reconcile_total{kind="ConfigProfile",result="ok"}' in exposition
    assert 'kstrata_validation_failures_total{kind="ConfigProfile",reason="SchemaViolation"}' in (
        exposition
    )
    assert "kstrata_reconcile_duration_seconds_bucket" in exposition

    # Ready objects by state, from the status the watch delivered.  (At least
    # one each: an operator run in the test process shares the registry with
    # the session's earlier ones.)
    def objects(ready: str, reason: str) -> float:
        prefix = f'kstrata_objects{{kind="ConfigProfile",ready="{ready}",reason="{reason}"}} '
        values = [
            float(line.removeprefix(prefix))
            for line in operator.metrics().splitlines()
            if line.startswith(prefix)
        ]
        return values[0] if values else 0.0

    wait_for(
        lambda: objects("true", "Rendered") >= 1 and objects("false", "SchemaViolation") >= 1,
        timeout=30,
        what="kstrata_objects to count the Ready and the refused profile",
    )
    exposition = operator.metrics()
    # The key-age alert's inputs are exported (their values: tests/cluster/test_sealing_keys.py).
    assert "kstrata_sealing_key_newest_created_timestamp_seconds " in exposition
    assert "kstrata_sealing_key_rotation_period_seconds " in exposition
    result = subprocess.run(
        [str(promtool), "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def series(exposition: str, name: str) -> list[dict[str, str]]:
    found = []
    for line in exposition.splitlines():
        match = re.match(rf"{name}{{(.*)}} ", line)
        if match:
            found.append(dict(re.findall(r'(\w+)="([^"]*)"', match.group(1))))
    return found


def test_the_api_servers_webhook_metrics_carry_what_the_alerts_select(
    cluster: TestCluster, namespace: str
) -> None:
    # A webhook named like kstrata's, for this namespace only, that nobody
    # answers (port 1 on loopback refuses at once).
    configuration = f"kstrata-alerts-{uuid.uuid4().hex[:8]}"
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": configuration},
        "webhooks": [
            {
                "name": "configprofiles.kstrata.dev",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 2,
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["CREATE"],
                        "resources": ["configprofiles"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "clientConfig": {"url": "https://127.0.0.1:1/validate"},
            }
        ],
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(webhook))
    try:

        def refused() -> bool:
            result = cluster.kubectl(
                "create",
                "-n",
                namespace,
                "-f",
                "-",
                input=yaml.safe_dump(profile("refused", 1)),
                check=False,
            )
            return result.returncode != 0 and "configprofiles.kstrata.dev" in result.stderr

        wait_for(refused, timeout=30, what="the webhook to be called (and fail)")
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", configuration)
    exposition = cluster.kubectl("get", "--raw", "/metrics").stdout
    rules = (MONITORING / "kstrata.rules.yaml").read_text()

    rejections = [
        s
        for s in series(exposition, "apiserver_admission_webhook_rejection_count")
        if s.get("name") == "configprofiles.kstrata.dev"
    ]
    assert {s["error_type"] for s in rejections} >= {"calling_webhook_error"}, rejections
    assert 'error_type!="no_error"' in rules
    durations = [
        s
        for s in series(exposition, "apiserver_admission_webhook_admission_duration_seconds_bucket")
        if s.get("name") == "configprofiles.kstrata.dev"
    ]
    assert durations, "the duration histogram the KstrataWebhookSlow alert reads"
    assert {"le", "type", "operation"} <= set(durations[0])
