"""The admission webhook slow (beyond its 5 s timeout), then down, then back.

The API server reaches the webhook through a loopback TCP proxy of the test
(``support.faults.WebhookProxy``): ``slow`` holds every connection 8 s
before forwarding a byte, past the configuration's ``timeoutSeconds: 5``;
``down`` leaves nothing listening.  With ``failurePolicy: Fail`` every
ConfigProfile write is refused meanwhile, and a refused write changes
nothing at all: not the object (its resourceVersion stays), not its
ConfigMap, revisions or status, and no workload rolls.  A ``kubectl apply
-f dir/`` is not a transaction: objects the webhook does not review (here a
SealedSecret) are written, and roll their workloads, without the refused
profile.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import controlplane
from support.cluster import TestCluster
from support.faults import GROUP, PROFILES, VERSION, WebhookProxy, record_recovery
from support.operator import running_operator
from support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("kstrata_crds")]

WEBHOOK_TIMEOUT = 5  # timeoutSeconds of the configuration kstrata writes


@pytest.fixture
def proxy() -> Iterator[WebhookProxy]:
    proxy = WebhookProxy(controlplane.free_port(), delay=8.0)
    proxy.listen()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def webhook_configuration(cluster: TestCluster, namespace: str) -> Iterator[str]:
    """Its name; deleted afterwards (pointing at nothing, it would refuse later writes)."""
    name = f"kstrata-faults-{namespace}"
    try:
        yield name
    finally:
        admission = client.AdmissionregistrationV1Api(cluster.api)
        if cluster.exists(admission.read_validating_webhook_configuration, name):
            admission.delete_validating_webhook_configuration(name)


def snapshot(fleet: Any, name: str) -> dict[str, Any]:
    """Everything a write of profile ``name`` could have changed."""
    body = fleet.cluster.custom.get_namespaced_custom_object(
        GROUP, VERSION, fleet.namespace, PROFILES, name
    )
    return {
        "resourceVersion": body["metadata"]["resourceVersion"],
        "status": body.get("status"),
        "served": fleet.value_served(name, body),
        "revisions": len(
            fleet.cluster.apps.list_namespaced_controller_revision(fleet.namespace).items
        ),
        "replica sets": len(fleet.replica_sets()),
        "announced": fleet.announced(),
    }


def apply(cluster: TestCluster, path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = cluster.kubectl("apply", "-f", str(path), check=False)
    return result, time.monotonic() - started


def test_webhook_slow_then_down_refuses_and_writes_nothing(
    cluster: TestCluster,
    namespace: str,
    fleet_of: Any,
    proxy: WebhookProxy,
    webhook_configuration: str,
    tmp_path: Path,
) -> None:
    fleet = fleet_of(2)
    profile, sealed = fleet.profiles[0], fleet.sealed[0]
    with running_operator(
        cluster,
        namespaces=(namespace,),
        operator_namespace=namespace,
        webhook_address=f"127.0.0.1:{proxy.upstream_port}",
        webhook_url=proxy.url,
        webhook_configuration=webhook_configuration,
    ):
        fleet.wait_for_public_keys()
        first = fleet.change_set([profile], 0, tmp_path)

        def reviewed() -> bool:
            # A dry run is reviewed too; the proxy counts the API server's calls.
            calls = proxy.connections
            result = cluster.kubectl("apply", "--dry-run=server", "-f", str(first), check=False)
            return result.returncode == 0 and proxy.connections > calls

        wait_for(reviewed, timeout=60, what="the webhook to review through the proxy")
        fleet.create(tmp_path)
        fleet.wait_converged(since=time.monotonic(), rolled=False)
        before = snapshot(fleet, profile)

        # Slow: kubectl waits the webhook's timeout, then reports the failed call.
        proxy.set("slow")
        slow, waited = apply(cluster, fleet.change_set([profile], 1, tmp_path))
        said = [f"slow webhook, after {waited:.1f} s, exit {slow.returncode}:\n{slow.stderr}"]
        assert slow.returncode == 1
        assert "failed calling webhook" in slow.stderr
        assert "context deadline exceeded" in slow.stderr
        assert WEBHOOK_TIMEOUT <= waited < WEBHOOK_TIMEOUT + 10
        assert snapshot(fleet, profile) == before

        # Down: refused at once; the SealedSecret of the same apply goes through.
        proxy.set("down")
        down, waited = apply(cluster, fleet.change_set([profile, sealed], 1, tmp_path))
        output = down.stdout + down.stderr
        said.append(f"webhook down, after {waited:.1f} s, exit {down.returncode}:\n{output}")
        assert down.returncode == 1
        assert "connect: connection refused" in down.stderr
        assert f"configprofiles/{profile}" in down.stderr or f'"{profile}"' in down.stderr
        assert f"sealedsecret.kstrata.dev/{sealed} configured" in down.stdout
        with fleet.lock:
            fleet.expected[sealed] = 1
        fleet.wait_converged(since=time.monotonic())  # the SealedSecret alone rolled web
        after_down = snapshot(fleet, profile)
        assert after_down["resourceVersion"] == before["resourceVersion"]
        assert after_down["status"] == before["status"]
        assert after_down["served"] == before["served"] == 0

        # Back: the first apply after the webhook returns is admitted.
        proxy.set("pass")
        back = time.monotonic()
        wait_for(
            lambda: apply(cluster, fleet.change_set([profile], 1, tmp_path))[0].returncode == 0,
            timeout=30,
            what="an apply to be admitted again",
        )
        admitted = time.monotonic()
        with fleet.lock:
            fleet.expected[profile] = 1
        converged = fleet.wait_converged(since=back)
        record_recovery(
            "webhook slow, then down", "webhook back -> apply admitted", admitted - back
        )
        record_recovery("webhook slow, then down", "webhook back -> converged", converged)
        verdict = fleet.verdict(tmp_path, final_value=2)
    # After the operator: kopf's test runner captures standard output while it runs.
    print("\n".join([*said, str(verdict)]))
