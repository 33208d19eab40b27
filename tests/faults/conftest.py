"""Fixtures of the fault suite, and the recovery times it measured in pytest's summary.

Every module here marks itself ``cluster`` (tests/conftest.py marks
directories by name; this one is not in its list) and uses the session's
real control plane.  Faults that stop a component restart it before the test
ends; ``healthy_plane`` checks that afterwards, for the tests that follow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cluster import TestCluster
from support.faults import RECOVERIES, Fleet, OperatorProcess, healthy_control_plane


@pytest.fixture(autouse=True)
def healthy_plane(cluster: TestCluster) -> Iterator[None]:
    with healthy_control_plane(cluster):
        yield


@pytest.fixture
def operator(cluster: TestCluster, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """An operator process for the test's namespace, not started yet; stopped afterwards.

    The namespace is its operator namespace too (its sealing keys live there):
    one namespace to delete per test, not two.
    """
    process = OperatorProcess(
        cluster,
        namespaces=(namespace,),
        operator_namespace=namespace,
        log_path=tmp_path / "operator.log",
    )
    try:
        yield process
    finally:
        process.stop()
        # Shown by pytest only when the test failed.
        print(f"operator log: {process.log_path}\n{process.log_tail(80)}")


@pytest.fixture
def fleet_of(cluster: TestCluster, namespace: str) -> Any:
    def make(size: int) -> Fleet:
        return Fleet(cluster, namespace, namespace, size)

    return make


@pytest.fixture
def plane(cluster: TestCluster) -> Any:
    """The embedded control plane; a cluster brought along cannot be faulted from here."""
    if cluster.plane is None:
        pytest.skip("needs the embedded control plane (KSTRATA_TEST_KUBECONFIG is set)")
    return cluster.plane


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECOVERIES:
        return
    terminalreporter.section("fault recovery (fault cleared -> converged)")
    for scenario, what, seconds in RECOVERIES:
        terminalreporter.write_line(f"{scenario:<28} {what:<48} {seconds:6.1f} s")
