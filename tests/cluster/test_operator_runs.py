"""The operator starts against the real cluster, reports liveness and serves /metrics."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request

from kubernetes import client

import controlplane
from support.cluster import TestCluster
from support.operator import running_operator
from support.waiting import wait_for


def test_in_process_operator_is_live_and_exports_metrics(cluster: TestCluster) -> None:
    with running_operator(cluster) as operator:
        assert operator.liveness() == {}
        exposition = operator.metrics()
        assert "kstrata_operator_up 1.0" in exposition
    assert operator.runner.exit_code == 0


def test_python_dash_m_kstrata_runs_the_operator_until_sigterm(cluster: TestCluster) -> None:
    metrics_port, liveness_port = controlplane.free_port(), controlplane.free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kstrata",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "operator",
            "run",
            "--standalone",
            "--all-namespaces",
            f"--metrics-address=127.0.0.1:{metrics_port}",
            f"--liveness=http://127.0.0.1:{liveness_port}/healthz",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def serving() -> bool:
            urls = (
                f"http://127.0.0.1:{liveness_port}/healthz",
                f"http://127.0.0.1:{metrics_port}/metrics",
            )
            for url in urls:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status != 200:
                        return False
            return True

        wait_for(serving, timeout=60, what="liveness and metrics endpoints")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    # Outside the cluster, without --webhook-url, no webhook configuration may be
    # registered: it would point at a Service the API server cannot reach.
    assert "admission webhook disabled outside the cluster" in output
    admission = client.AdmissionregistrationV1Api(cluster.api)
    assert not cluster.exists(admission.read_validating_webhook_configuration, "kstrata.dev")
