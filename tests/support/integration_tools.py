"""Running the real helm, and comparing what it renders with what kustomize renders."""

from __future__ import annotations

from prometheus_client import REGISTRY

from kstrata import metrics
from support.gotools import REPO, Object

# Running the real helm (Helm, CHART, documents) lives in support.gotools, where
# tests/e2e take it from too: import it from there.

MONITORING = REPO / "monitoring"
ARGOCD = REPO / "integrations" / "argocd"

#: Labels and annotations Helm (or the chart, for Helm) adds; everything else
#: must be what manifests/ says.
HELM_LABELS = frozenset(
    {"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/version"}
)
HELM_ANNOTATIONS = ("meta.helm.sh/", "helm.sh/resource-policy")


def key(obj: Object) -> tuple[str, str, str | None, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"].split("/")[0], obj["kind"], meta.get("namespace"), meta["name"])


def without_helm_metadata(obj: Object) -> Object:
    """``obj`` less the labels and annotations Helm adds (and none of its own)."""
    meta = dict(obj["metadata"])
    labels = {
        k: v
        for k, v in (meta.pop("labels", None) or {}).items()
        if k not in HELM_LABELS and not (k == "app.kubernetes.io/managed-by" and v == "Helm")
    }
    annotations = {
        k: v
        for k, v in (meta.pop("annotations", None) or {}).items()
        if not k.startswith(HELM_ANNOTATIONS)
    }
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return dict(obj, metadata=meta)


def by_key(objects: list[Object]) -> dict[tuple[str, str, str | None, str], Object]:
    keyed = {key(o): without_helm_metadata(o) for o in objects}
    assert len(keyed) == len(objects), "two objects with one kind, namespace and name"
    return keyed


def the(objects: list[Object], kind: str, name: str | None = None) -> Object:
    (found,) = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


#: Metrics of other programs the alerts use, and why.
FOREIGN_METRICS = {
    # kube-apiserver's calls to admission webhooks (the webhook alerts).
    "apiserver_admission_webhook_rejection_count",
    "apiserver_admission_webhook_admission_duration_seconds_bucket",
}


def exported_series() -> set[str]:
    """Every series name kstrata.metrics defines (counters with _total, histograms' parts)."""
    assert metrics.RECONCILES  # importing kstrata.metrics registers them
    names = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("kstrata_"):
            continue
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names
