"""The objects a reload pass reads, built for unit tests: workloads and the sources they follow.

The pass itself runs on :class:`support.fake_api.FakeApi` (the one fake API of
the unit tier); the cluster tier builds the same objects as manifests in
:mod:`support.reloads` and runs the pass against the real API server.
"""

from __future__ import annotations

from typing import Any


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


def source(kind: str, name: str, namespace: str, revision: int, targets: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"reload": {"targets": targets}},
        "status": {"revision": revision},
    }
