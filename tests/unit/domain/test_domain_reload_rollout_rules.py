"""Argo Rollouts as reload targets, pure parts: template or restartAt, pod ownership,
and the kinds the CRDs accept (the cluster tests: tests/cluster/test_reload_rollouts.py)."""

from __future__ import annotations

from typing import Any

from kstrata.domain import crds
from kstrata.domain import reload_annotations as ra
from kstrata.domain.reload_decision import (
    WORKLOAD_KINDS,
    owned_pod,
    parse_targets,
    restarts_by_time,
    template_patch,
    wanted_plain,
)
from kstrata.kube.api import RELOADABLE

RECORD = {"kstrata.dev/revisions": "payments=2"}


def rollout(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "ns", "uid": "u-1"},
        "spec": spec,
    }


def test_a_rollout_with_a_template_rolls_it_like_a_deployment() -> None:
    pod = {"containers": [{"name": "a", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}
    obj = rollout({"template": {"metadata": {}, "spec": pod}})
    assert not restarts_by_time(obj)
    assert template_patch(obj, RECORD, now="2026-12-02T18:00:00Z") == {
        "spec": {"template": {"metadata": {"annotations": RECORD}}}
    }
    assert wanted_plain(obj, ra.parse_kstrata("auto")) == {("ConfigMap", "cfg")}


def test_a_rollout_with_a_workload_ref_is_restarted_by_time_not_given_a_template() -> None:
    obj = rollout({"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}})
    assert restarts_by_time(obj)
    patch = template_patch(obj, RECORD, now="2026-12-02T18:00:00Z")
    # A template next to workloadRef would make the Rollout invalid for Argo Rollouts.
    assert patch == {"spec": {"restartAt": "2026-12-02T18:00:00Z"}}
    # Its references live in the Deployment's template: auto finds none here.
    assert wanted_plain(obj, ra.parse_kstrata("auto")) == set()
    # A Deployment with a workloadRef-like field is still a Deployment.
    deployment = dict(obj, kind="Deployment")
    assert not restarts_by_time(deployment)


def test_a_rollouts_pods_are_told_apart_by_their_replica_set_and_hash() -> None:
    obj = rollout({"template": {}})

    def pod(owner: str, label: str, value: str) -> dict[str, Any]:
        return {
            "metadata": {
                "labels": {label: value},
                "ownerReferences": [{"kind": "ReplicaSet", "name": owner, "controller": True}],
            }
        }

    assert owned_pod(obj, pod("web-6d4f8b9c7", "rollouts-pod-template-hash", "6d4f8b9c7"))
    # A Deployment's hash label, or another Rollout's ReplicaSet, is not this one's.
    assert not owned_pod(obj, pod("web-6d4f8b9c7", "pod-template-hash", "6d4f8b9c7"))
    assert not owned_pod(obj, pod("web-api-6d4f8b9c7", "rollouts-pod-template-hash", "6d4f8b9c7"))


def test_targets_and_the_crds_take_every_reloadable_kind() -> None:
    assert set(crds.RELOAD_KINDS) == {r.kind for r in RELOADABLE} == WORKLOAD_KINDS
    spec = {
        "reload": {
            "targets": [
                {"kind": "Rollout", "name": "web"},
                {"kind": "CronJob", "selector": {"matchLabels": {"app": "report"}}},
            ]
        }
    }
    assert [t.kind for t in parse_targets(spec)] == ["Rollout", "CronJob"]
    trees: list[dict[str, Any]] = [crds.configprofile_crd(), crds.sealedsecret_crd()]
    for crd in trees:
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        target = schema["properties"]["spec"]["properties"]["reload"]["properties"]["targets"]
        assert target["items"]["properties"]["kind"]["enum"] == list(crds.RELOAD_KINDS)
        workloads = schema["properties"]["status"]["properties"]["workloads"]
        assert workloads["items"]["properties"]["kind"]["enum"] == list(crds.RELOAD_KINDS)


def test_migration_says_reloaders_restart_strategy_is_not_honoured() -> None:
    annotations = {
        "reloader.stakater.com/auto": "true",
        "reloader.stakater.com/rollout-strategy": "restart",
    }
    migration = ra.migrate("Rollout", "ns", "web", annotations)
    assert migration.reload == "auto"
    assert any("rollout-strategy=restart is not honoured" in note for note in migration.notes)
    # The annotation is left on the Rollout (not one migrate removes), and without it
    # there is nothing to say.
    assert "reloader.stakater.com/rollout-strategy" not in migration.found
    plain = ra.migrate("Rollout", "ns", "web", {"reloader.stakater.com/auto": "true"})
    assert plain.notes == ()
