"""An operator whose credentials are revoked stops promptly when told to.

An uninstall deletes the RBAC and the ServiceAccount before the operator's
pod stops (Helm and ``kubectl delete -k`` alike).  At SIGTERM kopf removes
itself from its peering object; that PATCH is refused (403, then 401 once
the ServiceAccount is gone, which invalidates its token), and kopf logged in
again after every 401 and retried at once, about every 10 ms, until the
kubelet killed the pod 30 s later.  Here the operator runs in its own
process with a token minted for a ServiceAccount of its own, peering on;
the binding and then the account are deleted, the process gets SIGTERM,
and it must exit well within a pod's grace period, having logged in again
only a few times.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import controlplane
from support.cluster import TestCluster
from support.serviceaccount import mint_kubeconfig
from support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
PEERING_CRDS = REPO / "manifests" / "base" / "kopf-peering-crds.yaml"
#: A pod's default termination grace period; the operator must be gone well before.
EXIT_DEADLINE = 25.0
#: kopf logs this line at each login after the first.
RELOGIN = "Re-authentication has been initiated"


@pytest.fixture
def account(cluster: TestCluster, namespace: str) -> Iterator[str]:
    """A ServiceAccount bound to cluster-admin (its rights are not what is tested)."""
    name = f"kstrata-shutdown-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("apply", "-f", str(PEERING_CRDS))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/kopfpeerings.kopf.dev"
    )
    cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    cluster.kubectl(
        "create",
        "clusterrolebinding",
        name,
        "--clusterrole=cluster-admin",
        f"--serviceaccount={namespace}:{name}",
    )
    try:
        yield name
    finally:
        cluster.kubectl("delete", "clusterrolebinding", name, "--ignore-not-found")


def refused(cluster: TestCluster, kubeconfig: Path) -> bool:
    """Whether the API server now answers this kubeconfig's token with 401."""
    result = subprocess.run(
        [cluster.kubectl_path, "--kubeconfig", str(kubeconfig), "get", "--raw", "/version"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode != 0 and "Unauthorized" in result.stderr


@pytest.mark.usefixtures("kstrata_crds")
def test_revoked_credentials_do_not_hold_up_shutdown(
    cluster: TestCluster, namespace: str, account: str, tmp_path: Path
) -> None:
    kubeconfig = mint_kubeconfig(cluster, namespace, account, tmp_path / "sa.yaml")
    identity = f"shutdown-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSTRATA_")}
    env["POD_ID"] = identity  # kopf's peering identity, as the Deployment sets it
    log = tmp_path / "operator.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "kstrata", "--kubeconfig", str(kubeconfig)),
                *("operator", "run", "--namespace", namespace, "--no-webhook"),
                f"--operator-namespace={namespace}",
                f"--metrics-address=127.0.0.1:{controlplane.free_port()}",
                f"--liveness=http://127.0.0.1:{controlplane.free_port()}/healthz",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:

        def in_peering() -> bool:
            assert process.poll() is None, log.read_text(errors="replace")[-2000:]
            read = cluster.custom.get_namespaced_custom_object
            if not cluster.exists(read, "kopf.dev", "v1", namespace, "kopfpeerings", "kstrata"):
                return False
            body = read("kopf.dev", "v1", namespace, "kopfpeerings", "kstrata")
            assert isinstance(body, dict)
            return identity in (body.get("status") or {})

        wait_for(in_peering, timeout=90, what="the operator's keep-alive in its peering object")

        # As an uninstall does: the grants go first (403), then the account (401).
        cluster.kubectl("delete", "clusterrolebinding", account)
        cluster.kubectl("delete", "serviceaccount", account, "-n", namespace)
        wait_for(lambda: refused(cluster, kubeconfig), timeout=30, what="the token to be refused")
        logins_before = log.read_text(errors="replace").count(RELOGIN)

        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=EXIT_DEADLINE)
        output = log.read_text(errors="replace")
        relogins = output.count(RELOGIN) - logins_before
        assert process.returncode is not None, (
            f"still running {EXIT_DEADLINE:.0f} s after SIGTERM, "
            f"{relogins} re-logins meanwhile:\n{output[-2000:]}"
        )
        assert relogins <= 3, f"{relogins} re-logins after SIGTERM:\n{output[-2000:]}"
        assert "rejects the operator's credentials (401)" in output
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
