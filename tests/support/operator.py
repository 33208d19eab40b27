"""Run the kstrata operator in-process against the test cluster (kopf's KopfRunner)."""

from __future__ import annotations

import contextlib
import json
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kopf.testing import KopfRunner
from kubernetes import client

import controlplane
from kstrata.controller.runner import OperatorContext, api_threads, assemble, kopf_cli_args
from kstrata.settings import Settings
from support.cluster import TestCluster
from support.waiting import wait_for


@dataclass
class RunningOperator:
    context: OperatorContext
    runner: KopfRunner
    liveness_url: str

    @property
    def metrics_url(self) -> str:
        assert self.context.metrics_bound is not None
        host, port = self.context.metrics_bound
        return f"http://{host}:{port}/metrics"

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode())

    def liveness(self) -> Any:
        with urllib.request.urlopen(self.liveness_url, timeout=5) as response:
            return json.loads(response.read())


def test_settings(**overrides: Any) -> Settings:
    """Operator settings for tests: standalone, loopback endpoints, quick retries."""
    liveness = f"http://127.0.0.1:{controlplane.free_port()}/healthz"
    base = Settings(
        standalone=True,
        retry_backoff=0.5,
        metrics_address="127.0.0.1:0",
        liveness_endpoint=liveness,
        # Most tests exercise reconciliation without admission; webhook tests opt in.
        webhook_address=None,
    )
    return base.with_overrides(**overrides)


test_settings.__test__ = False  # type: ignore[attr-defined]


@contextlib.contextmanager
def running_operator(cluster: TestCluster, **overrides: Any) -> Iterator[RunningOperator]:
    settings = test_settings(**overrides)
    # Its own pool, sized as `kstrata operator run` sizes it (the tests' own calls keep theirs).
    connection = cluster.connection.with_pool_size(api_threads(settings))
    context = OperatorContext(settings=settings, cluster=connection)
    args = [*kopf_cli_args(settings), "--verbose"]
    before = _webhook_directories()
    registry, operator_settings = assemble(context)
    with KopfRunner(args, registry=registry, settings=operator_settings, timeout=60) as runner:
        assert settings.liveness_endpoint is not None
        running = RunningOperator(context, runner, settings.liveness_endpoint)
        wait_for(
            lambda: context.metrics_bound is not None and running.liveness() is not None,
            timeout=30,
            what="the operator to start",
        )
        yield running
    # A stopped operator leaves no serving key behind (the suite runs one at a time).
    # Only one with a webhook writes one: for the others the scan of the shared
    # temporary directory could only see another test session's operators.
    if settings.webhook_address:
        assert _webhook_directories() - before == set()


def _webhook_directories() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("kstrata-webhook-*"))


@contextlib.contextmanager
def operator_with_webhook(
    cluster: TestCluster, namespace: str, keys_namespace: str | None = None, **overrides: Any
) -> Iterator[RunningOperator]:
    """The operator with its admission webhook registered for ``namespace``, removed afterwards.

    With ``keys_namespace`` it also watches that namespace and keeps its sealing keys there.
    """
    port = controlplane.free_port()
    name = f"kstrata-test-{namespace}"
    admission = client.AdmissionregistrationV1Api(cluster.api)
    if keys_namespace is not None:
        overrides = {"operator_namespace": keys_namespace, **overrides}
    watched = (namespace,) if keys_namespace is None else (namespace, keys_namespace)
    try:
        with running_operator(
            cluster,
            namespaces=watched,
            webhook_address=f"127.0.0.1:{port}",
            webhook_url=f"https://127.0.0.1:{port}",
            webhook_configuration=name,
            **overrides,
        ) as running:
            yield running
    finally:
        # A webhook left pointing at a stopped operator would refuse every later write.
        if cluster.exists(admission.read_validating_webhook_configuration, name):
            admission.delete_validating_webhook_configuration(name)
