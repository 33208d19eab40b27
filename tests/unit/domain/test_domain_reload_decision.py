"""The pure reload decision (domain.reload_decision): record vs current revisions, strategies,
pause, auto references."""

from __future__ import annotations

from typing import Any

from kstrata.domain.reload_decision import (
    Sources,
    current_revisions,
    decide,
    effective_record,
    format_revisions,
    label_selector,
    owned_pod,
    parse_revisions,
    referenced_objects,
)


def workload(
    annotations: dict[str, str] | None = None,
    *,
    template_annotations: dict[str, str] | None = None,
    pod_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "ns", "annotations": annotations or {}},
        "spec": {
            "template": {
                "metadata": {"annotations": template_annotations or {}},
                "spec": pod_spec or {"containers": [{"name": "c", "image": "x"}]},
            }
        },
    }


SOURCES = Sources(profiles={"payments": 7, "web": 2}, sealed_secrets={"db-credentials": 3})


def test_format_and_parse_round_trip_sorted_by_name() -> None:
    assert format_revisions({"payments": 7, "db-credentials": 3}) == "db-credentials=3,payments=7"
    assert parse_revisions("db-credentials=3,payments=7") == {"db-credentials": 3, "payments": 7}
    assert parse_revisions("junk,a=x,=4, b=2 ") == {"b": 2}
    assert parse_revisions(None) == {}


def test_not_opted_in_is_ignored() -> None:
    assert decide(workload(), SOURCES).action == "ignore"
    assert current_revisions(workload({"kstrata.dev/reload": " "}), SOURCES) is None


def test_first_sight_records_without_rollout() -> None:
    decision = decide(workload({"kstrata.dev/reload": "payments,db-credentials"}), SOURCES)
    assert (decision.action, decision.desired) == ("record", "db-credentials=3,payments=7")


def test_unchanged_revisions_do_nothing() -> None:
    annotations = {
        "kstrata.dev/reload": "payments,db-credentials",
        "kstrata.dev/revisions": "db-credentials=3,payments=7",
    }
    assert decide(workload(annotations), SOURCES).action == "unchanged"


def test_changed_revision_rolls_once_with_revision_numbers() -> None:
    annotations = {
        "kstrata.dev/reload": "payments,db-credentials",
        "kstrata.dev/revisions": "db-credentials=3,payments=6",
    }
    decision = decide(workload(annotations), SOURCES)
    assert decision.action == "rollout"
    assert decision.desired == "db-credentials=3,payments=7"
    assert dict(decision.changed) == {"payments": (6, 7)}
    # After the patch the record equals the desired value: the next pass is a no-op.
    annotations["kstrata.dev/revisions"] = decision.desired
    assert decide(workload(annotations), SOURCES).action == "unchanged"


def test_template_annotation_is_the_record_when_metadata_has_none() -> None:
    w = workload(
        {"kstrata.dev/reload": "payments"},
        template_annotations={"kstrata.dev/revisions": "payments=6"},
    )
    assert decide(w, SOURCES).action == "rollout"


def test_added_or_vanished_names_update_the_record_only() -> None:
    added = {"kstrata.dev/reload": "payments,web", "kstrata.dev/revisions": "payments=7"}
    decision = decide(workload(added), SOURCES)
    assert (decision.action, decision.desired) == ("record", "payments=7,web=2")
    gone = {
        "kstrata.dev/reload": "payments,missing",
        "kstrata.dev/revisions": "missing=4,payments=7",
    }
    assert decide(workload(gone), SOURCES).action == "record"


def test_sources_without_revision_are_left_out() -> None:
    sources = Sources(profiles={"payments": 0})
    w = workload({"kstrata.dev/reload": "payments", "kstrata.dev/revisions": ""})
    assert decide(w, sources).action == "unchanged"


def test_paused_holds_then_applies_latest() -> None:
    annotations = {
        "kstrata.dev/reload": "payments",
        "kstrata.dev/revisions": "payments=5",
        "kstrata.dev/reload-paused": "true",
    }
    assert decide(workload(annotations), SOURCES).action == "paused"
    del annotations["kstrata.dev/reload-paused"]
    decision = decide(workload(annotations), SOURCES)
    assert (decision.action, decision.desired) == ("rollout", "payments=7")


def test_hot_none_and_unknown_strategies_never_roll() -> None:
    for strategy, action in (("hot", "sync-pods"), ("none", "skip"), ("bogus", "ignore")):
        annotations = {
            "kstrata.dev/reload": "payments",
            "kstrata.dev/revisions": "payments=1",
            "kstrata.dev/reload-strategy": strategy,
        }
        assert decide(workload(annotations), SOURCES).action == action


def test_hot_syncs_pods_only_for_a_changed_revision_and_ignores_pause() -> None:
    hot = {"kstrata.dev/reload": "payments", "kstrata.dev/reload-strategy": "hot"}
    # First sight and an unchanged record never touch pods.
    assert decide(workload(hot), SOURCES).action == "record"
    assert decide(workload({**hot, "kstrata.dev/revisions": "payments=7"}), SOURCES).action == (
        "unchanged"
    )
    # A pause holds restarts; a hot reload restarts nothing, so it is not held.
    changed = {**hot, "kstrata.dev/revisions": "payments=6", "kstrata.dev/reload-paused": "true"}
    decision = decide(workload(changed), SOURCES)
    assert (decision.action, decision.desired, decision.changed) == (
        "sync-pods",
        "payments=7",
        {"payments": (6, 7)},
    )
    # A hot workload is never listed in a source's status.workloads.
    assert effective_record(decision) is None


def test_label_selector_is_exact_and_never_everything() -> None:
    assert label_selector({"matchLabels": {"b": "2", "a": "1"}}) == "a=1,b=2"
    assert (
        label_selector(
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["a", "b"]},
                    {"key": "canary", "operator": "NotIn", "values": ["yes"]},
                    {"key": "team", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            }
        )
        == "app=web,tier in (a,b),canary notin (yes),team,!legacy"
    )
    unusables: list[object] = [
        None,
        {},
        {"matchLabels": {}},
        {"matchExpressions": [{"key": "x"}]},
        "x",
    ]
    for unusable in unusables:
        assert label_selector(unusable) is None


def test_auto_follows_every_reference_kind() -> None:
    pod_spec = {
        "volumes": [
            {"name": "a", "configMap": {"name": "cm-a"}},
            {"name": "b", "secret": {"secretName": "sec-b"}},
            {
                "name": "p",
                "projected": {
                    "sources": [{"configMap": {"name": "cm-p"}}, {"secret": {"name": "sec-p"}}]
                },
            },
        ],
        "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "cm-i"}}]}],
        "containers": [
            {
                "name": "c",
                "envFrom": [{"secretRef": {"name": "sec-e"}}],
                "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm-k", "key": "k"}}},
                    {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "sec-k", "key": "k"}}},
                    {"name": "Z", "value": "plain"},
                ],
            }
        ],
    }
    assert referenced_objects(pod_spec) == (
        {"cm-a", "cm-p", "cm-i", "cm-k"},
        {"sec-b", "sec-p", "sec-e", "sec-k"},
    )
    sources = Sources(
        profiles={"payments": 7, "unused": 9},
        sealed_secrets={"db": 3},
        config_maps={"cm-a": "payments", "unused-cm": "unused"},
        secrets={"sec-k": "db"},
    )
    w = workload({"kstrata.dev/reload": "auto"}, pod_spec=pod_spec)
    assert current_revisions(w, sources) == {"payments": 7, "db": 3}


def test_same_name_profile_and_sealed_secret_both_count() -> None:
    sources = Sources(profiles={"app": 2}, sealed_secrets={"app": 5})
    assert current_revisions(workload({"kstrata.dev/reload": "app"}), sources) == {
        "app": 2,
        "secret:app": 5,
    }


def test_only_the_workloads_own_pods_are_synced() -> None:
    deployment = {"kind": "Deployment", "metadata": {"name": "web", "uid": "d1"}}
    stateful = {"kind": "StatefulSet", "metadata": {"name": "db", "uid": "s1"}}

    def pod(owner_kind: str, owner: str, uid: str = "", template_hash: str = "") -> dict[str, Any]:
        labels = {"pod-template-hash": template_hash} if template_hash else {}
        ref = {"kind": owner_kind, "name": owner, "uid": uid, "controller": True}
        return {"metadata": {"labels": labels, "ownerReferences": [ref]}}

    assert owned_pod(deployment, pod("ReplicaSet", "web-5d8f", template_hash="5d8f"))
    # Same selector, another Deployment's ReplicaSet: not ours.
    assert not owned_pod(deployment, pod("ReplicaSet", "web-api-5d8f", template_hash="api-5d8f"))
    assert not owned_pod(deployment, pod("ReplicaSet", "webx-5d8f", template_hash="5d8f"))
    assert not owned_pod(deployment, pod("ReplicaSet", "web-5d8f"))
    assert owned_pod(stateful, pod("StatefulSet", "db", uid="s1"))
    assert not owned_pod(stateful, pod("StatefulSet", "db", uid="other"))
    assert not owned_pod(stateful, {"metadata": {}})
