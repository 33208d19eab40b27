"""ConfigProfiles rendered into ConfigMaps by the operator, on the real control plane."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from support.cluster import TestCluster
from support.config_profiles import (
    PLURAL,
    apply,
    condition,
    get_profile,
    profile,
    wait_not_ready,
    wait_ready,
)
from support.hostile import multiplying_schema
from support.operator import RunningOperator, running_operator
from support.waiting import wait_for

GROUP, VERSION = "kstrata.dev", "v1alpha1"

pytestmark = pytest.mark.usefixtures("kstrata_crds")


@pytest.fixture
def operator(cluster: TestCluster, namespace: str) -> Iterator[RunningOperator]:
    with running_operator(cluster, namespaces=(namespace,)) as running:
        yield running


def config_map(cluster: TestCluster, namespace: str, name: str) -> Any:
    return cluster.core.read_namespaced_config_map(name, namespace)


def rendered(cluster: TestCluster, namespace: str, name: str, key: str = "config.yaml") -> Any:
    return yaml.safe_load(config_map(cluster, namespace, name).data[key])


def warning_events(cluster: TestCluster, namespace: str, name: str) -> list[Any]:
    return events_of(cluster, namespace, name, "Warning")


def events_of(cluster: TestCluster, namespace: str, name: str, type_: str) -> list[Any]:
    events = cluster.core.list_namespaced_event(namespace).items
    return [e for e in events if e.involved_object.name == name and e.type == type_]


def test_create_update_and_delete(
    cluster: TestCluster, namespace: str, operator: RunningOperator
) -> None:
    apply(cluster, namespace, profile("web", {"base": {"port": 8080, "log": {"level": "info"}}}))
    body = wait_ready(cluster, namespace, "web", revision=1)
    assert body["status"]["environment"] == "dev"
    assert body["status"]["environmentSource"] == "default"
    cm = config_map(cluster, namespace, "web")
    assert yaml.safe_load(cm.data["config.yaml"]) == {"port": 8080, "log": {"level": "info"}}
    assert cm.metadata.labels["kstrata.dev/profile"] == "web"
    assert cm.metadata.labels["kstrata.dev/revision"] == "1"
    (owner,) = cm.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("ConfigProfile", "web", body["metadata"]["uid"])
    # The first render is reported by Ready=True alone (no event per new profile).
    assert events_of(cluster, namespace, "web", "Normal") == []

    apply(
        cluster,
        namespace,
        profile(
            "web",
            {
                "base": {"port": 8080, "log": {"level": "info"}},
                "environments": {"dev": {"log": {"level": "debug"}}},
            },
        ),
    )
    wait_ready(cluster, namespace, "web", revision=2)
    assert rendered(cluster, namespace, "web") == {"port": 8080, "log": {"level": "debug"}}
    assert config_map(cluster, namespace, "web").metadata.labels["kstrata.dev/revision"] == "2"
    # A change of what it serves posts one Normal event naming the new revision.
    (changed,) = wait_for(
        lambda: events_of(cluster, namespace, "web", "Normal"), timeout=30, what="the event"
    )
    assert changed.reason == "Rendered"
    assert "revision 2" in changed.message

    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "web")
    wait_for(
        lambda: not cluster.exists(cluster.core.read_namespaced_config_map, "web", namespace),
        timeout=60,
        what="the ConfigMap to be garbage-collected with its profile",
    )


def test_environment_from_spec_beats_namespace_label_which_beats_default(
    cluster: TestCluster,
) -> None:
    spec = {
        "base": {"replicas": 1},
        "environments": {"staging": {"replicas": 2}, "prod": {"replicas": 3}},
    }
    labels = {"kstrata.dev/environment": "prod"}
    with (
        cluster.temporary_namespace(labels=labels) as labelled,
        running_operator(cluster, namespaces=(labelled,)),
    ):
        apply(cluster, labelled, profile("by-label", spec))
        body = wait_ready(cluster, labelled, "by-label", revision=1)
        assert (body["status"]["environment"], body["status"]["environmentSource"]) == (
            "prod",
            "namespace-label",
        )
        assert rendered(cluster, labelled, "by-label") == {"replicas": 3}

        apply(cluster, labelled, profile("by-spec", {**spec, "environment": "staging"}))
        body = wait_ready(cluster, labelled, "by-spec", revision=1)
        assert body["status"]["environmentSource"] == "spec"
        assert rendered(cluster, labelled, "by-spec") == {"replicas": 2}

        # Relabelling the namespace re-renders the profiles that follow the label.
        cluster.kubectl("label", "ns", labelled, "kstrata.dev/environment=staging", "--overwrite")
        wait_ready(cluster, labelled, "by-label", revision=2)
        assert rendered(cluster, labelled, "by-label") == {"replicas": 2}


def test_changing_a_base_re_renders_every_profile_that_extends_it(
    cluster: TestCluster, namespace: str, operator: RunningOperator
) -> None:
    apply(cluster, namespace, profile("shared", {"base": {"region": "eu", "timeout": 5}}))
    apply(cluster, namespace, profile("team", {"extends": ["shared"], "base": {"team": "a"}}))
    apply(cluster, namespace, profile("app", {"extends": ["team"], "base": {"timeout": 9}}))
    wait_ready(cluster, namespace, "app", revision=1)
    assert rendered(cluster, namespace, "app") == {"region": "eu", "team": "a", "timeout": 9}
    assert get_profile(cluster, namespace, "app")["status"]["dependsOn"] == ["shared", "team"]

    apply(cluster, namespace, profile("shared", {"base": {"region": "us", "timeout": 5}}))
    wait_ready(cluster, namespace, "app", revision=2)
    wait_ready(cluster, namespace, "team", revision=2)
    assert rendered(cluster, namespace, "app") == {"region": "us", "team": "a", "timeout": 9}


def test_missing_base_and_cycles_are_conditions_not_crashes(
    cluster: TestCluster, namespace: str, operator: RunningOperator
) -> None:
    apply(cluster, namespace, profile("orphan", {"extends": ["nowhere"], "base": {}}))
    body = wait_not_ready(cluster, namespace, "orphan", "InvalidExtends")
    assert "nowhere" in condition(body)["message"]

    apply(cluster, namespace, profile("ping", {"extends": ["pong"], "base": {}}))
    apply(cluster, namespace, profile("pong", {"extends": ["ping"], "base": {}}))
    body = wait_not_ready(cluster, namespace, "pong", "InvalidExtends")
    assert "cycle" in condition(body)["message"]
    assert not cluster.exists(cluster.core.read_namespaced_config_map, "pong", namespace)

    # Creating the missing base heals the dependent.
    apply(cluster, namespace, profile("nowhere", {"base": {"found": True}}))
    wait_ready(cluster, namespace, "orphan", revision=1)
    assert rendered(cluster, namespace, "orphan") == {"found": True}


def test_invalid_change_keeps_the_last_good_config_map(
    cluster: TestCluster, namespace: str, operator: RunningOperator
) -> None:
    canary = "canary-6b1f0c2e-value"
    schema = {
        "type": "object",
        "properties": {"port": {"type": "integer"}, "name": {"type": "string"}},
        "required": ["port"],
    }
    apply(cluster, namespace, profile("api", {"schema": schema, "base": {"port": 80}}))
    wait_ready(cluster, namespace, "api", revision=1)
    before = config_map(cluster, namespace, "api")

    apply(cluster, namespace, profile("api", {"schema": schema, "base": {"port": canary}}))
    body = wait_not_ready(cluster, namespace, "api", "SchemaViolation")
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    message = condition(body)["message"]
    assert "$.port" in message
    assert canary not in message
    after = config_map(cluster, namespace, "api")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.data == before.data

    events = wait_for(
        lambda: warning_events(cluster, namespace, "api"), timeout=15, what="a Warning event"
    )
    assert events[0].reason == "SchemaViolation"
    assert "$.port" in events[0].message
    assert all(
        canary not in (e.message or "") for e in cluster.core.list_namespaced_event(namespace).items
    )


def test_a_config_map_that_is_not_ours_is_never_overwritten(
    cluster: TestCluster, namespace: str, operator: RunningOperator
) -> None:
    cluster.kubectl("create", "configmap", "legacy", "-n", namespace, "--from-literal=a=1")
    before = config_map(cluster, namespace, "legacy")
    apply(cluster, namespace, profile("legacy", {"base": {"a": 2}}))
    body = wait_not_ready(cluster, namespace, "legacy", "NotOwned")
    assert "kstrata.dev/adopt" in condition(body)["message"]
    after = config_map(cluster, namespace, "legacy")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.data == {"a": "1"}
    # The operator created without reading first and met the ConfigMap: the
    # revision snapshot it had recorded for content never served is gone again.
    revisions = cluster.kubectl("get", "controllerrevisions", "-n", namespace, "-o", "name")
    assert revisions.stdout.strip() == ""


def test_adopting_an_identical_config_map_writes_no_data(
    cluster: TestCluster, namespace: str, operator: RunningOperator
) -> None:
    cluster.kubectl(
        "create", "configmap", "adopted", "-n", namespace, "--from-literal=config.yaml=a: 1\n"
    )
    cluster.kubectl("annotate", "configmap", "adopted", "-n", namespace, "kstrata.dev/adopt=true")
    apply(cluster, namespace, profile("adopted", {"base": {"a": 1}}))
    wait_ready(cluster, namespace, "adopted", revision=1)
    cm = config_map(cluster, namespace, "adopted")
    assert cm.data == {"config.yaml": "a: 1\n"}
    assert cm.metadata.owner_references[0].name == "adopted"
    # managedFields record which manager changed which fields: kstrata took over
    # labels and the ownerReference, and never wrote data.
    ours = [m for m in cm.metadata.managed_fields if m.manager == "kstrata"]
    assert ours
    assert all("f:data" not in (m.fields_v1 or {}) for m in ours)


def test_restarting_the_operator_writes_nothing(cluster: TestCluster, namespace: str) -> None:
    with running_operator(cluster, namespaces=(namespace,)):
        apply(cluster, namespace, profile("steady", {"base": {"k": "v"}}))
        apply(cluster, namespace, profile("child", {"extends": ["steady"], "base": {}}))
        wait_ready(cluster, namespace, "steady", revision=1)
        wait_ready(cluster, namespace, "child", revision=1)

    def versions() -> dict[str, str]:
        objects = {
            f"cfp/{p['metadata']['name']}": p["metadata"]["resourceVersion"]
            for p in cluster.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL
            )["items"]
        }
        for cm in cluster.core.list_namespaced_config_map(namespace).items:
            objects[f"cm/{cm.metadata.name}"] = cm.metadata.resource_version
        objects["events"] = str(len(cluster.core.list_namespaced_event(namespace).items))
        return objects

    before = versions()
    # The operator runs in this process, so its counters outlive it: the
    # baseline is read before the restart, never after (the resumed
    # reconciles could already be counted by then, and never counted again).
    baseline = _ok_reconciles()
    with running_operator(cluster, namespaces=(namespace,)):
        wait_for(
            lambda: _ok_reconciles() >= baseline + 2,
            timeout=30,
            what="both profiles to be resumed",
        )
    assert versions() == before


def _ok_reconciles() -> float:
    """Successful ConfigProfile reconciles counted so far by operators in this process."""
    value = REGISTRY.get_sample_value(
        "kstrata_reconcile_total", {"kind": "ConfigProfile", "result": "ok"}
    )
    return value or 0.0


def test_a_multiplying_schema_is_abandoned_and_others_keep_being_served(
    cluster: TestCluster, namespace: str, operator: RunningOperator
) -> None:
    """The time budget: a Ready=False condition, the last good ConfigMap kept, others served."""
    apply(cluster, namespace, profile("evil", {"base": {"x": 1}}))
    wait_ready(cluster, namespace, "evil", revision=1)
    before = config_map(cluster, namespace, "evil")

    apply(cluster, namespace, profile("evil", {"schema": multiplying_schema(), "base": {"x": 1}}))
    # Applied right behind it: served while (or after) the bad one is abandoned.
    apply(cluster, namespace, profile("honest", {"base": {"port": 8080}}))
    body = wait_not_ready(cluster, namespace, "evil", "BudgetExceeded")
    assert "took longer than its 2 s budget" in condition(body)["message"]
    wait_ready(cluster, namespace, "honest", revision=1)
    assert rendered(cluster, namespace, "honest") == {"port": 8080}
    after = config_map(cluster, namespace, "evil")
    assert after.metadata.resource_version == before.metadata.resource_version
