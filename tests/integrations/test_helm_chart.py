"""charts/kstrata with the real helm, offline: lint, the values schema, what each value does.

That the default rendering is manifests/ object for object, and that the API
server accepts it and helm installs, upgrades and uninstalls it, is proven
against the cluster in test_helm_chart_cluster.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.app import admission
from kstrata.payloads import Opaque
from support.gotools import CHART, Helm, Object
from support.integration_tools import MONITORING, the


@pytest.fixture(scope="module")
def chart(helm: Path) -> Iterator[Helm]:
    with Helm(helm) as chart:
        yield chart


def container(objects: list[Object]) -> Object:
    deployment = the(objects, "Deployment")
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(operator)


def env(objects: list[Object]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objects)["env"]}


NAMESPACED_NO_WEBHOOK = {"watchNamespaces": ["team-b", "team-a"], "webhook": {"enabled": False}}
MONITORED = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}


@pytest.mark.parametrize(
    "values", [{}, NAMESPACED_NO_WEBHOOK, MONITORED], ids=["defaults", "namespaced", "monitored"]
)
def test_helm_lint_strict_passes(chart: Helm, values: Object) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values:
        args += ["--values", str(chart.values_file(values))]
    result = chart.run(*args)
    assert "0 chart(s) failed" in result.stdout
    assert "[ERROR]" not in result.stdout
    assert "[WARNING]" not in result.stdout


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": -1}, "replicas"),
        ({"replica": 2}, "replica"),
        ({"image": {"repository": "r", "pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
        ({"environment": ""}, "environment"),
        ({"webhook": {"enabled": "yes"}}, "enabled"),
        ({"extraEnv": [{"name": "KSTRATA_ENVIRONMENT", "value": "dev"}]}, "extraEnv"),
    ],
    ids=["negative", "unknown", "pull", "bad-namespace", "no-env", "not-bool", "env-clash"],
)
def test_values_schema_refuses_bad_values(chart: Helm, values: Object, complaint: str) -> None:
    args = ["template", "kstrata", str(CHART), "--values", str(chart.values_file(values))]
    result = chart.run(*args, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr


def test_image_replicas_resources_and_environment_reach_the_deployment(chart: Helm) -> None:
    # Helm merges maps with the defaults: null removes the default CPU limit.
    resources = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    objects = chart.template(
        {
            "image": {
                "repository": "registry.example/kstrata",
                "tag": "9.9.9",
                "pullPolicy": "Always",
            },
            "replicas": 3,
            "resources": {**resources, "limits": {"cpu": None, "memory": "1Gi"}},
            "environment": "staging",
            "extraEnv": [{"name": "TZ", "value": "UTC"}],
            "logFormat": "text",
        }
    )
    operator = container(objects)
    assert operator["image"] == "registry.example/kstrata:9.9.9"
    assert operator["imagePullPolicy"] == "Always"
    assert operator["resources"] == resources
    assert "--log-format=text" in operator["args"]
    assert env(objects)["KSTRATA_ENVIRONMENT"] == "staging"
    assert env(objects)["TZ"] == "UTC"
    assert the(objects, "Deployment")["spec"]["replicas"] == 3


def test_the_image_tag_defaults_to_the_app_version(chart: Helm) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container(chart.template())["image"] == f"kstrata-operator:{app_version}"


def test_namespaced_mode_binds_and_reviews_only_the_watched_namespaces(chart: Helm) -> None:
    objects = chart.template({"watchNamespaces": ["team-b", "team-a", "team-b"]})
    args = container(objects)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    bindings = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o["roleRef"]["name"]
        for o in objects
        if o["kind"] == "RoleBinding" and o["metadata"]["name"].startswith("kstrata:")
    }
    assert bindings == {
        ("team-a", "kstrata:app"): "kstrata:app",
        ("team-a", "kstrata:peering"): "kstrata:namespaced-peering",
        ("team-b", "kstrata:app"): "kstrata:app",
        ("team-b", "kstrata:peering"): "kstrata:namespaced-peering",
    }
    cluster_bindings = {o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRoleBinding"}
    assert cluster_bindings == {"kstrata:cluster"}, "no cluster-wide application rights"


@pytest.mark.parametrize("watched", [[], ["team-b", "team-a"]], ids=["clusterwide", "namespaced"])
def test_the_webhook_configuration_is_what_the_operator_writes(
    chart: Helm, watched: list[str]
) -> None:
    # At start-up the operator writes its own `webhooks` over the chart's when
    # they differ (adding only the caBundle otherwise): a difference here would
    # be a perpetual diff for helm and for GitOps tools.
    objects = chart.template({"watchNamespaces": watched, "namespace": {"name": "ops"}})
    shipped = the(objects, "ValidatingWebhookConfiguration")
    service: dict[str, Opaque] = {
        "name": "kstrata-webhook",
        "namespace": "ops",
        "path": f"/{admission.PROFILE_WEBHOOK_ID}",
        "port": 443,
    }
    written = admission.webhook_configuration("kstrata.dev", {"service": service}, tuple(watched))
    assert shipped["webhooks"] == written["webhooks"]
    assert shipped["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kstrata"
    webhook_service = the(objects, "Service", "kstrata-webhook")
    assert webhook_service["metadata"]["namespace"] == "ops"


def test_another_operator_namespace_moves_every_namespaced_object(chart: Helm) -> None:
    objects = chart.template(
        {"namespace": {"name": "platform-config", "create": True, "keep": False}}
    )
    namespaced = [o for o in objects if "namespace" in o["metadata"]]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"platform-config"}
    assert "--operator-namespace=platform-config" in container(objects)["args"]
    subjects = [s for o in objects for s in o.get("subjects", [])]
    assert subjects
    assert {s["namespace"] for s in subjects} == {"platform-config"}
    namespace = the(objects, "Namespace")
    assert namespace["metadata"]["name"] == "platform-config"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "annotations" not in namespace["metadata"], "keep: false deletes it on uninstall"


def test_the_release_namespace_when_no_name_is_given(chart: Helm) -> None:
    text = chart.run(
        "template",
        "kstrata",
        str(CHART),
        "--namespace",
        "from-release",
        "--set",
        "namespace.name=,namespace.create=false",
    ).stdout
    objects = [o for o in yaml.safe_load_all(text) if o]
    assert not [o for o in objects if o["kind"] == "Namespace"]
    assert {o["metadata"]["namespace"] for o in objects if "namespace" in o["metadata"]} == {
        "from-release"
    }


def test_webhook_off_leaves_no_webhook_behind(chart: Helm) -> None:
    objects = chart.template({"webhook": {"enabled": False}})
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("ValidatingWebhookConfiguration", "kstrata.dev") not in kinds
    assert ("Service", "kstrata-webhook") not in kinds
    assert ("Service", "kstrata-metrics") in kinds
    operator = container(objects)
    assert "--no-webhook" in operator["args"]
    assert "webhook" not in {p["name"] for p in operator["ports"]}
    # Ready without a webhook port to probe: the liveness endpoint answers.
    assert operator["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    cluster_role = the(objects, "ClusterRole", "kstrata:cluster")
    resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert "validatingwebhookconfigurations" not in resources


def test_monitoring_objects_only_when_asked(chart: Helm) -> None:
    kinds = {o["kind"] for o in chart.template()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    objects = chart.template(
        {
            "metrics": {
                "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"team": "p"}},
                "prometheusRule": {"enabled": True, "labels": {"team": "p"}},
            }
        }
    )
    monitor = the(objects, "ServiceMonitor")
    metrics_service = the(objects, "Service", "kstrata-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= metrics_service["metadata"]["labels"].items()
    webhook_service = the(objects, "Service", "kstrata-webhook")
    assert not selector.items() <= webhook_service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "15s"}
    assert endpoint["port"] in {p["name"] for p in metrics_service["spec"]["ports"]}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["kstrata-system"]}
    assert monitor["metadata"]["labels"]["team"] == "p"

    rule = the(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["team"] == "p"
    # The rules file verbatim: helm does not expand the alerts' own {{ $labels }}.
    assert rule["spec"] == yaml.safe_load((MONITORING / "kstrata.rules.yaml").read_text())
    assert "{{ $labels.kind }}" in yaml.safe_dump(rule["spec"])


def test_the_chart_copy_of_the_rules_is_the_rules_file() -> None:
    copy = CHART / "files" / "kstrata.rules.yaml"
    assert copy.read_text() == (MONITORING / "kstrata.rules.yaml").read_text(), (
        "copy monitoring/kstrata.rules.yaml to charts/kstrata/files/"
    )


def test_pdb_and_scheduling_values(chart: Helm) -> None:
    assert not [
        o
        for o in chart.template({"podDisruptionBudget": {"enabled": False}})
        if o["kind"] == "PodDisruptionBudget"
    ]
    objects = chart.template(
        {
            "nodeSelector": {"pool": "system"},
            "tolerations": [{"key": "system", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {}},
            "priorityClassName": "system-cluster-critical",
            "podAnnotations": {"example.com/a": "b"},
            "imagePullSecrets": [{"name": "registry"}],
        }
    )
    template = the(objects, "Deployment")["spec"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["tolerations"] == [{"key": "system", "operator": "Exists"}]
    assert pod["affinity"] == {"nodeAffinity": {}}
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert template["metadata"]["annotations"] == {"example.com/a": "b"}
