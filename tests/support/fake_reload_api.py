"""An in-memory stand-in for the few KubeApi calls a reload pass makes, for unit tests.

Reload passes list workloads and sources, patch templates and statuses, and
post events; these tests drive them on objects held in memory.  The cluster
tier runs the same passes against the real API server.
"""

from __future__ import annotations

import copy
from typing import Any

from kstrata.errors import NotFoundError
from kstrata.kube.api import Resource


def workload(
    name: str = "web",
    *,
    kind: str = "Deployment",
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ns",
            "annotations": annotations or {},
            "labels": labels or {},
        },
        "spec": {"template": {"metadata": {}, "spec": {"containers": []}}},
    }


class FakeApi:
    """The few KubeApi calls a pass makes, on in-memory objects of several namespaces."""

    def __init__(self, objects: dict[tuple[str, str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.patches: list[tuple[str, str, str, str | None, Any]] = []
        self.created: list[dict[str, Any]] = []

    def list(
        self, resource: Resource, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for (kind, ns, _), o in sorted(self.objects.items())
            if kind == resource.kind and ns == namespace
        ]

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        subresource: str | None = None,
        content_type: str = "",
    ) -> dict[str, Any]:
        key = (resource.kind, str(namespace), name)
        if key not in self.objects:
            raise NotFoundError(f"{resource.kind} {namespace}/{name}: not found")
        self.patches.append((resource.kind, str(namespace), name, subresource, patch))
        merge(self.objects[key], patch)
        return copy.deepcopy(self.objects[key])

    def create(self, resource: Resource, namespace: str | None, body: dict[str, Any]) -> Any:
        self.created.append(body)
        return body


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def source(kind: str, name: str, namespace: str, revision: int, targets: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"reload": {"targets": targets}},
        "status": {"revision": revision},
    }
