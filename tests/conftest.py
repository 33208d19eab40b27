"""Test tiers and the fixtures that give tests a real cluster.

Tiers: ``tests/unit`` needs nothing; everything under ``tests/cluster`` and
``tests/examples`` is marked ``cluster`` and runs against the real local
control plane (tools/controlplane), started once per session.  ``make test``
runs both; ``pytest -m "not cluster"`` runs the fast tier alone.

Bring your own cluster: set ``KSTRATA_TEST_KUBECONFIG`` to an absolute kubeconfig
path (a kind cluster, for instance) and the session uses it instead of
starting the embedded control plane.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis' per-example deadline is wall-clock time: on this shared 2-core
# machine one example of a cheap property took 678 ms at load 20 and 0.04 ms
# on rerun.  A wall-clock bound in a test flakes under load, so properties get
# no deadline; what must be fast is bounded in CPU seconds where it matters.
settings.register_profile("kstrata", deadline=None)
settings.load_profile("kstrata")

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tools" / "controlplane"))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from support.cluster import TestCluster, start_session_cluster  # noqa: E402

CLUSTER_DIRS = ("cluster", "examples", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = Path(str(item.path)).relative_to(REPO_ROOT / "tests")
        if relative.parts and relative.parts[0] in CLUSTER_DIRS:
            item.add_marker(pytest.mark.cluster)
        if relative.parts and relative.parts[0] == "e2e":
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    """The real control plane for this session (or the one KSTRATA_TEST_KUBECONFIG names)."""
    existing = os.environ.get("KSTRATA_TEST_KUBECONFIG")
    with start_session_cluster(
        Path(existing) if existing else None, tmp_path_factory.mktemp("controlplane")
    ) as running:
        yield running


@pytest.fixture
def namespace(cluster: TestCluster) -> Iterator[str]:
    """A fresh namespace for one test; deleted afterwards, and really gone."""
    with cluster.temporary_namespace() as name:
        yield name


@pytest.fixture
def keys_namespace(cluster: TestCluster) -> Iterator[str]:
    """The operator namespace of the operator under test: its keys live there."""
    with cluster.temporary_namespace(prefix="keys") as name:
        yield name


@pytest.fixture
def other_namespace(cluster: TestCluster) -> Iterator[str]:
    """A second fresh namespace, for what must not cross namespaces."""
    with cluster.temporary_namespace("other") as name:
        yield name


@pytest.fixture(scope="session")
def kstrata_crds(cluster: TestCluster) -> None:
    """The kstrata CRDs, installed once per session from crds/ (as users install them)."""
    cluster.kubectl("apply", "-k", str(REPO_ROOT / "crds"))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/configprofiles.kstrata.dev",
        "crd/sealedsecrets.kstrata.dev",
    )
