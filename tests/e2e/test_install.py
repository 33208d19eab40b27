"""kstrata installed the way users install it: two operator pods from its own image.

The shipped manifests (through the local overlay, which changes only the
image) must give two Running, Ready replicas under the restricted Pod
Security Standard, with logs readable through the API server, and the
admission webhook must answer through its Service with no operator process
started by the test.
"""

from __future__ import annotations

import json
from pathlib import Path

from support.e2e import OPERATOR_IMAGE, OPERATOR_NAMESPACE, Installed, logs

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_two_operator_pods_run_from_the_local_image(kstrata: Installed) -> None:
    cluster = kstrata.cluster
    assert len(kstrata.pods) == 2
    for name in kstrata.pods:
        pod = cluster.core.read_namespaced_pod(name, OPERATOR_NAMESPACE)
        assert pod.status.phase == "Running"
        (container,) = pod.spec.containers
        assert container.image == OPERATOR_IMAGE
        assert container.security_context.read_only_root_filesystem is True
        (status,) = pod.status.container_statuses
        assert status.ready is True
        assert status.image.endswith(OPERATOR_IMAGE)
        # The namespace enforces "restricted": admitted pods meet it.
    labels = cluster.core.read_namespace(OPERATOR_NAMESPACE).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_operator_logs_are_readable_through_the_api_server(kstrata: Installed) -> None:
    # kubectl logs goes API server -> kubelet on the node: a real node's path.
    for pod in kstrata.pods:
        text = logs(kstrata.cluster, OPERATOR_NAMESPACE, pod)
        # --log-format=json, from the Deployment's args: one JSON object a line.
        records = [json.loads(line) for line in text.splitlines()]
        assert all("severity" in record and "message" in record for record in records)
        # Every replica says where it serves its metrics when it starts.
        assert any(record["message"].startswith("metrics on http://") for record in records)


def test_webhook_in_the_cluster_refuses_an_invalid_profile(
    kstrata: Installed, e2e_namespace: str
) -> None:
    result = kstrata.cluster.kubectl(
        "apply",
        "-n",
        e2e_namespace,
        "-f",
        str(REPO_ROOT / "examples" / "invalid" / "payments.yaml"),
        check=False,
    )
    assert result.returncode != 0
    assert 'admission webhook "configprofiles.kstrata.dev" denied the request' in result.stderr
    listed = kstrata.cluster.kubectl("get", "configprofiles", "-n", e2e_namespace, "-o", "name")
    assert listed.stdout.strip() == ""
