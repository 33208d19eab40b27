"""Reloader parity on the real control plane: plain ConfigMaps and Secrets, CronJobs,
Reloader's own annotations and the migration off them.

Ground truth is what kube-controller-manager does: a new ReplicaSet per
Deployment rollout.  CronJobs have no controller-side count without a node,
so their job template's record is read directly.  "Nothing rolled" is only
asserted after a positive signal that the operator processed a later change
on the same watch stream (a rollout that proves the count).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from kubernetes import client

from kstrata.app.reloader_migration import migrate_reloader
from kstrata.kube.api import KubeApi, P, Patch, Resource
from kstrata.kube.connection import Cluster
from support.cluster import TestCluster
from support.operator import running_operator
from support.reloads import apply, config_map, deployment_manifest, pod_spec, secret
from support.waiting import wait_for

RECORD = "kstrata.dev/revisions"

pytestmark = pytest.mark.usefixtures("kstrata_crds")


def cron_job(name: str, annotations: dict[str, str], config_maps: tuple[str, ...]) -> Any:
    spec = dict(pod_spec(config_maps), restartPolicy="Never")
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "schedule": "0 0 1 1 *",
            "suspend": True,
            "jobTemplate": {"spec": {"template": {"spec": spec}}},
        },
    }


def record(cluster: TestCluster, namespace: str, name: str) -> str | None:
    found = cluster.apps.read_namespaced_deployment(name, namespace)
    value = (found.metadata.annotations or {}).get(RECORD)
    return None if value is None else str(value)


def template_record(cluster: TestCluster, namespace: str, name: str) -> str | None:
    found = cluster.apps.read_namespaced_deployment(name, namespace)
    value = (found.spec.template.metadata.annotations or {}).get(RECORD)
    return None if value is None else str(value)


def cron_records(cluster: TestCluster, namespace: str, name: str) -> tuple[str | None, str | None]:
    found = client.BatchV1Api(cluster.api).read_namespaced_cron_job(name, namespace)
    template = found.spec.job_template.spec.template.metadata
    on_template = None if template is None else (template.annotations or {}).get(RECORD)
    return (found.metadata.annotations or {}).get(RECORD), on_template


def replica_sets(cluster: TestCluster, namespace: str, name: str) -> int:
    items = cluster.apps.list_namespaced_replica_set(namespace).items
    return len(
        [
            rs
            for rs in items
            if any(o.kind == "Deployment" and o.name == name for o in rs.metadata.owner_references)
        ]
    )


def settled_replica_sets(cluster: TestCluster, namespace: str, name: str) -> int:
    """ReplicaSets of a Deployment once its controller has seen its latest template.

    The deployment controller creates the new ReplicaSet before it writes
    ``observedGeneration``, so the count read after that is final for the
    template the operator wrote: a second, unwanted rollout would show as one
    more, and a count read before it cannot be one short.
    """

    def observed() -> bool:
        found = cluster.apps.read_namespaced_deployment(name, namespace)
        return (found.status.observed_generation or 0) >= (found.metadata.generation or 1)

    wait_for(observed, timeout=30, what=f"the deployment controller to observe {name}")
    return replica_sets(cluster, namespace, name)


def entries(value: str | None) -> dict[str, str]:
    return dict(part.split("=", 1) for part in (value or "").split(",") if part)


def wait_entries(cluster: TestCluster, namespace: str, name: str, keys: set[str]) -> dict[str, str]:
    return wait_for(
        lambda: (
            found
            if (found := entries(record(cluster, namespace, name))) and set(found) == keys
            else None
        ),
        timeout=30,
        what=f"{name} to record {sorted(keys)}",
    )


def wait_rolled(cluster: TestCluster, namespace: str, name: str, count: int) -> None:
    wait_for(
        lambda: replica_sets(cluster, namespace, name) >= count,
        timeout=30,
        what=f"{name} to have {count} ReplicaSets",
    )


def wait_all_changed(
    cluster: TestCluster, namespace: str, name: str, before: dict[str, str], changed: set[str]
) -> None:
    """Until the record and pod template carry a new fingerprint for each of ``changed``."""

    def done() -> bool:
        now = entries(record(cluster, namespace, name))
        return (
            set(now) == set(before)
            and all((now[k] != before[k]) == (k in changed) for k in before)
            and entries(template_record(cluster, namespace, name)) == now
        )

    wait_for(done, timeout=30, what=f"{name} to roll for the whole change set")


def test_plain_sources_roll_on_data_changes_only_and_cron_jobs_roll_their_job_template(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:
    ns = namespace
    apply(
        cluster,
        ns,
        config_map("app-config", {"mode": "blue"}),
        config_map("opted-out", {"x": "1"}, {"kstrata.dev/reload-ignore": "true"}),
        secret("app-secret", {"token": "parity-canary-one"}),
    )
    both = (("app-config", "opted-out"), ("app-secret",))
    apply(
        cluster,
        ns,
        deployment_manifest("auto", {"kstrata.dev/reload": "auto"}, *both),
        deployment_manifest("cms", {"kstrata.dev/reload": "auto-configmaps"}, *both),
        deployment_manifest("secrets", {"kstrata.dev/reload": "auto-secrets"}, *both),
        deployment_manifest("named", {"kstrata.dev/reload": "configmap/app-config"}),
        cron_job("nightly", {"kstrata.dev/reload": "auto"}, ("app-config",)),
    )
    settings = {"namespaces": (ns, keys_namespace), "operator_namespace": keys_namespace}
    with running_operator(cluster, **settings):
        first = wait_entries(cluster, ns, "auto", {"configmap/app-config", "secret/app-secret"})
        wait_entries(cluster, ns, "cms", {"configmap/app-config"})
        wait_entries(cluster, ns, "secrets", {"secret/app-secret"})
        wait_entries(cluster, ns, "named", {"configmap/app-config"})
        wait_for(
            lambda: cron_records(cluster, ns, "nightly")[0] is not None,
            timeout=30,
            what="the CronJob's first record",
        )
        # Keyed fingerprints, never a plain hash of the data.
        fp = first["secret/app-secret"]
        assert len(fp) == 12
        token = b"parity-canary-one"
        for digest in (hashlib.sha1, hashlib.sha256, hashlib.sha512):
            for form in (token, base64.b64encode(token)):
                assert fp not in digest(form).hexdigest()
                assert fp not in base64.urlsafe_b64encode(digest(form).digest()).decode()
        # First sight records and rolls nothing.
        for name in ("auto", "cms", "secrets", "named"):
            assert settled_replica_sets(cluster, ns, name) == 1
            assert template_record(cluster, ns, name) is None
        assert cron_records(cluster, ns, "nightly")[1] is None

        # A metadata-only write, then an opted-out source's data change, then a real change.
        cluster.kubectl("label", "-n", ns, "configmap/app-config", "touched=yes")
        cluster.kubectl("annotate", "-n", ns, "configmap/app-config", "note=hello")
        apply(
            cluster, ns, config_map("opted-out", {"x": "2"}, {"kstrata.dev/reload-ignore": "true"})
        )
        apply(cluster, ns, config_map("app-config", {"mode": "green"}))
        for name in ("auto", "cms", "named"):
            wait_rolled(cluster, ns, name, 2)
        wait_for(
            lambda: cron_records(cluster, ns, "nightly")[1] is not None,
            timeout=30,
            what="the CronJob's job template to roll",
        )
        second = entries(record(cluster, ns, "auto"))
        assert second["configmap/app-config"] != first["configmap/app-config"]
        assert second["secret/app-secret"] == first["secret/app-secret"]

        # A Secret change rolls the Secret followers only.
        apply(cluster, ns, secret("app-secret", {"token": "parity-canary-two"}))
        wait_rolled(cluster, ns, "secrets", 2)
        wait_rolled(cluster, ns, "auto", 3)
        counts = {
            n: settled_replica_sets(cluster, ns, n) for n in ("auto", "cms", "secrets", "named")
        }
        # Exactly one rollout per data change: none for the label, the
        # annotation or the opted-out ConfigMap.
        assert counts == {"auto": 3, "cms": 2, "secrets": 2, "named": 2}
        settled_records = {n: record(cluster, ns, n) for n in counts}

    # A restart rolls nothing: the keyed fingerprints are the same as before.
    with running_operator(cluster, **settings):
        # Positive signal: a change after the restart is processed, and rolls once.
        apply(cluster, ns, config_map("app-config", {"mode": "red"}))
        wait_rolled(cluster, ns, "named", 3)
        wait_rolled(cluster, ns, "auto", 4)
        wait_rolled(cluster, ns, "cms", 3)
        assert settled_replica_sets(cluster, ns, "secrets") == 2
        assert record(cluster, ns, "secrets") == settled_records["secrets"]

    # No value reached a workload's annotations.
    for name in ("auto", "cms", "secrets", "named"):
        value = str(cluster.apps.read_namespaced_deployment(name, ns).metadata.annotations)
        assert "parity-canary" not in value
        assert base64.b64encode(b"parity-canary-two").decode() not in value


RELOADER = {
    "auto": {"reloader.stakater.com/auto": "true"},
    "search": {"reloader.stakater.com/search": "true"},
    "typed": {"secret.reloader.stakater.com/auto": "true"},
    "named": {"configmap.reloader.stakater.com/reload": "flags"},
}


class CountingWrites(KubeApi):
    """The real API, recording each patch sent (``migrate`` writes only patches)."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.writes: list[str] = []

    def patch(
        self, resource: Resource[P], namespace: str | None, name: str, patch: Patch, **kwargs: Any
    ) -> P:
        self.writes.append(f"{resource.kind} {namespace}/{name}")
        return super().patch(resource, namespace, name, patch, **kwargs)


def test_reloader_annotations_are_honoured_and_migrate_to_kstrata_with_one_rollout_per_set(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:
    ns = namespace
    match = {"reloader.stakater.com/match": "true"}
    ignore = {"reloader.stakater.com/ignore": "true"}
    apply(
        cluster,
        ns,
        config_map("settings", {"level": "1"}, match),
        config_map("flags", {"on": "a"}),
        config_map("noisy", {"n": "1"}, ignore),
        secret("creds", {"password": "parity-canary-p1"}),
    )
    refs = (("settings", "flags", "noisy"), ("creds",))
    apply(cluster, ns, *(deployment_manifest(name, ann, *refs) for name, ann in RELOADER.items()))
    settings = {"namespaces": (ns, keys_namespace), "operator_namespace": keys_namespace}
    followed = {"configmap/settings", "configmap/flags", "secret/creds"}
    with running_operator(cluster, reloader_compatible=True, **settings):
        wait_entries(cluster, ns, "auto", followed)  # noisy is ignored
        wait_entries(cluster, ns, "search", {"configmap/settings"})  # the one with match
        wait_entries(cluster, ns, "typed", {"secret/creds"})
        wait_entries(cluster, ns, "named", {"configmap/flags"})

        # An ignored source, then a ConfigMap and a Secret in one apply.
        before = entries(record(cluster, ns, "auto"))
        apply(cluster, ns, config_map("noisy", {"n": "2"}, ignore))
        apply(
            cluster,
            ns,
            config_map("settings", {"level": "2"}, match),
            secret("creds", {"password": "parity-canary-p2"}),
        )
        wait_rolled(cluster, ns, "search", 2)
        wait_rolled(cluster, ns, "typed", 2)
        wait_all_changed(cluster, ns, "auto", before, {"configmap/settings", "secret/creds"})
        assert settled_replica_sets(cluster, ns, "auto") == 2  # the set rolled it once
        assert settled_replica_sets(cluster, ns, "named") == 1  # flags did not change

    # Migrate: the kstrata equivalents replace Reloader's annotations.
    first = CountingWrites(cluster.connection)
    report = migrate_reloader(first, ns, apply=True)
    assert len(first.writes) == len(RELOADER) + 1  # each workload, and noisy
    migrated = {m.name: m.reload for m in report.workloads}
    assert migrated == {
        "auto": "auto",
        "search": "configmap/settings",
        "typed": "auto-secrets",
        "named": "configmap/flags",
    }
    assert [(s.kind, s.name) for s in report.sources] == [("ConfigMap", "noisy")]
    for name in RELOADER:
        annotations = cluster.apps.read_namespaced_deployment(name, ns).metadata.annotations
        assert not any("reloader.stakater.com" in key for key in annotations)
    noisy = cluster.core.read_namespaced_config_map("noisy", ns).metadata
    assert noisy.annotations["kstrata.dev/reload-ignore"] == "true"

    # A second --apply finds nothing left to migrate and writes nothing.
    counting = CountingWrites(cluster.connection)
    again = migrate_reloader(counting, ns, apply=True)
    assert again.workloads == ()
    assert [(s.name, s.done) for s in again.sources] == [("noisy", True)]
    assert counting.writes == []
    now = cluster.core.read_namespaced_config_map("noisy", ns).metadata
    assert now.resource_version == noisy.resource_version

    # Without Reloader compatibility the migrated workloads behave the same.
    before = entries(record(cluster, ns, "auto"))
    with running_operator(cluster, **settings):
        apply(cluster, ns, config_map("noisy", {"n": "3"}, ignore))
        apply(
            cluster,
            ns,
            config_map("settings", {"level": "3"}, match),
            config_map("flags", {"on": "b"}),
            secret("creds", {"password": "parity-canary-p3"}),
        )
        wait_rolled(cluster, ns, "named", 2)
        wait_rolled(cluster, ns, "search", 3)
        wait_rolled(cluster, ns, "typed", 3)
        wait_all_changed(cluster, ns, "auto", before, followed)
        assert settled_replica_sets(cluster, ns, "auto") == 3  # three sources changed, one rollout
        assert set(entries(record(cluster, ns, "auto"))) == followed
