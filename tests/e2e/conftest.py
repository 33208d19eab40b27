"""The end-to-end tier: kstrata installed as pods on a real node, serving real pods.

Every assertion here is about a running pod: what a container printed, which
pods exist, what a process received.  The session starts its own control
plane with a node (tools/node: containerd, kubelet, kube-proxy,
kube-scheduler; images built locally by tools/images), installs kstrata with
``kubectl apply -k manifests/overlays/local`` (the shipped manifests with
the local image), and at the end stops everything and checks that nothing
of the node is left on the machine.

Bring your own cluster with a node (``make node``, or kind with the images
loaded): set ``KSTRATA_E2E_KUBECONFIG`` to its kubeconfig's absolute path;
the session then neither starts nor stops a node.

The node needs root.  CI runs as root, so there a missing root is a failure;
a developer without root gets a skip that says why.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kstrata.kube.connection import connect
from support.cluster import TestCluster
from support.e2e import Installed, install_kstrata

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tools" / "node"))

import node  # noqa: E402

import controlplane  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The README walk first: it brings up the README's own node in a fresh clone.

    Only one node runs on a machine, and the session's (below) lives until the
    session ends, so the walk runs before any test could start it.
    """
    walk = [item for item in items if item.path.name == "test_readme_walk.py"]
    items[:] = walk + [item for item in items if item.path.name != "test_readme_walk.py"]


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    existing = os.environ.get("KSTRATA_E2E_KUBECONFIG")
    if existing:
        kubeconfig = Path(existing).expanduser().resolve()
        kubectl = str(controlplane.bin_dir() / "kubectl")
        yield TestCluster(kubeconfig, kubectl, connect(kubeconfig))
        return
    if os.geteuid() != 0:
        message = "the end-to-end tier runs pods on a real node, which needs root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # The machine as found: what the node may change, read before it starts
    # (after its packages, or a fresh machine would have no iptables to read).
    node.install_packages()
    before = node.take_record()
    cluster = node.Cluster(tmp_path_factory.mktemp("node-cluster") / "plane")
    cluster.start()
    try:
        plane = cluster.plane
        yield TestCluster(
            plane.kubeconfig, str(plane.kubectl), connect(plane.kubeconfig), plane=plane
        )
    finally:
        cluster.stop()
        left = node.leftovers()
        assert not left, f"the node left these behind: {left}"
        after = node.take_record()
        for what in ("paths", "sysctls", "iptables"):
            assert after[what] == before[what], f"the node changed the machine's {what}"


@pytest.fixture
def kstrata(node_cluster: TestCluster) -> Installed:
    """kstrata installed from manifests/overlays/local, both replicas Ready (idempotent)."""
    return install_kstrata(node_cluster)


@pytest.fixture
def e2e_namespace(node_cluster: TestCluster) -> Iterator[str]:
    with node_cluster.temporary_namespace(
        "e2e", labels={"kstrata.dev/environment": "prod"}
    ) as name:
        yield name
