"""kstrata's own transport against the real API server: TLS, client certificates, tokens.

The operator no longer goes through the ``kubernetes`` client (issue 18,
memory): :mod:`kstrata.kube.transport` verifies the server against the
cluster CA, presents the kubeconfig's client certificate or a bearer token,
re-reads a token file as a ServiceAccount's bound token rotates, and shares
one pool between threads.  The last test runs ``python -m kstrata operator
run`` with ``-X importtime`` and reads every module the process imported.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import pytest

import controlplane
from kstrata.errors import ForbiddenError, NotFoundError, TransientClusterError
from kstrata.kube.api import CONFIG_MAPS, NAMESPACES, KubeApi, Resource
from kstrata.kube.connection import Cluster
from kstrata.kube.transport import Transport
from kstrata.payloads import KubeObject
from support.cluster import TestCluster
from support.waiting import wait_for

SELF_SUBJECT_REVIEWS: Final[Resource[KubeObject]] = Resource(
    "authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", namespaced=False
)


def who(cluster: Cluster) -> str:
    """The user name the API server authenticated this connection as."""
    review = KubeApi(cluster).create(
        SELF_SUBJECT_REVIEWS,
        None,
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}},
    )
    return str(review["status"]["userInfo"]["username"])


def token_for(cluster: TestCluster, namespace: str, account: str) -> str:
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    return cluster.kubectl("create", "token", account, "-n", namespace).stdout.strip()


def with_token(cluster: TestCluster, token: str | None, token_path: Path | None) -> Cluster:
    """The test cluster's server and CA, authenticated by a token instead of a certificate."""
    credentials = dataclasses.replace(
        cluster.connection.credentials,
        certificate_path=None,
        private_key_path=None,
        scheme="Bearer",
        token=token,
        token_path=str(token_path) if token_path else None,
    )
    return Cluster(credentials=credentials)


def test_the_client_certificate_is_presented_and_the_server_verified(
    cluster: TestCluster, namespace: str
) -> None:
    assert cluster.connection.credentials.certificate_path is not None
    assert cluster.connection.credentials.verify_tls
    api = KubeApi(cluster.connection)
    made = api.create(CONFIG_MAPS, namespace, {"metadata": {"name": "c"}, "data": {"k": "v"}})
    assert made["metadata"]["managedFields"][0]["manager"] == "kstrata"
    got = api.get(CONFIG_MAPS, namespace, "c")
    assert got["data"] == {"k": "v"}
    api.patch(CONFIG_MAPS, namespace, "c", {"data": {"k": "w"}})
    assert api.get(CONFIG_MAPS, namespace, "c")["data"] == {"k": "w"}
    api.delete(CONFIG_MAPS, namespace, "c")
    with pytest.raises(NotFoundError):
        api.get(CONFIG_MAPS, namespace, "c")
    assert who(cluster.connection) != "system:anonymous"


def test_a_server_the_ca_does_not_vouch_for_is_refused(cluster: TestCluster) -> None:
    # The system trust store instead of the cluster CA: the handshake must fail.
    credentials = dataclasses.replace(cluster.connection.credentials, ca_path=None)
    with pytest.raises(TransientClusterError, match="cannot reach the API server") as caught:
        KubeApi(Cluster(credentials=credentials), timeout=5).get(NAMESPACES, None, "default")
    assert "CERTIFICATE_VERIFY_FAILED" in repr(caught.value.__cause__)


def test_a_rotated_token_file_is_read_again(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    first, second = token_for(cluster, namespace, "first"), token_for(cluster, namespace, "second")
    token_file = tmp_path / "token"
    token_file.write_text(first)
    connection = with_token(cluster, None, token_file)
    # As in a pod: the transport re-reads the file (here at once; every 60 s in production).
    object.__setattr__(
        connection,
        "transport",
        Transport(connection.credentials, token_refresh_seconds=0),
    )
    assert who(connection) == f"system:serviceaccount:{namespace}:first"
    token_file.write_text(second)  # the kubelet rotates the bound token
    assert who(connection) == f"system:serviceaccount:{namespace}:second"
    token_file.write_text("not-a-token")
    with pytest.raises(ForbiddenError):
        who(connection)


def test_a_fixed_token_is_sent_as_a_bearer_token(cluster: TestCluster, namespace: str) -> None:
    token = token_for(cluster, namespace, "fixed")
    assert who(with_token(cluster, token, None)) == f"system:serviceaccount:{namespace}:fixed"


def test_threads_share_one_pool(cluster: TestCluster, namespace: str) -> None:
    connection = Cluster(credentials=cluster.connection.credentials)
    api = KubeApi(connection)
    names = [f"c-{i}" for i in range(40)]

    def create(name: str) -> str:
        return str(api.create(CONFIG_MAPS, namespace, {"metadata": {"name": name}})["kind"])

    with ThreadPoolExecutor(16) as pool:
        kinds = list(pool.map(create, names))
    assert kinds == ["ConfigMap"] * len(names)
    pools: Any = connection.transport._pool_manager().pools
    assert len(pools) == 1


#: ``python -m kstrata`` that writes, at exit, every module the process had loaded.
_RUN_AND_LIST_MODULES = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def dump():
    with open(out, "w") as f:
        f.write("\\n".join(sorted(n for n, m in sys.modules.items() if m is not None)))
atexit.register(dump)
runpy.run_module("kstrata", run_name="__main__", alter_sys=True)
"""


def test_the_operator_process_never_imports_the_kubernetes_client(
    cluster: TestCluster, tmp_path: Path
) -> None:
    metrics_port, liveness_port = controlplane.free_port(), controlplane.free_port()
    modules = tmp_path / "modules"
    argv = [
        sys.executable, "-c", _RUN_AND_LIST_MODULES, str(modules),
        "--kubeconfig", str(cluster.kubeconfig),
        "operator", "run", "--standalone", "--all-namespaces",
        f"--metrics-address=127.0.0.1:{metrics_port}",
        f"--liveness=http://127.0.0.1:{liveness_port}/healthz",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def live() -> bool:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{liveness_port}/healthz", timeout=2
                ) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(live, timeout=60, what="operator liveness")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # Everything the operator loaded while it connected, logged in and watched.
    loaded = set(modules.read_text().split())
    assert {"kopf", "urllib3", "kstrata.kube.transport", "kstrata.controller.runner"} <= loaded
    assert sorted(m for m in loaded if m.split(".")[0] == "kubernetes") == []
