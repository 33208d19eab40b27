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
        (status,) = pod.status.container_statuses or []
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


def test_pods_have_no_route_off_the_machine(kstrata: Installed) -> None:
    """Containment, read from inside a pod without sending anything: no default route.

    A pod reaches its own network on-link and the Service range through the
    node; every other destination is unreachable before a packet is sent (and
    the node's FORWARD rule would drop it if it were).
    """
    cluster = kstrata.cluster
    routes = cluster.kubectl(
        "exec", "-n", OPERATOR_NAMESPACE, kstrata.pods[0], "--", "cat", "/proc/net/route"
    ).stdout.splitlines()[1:]
    # Columns: interface, destination, gateway, flags, ..., mask (hex, little-endian).
    destinations = {(fields[1], fields[7]) for fields in (line.split() for line in routes)}
    assert ("00000000", "00000000") not in destinations, routes
    as_ip = {
        ".".join(str(b) for b in bytes.fromhex(dest)[::-1])
        + "/"
        + str(bin(int(mask, 16)).count("1"))
        for dest, mask in destinations
    }
    assert as_ip == {"172.29.0.0/24", "172.29.128.0/24"}, as_ip
