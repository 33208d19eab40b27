"""Running the real helm, and comparing what it renders with what kustomize renders."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

from kstrata import metrics

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kstrata"
MONITORING = REPO / "monitoring"
ARGOCD = REPO / "integrations" / "argocd"

#: Labels and annotations Helm (or the chart, for Helm) adds; everything else
#: must be what manifests/ says.
HELM_LABELS = frozenset(
    {"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/version"}
)
HELM_ANNOTATIONS = ("meta.helm.sh/", "helm.sh/resource-policy")

Object = dict[str, Any]


@dataclass
class Helm:
    path: Path
    #: Helm's config, cache and data directories: never the user's own.
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kstrata-helm-")))

    def env(self) -> dict[str, str]:
        import os

        return dict(
            os.environ,
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_DATA_HOME=str(self.home / "data"),
        )

    def run(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.path), *args]
        if kubeconfig is not None:
            command += ["--kubeconfig", str(kubeconfig)]
        result = subprocess.run(
            command, capture_output=True, text=True, env=self.env(), timeout=180
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def values_file(self, values: Object) -> Path:
        with tempfile.NamedTemporaryFile(
            "w", suffix=".yaml", dir=self.home, delete=False, encoding="utf-8"
        ) as handle:
            json.dump(values, handle)
        return Path(handle.name)

    def template_text(self, values: Object | None = None, *, include_crds: bool = True) -> str:
        args = ["template", "kstrata", str(CHART)]
        if include_crds:
            args.append("--include-crds")
        if values:
            args += ["--values", str(self.values_file(values))]
        return self.run(*args).stdout

    def template(self, values: Object | None = None, *, include_crds: bool = True) -> list[Object]:
        return documents(self.template_text(values, include_crds=include_crds))


def documents(text: str) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


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
