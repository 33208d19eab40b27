"""A handle on the test cluster: API clients, kubectl, namespaces, the operator."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kstrata.domain.crds import GROUP, VERSION
from kstrata.kube.connection import Cluster, connect
from support.waiting import wait_for


@dataclass
class TestCluster:
    kubeconfig: Path
    kubectl_path: str
    connection: Cluster
    #: The embedded control plane, when this session started one (None for BYO clusters).
    plane: Any = None

    __test__ = False  # not a test class, despite the name

    @property
    def api(self) -> Any:
        return self.connection.api_client

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def kstrata_object(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        """One of kstrata's own objects, as the JSON the API server holds."""
        found = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        assert isinstance(found, dict), found  # the client types custom objects as `object`
        return found

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    @contextlib.contextmanager
    def temporary_namespace(
        self, prefix: str = "t", labels: dict[str, str] | None = None
    ) -> Iterator[str]:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
        )
        try:
            yield name
        finally:
            self.delete_namespace(name)

    def delete_namespace(self, name: str, timeout: float = 90.0) -> None:
        with contextlib.suppress(ApiException):
            self.core.delete_namespace(name)
        wait_for(
            lambda: not self.exists(self.core.read_namespace, name),
            timeout=timeout,
            what=f"namespace {name} to be gone",
        )

    @staticmethod
    def exists(read: Any, *args: Any) -> bool:
        try:
            read(*args)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True


@contextlib.contextmanager
def start_session_cluster(existing: Path | None, state_dir: Path) -> Iterator[TestCluster]:
    import controlplane

    if existing is not None:
        kubeconfig = existing.expanduser().resolve()
        yield TestCluster(kubeconfig, "kubectl", connect(kubeconfig))
        return
    controlplane.ensure_built(quiet=True)
    plane = controlplane.ControlPlane(state_dir / "plane")
    plane.start()
    try:
        yield TestCluster(
            plane.kubeconfig, str(plane.kubectl), connect(plane.kubeconfig), plane=plane
        )
    finally:
        plane.stop()
