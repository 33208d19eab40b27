"""manifests/ is installable as written, and agrees with the code it deploys.

The API server is the judge where it can be: ``kubectl apply -k --dry-run=server``
for both install modes, and the operator's pod template offered to a namespace
that enforces the "restricted" Pod Security Standard.  The rest compares the
manifests with the code they configure (ports, the webhook configuration the
operator writes, the image the Makefile builds), so neither drifts alone.
The RBAC itself is proven by tests/cluster/test_rbac.py.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kstrata.app import admission
from kstrata.settings import Settings
from support.cluster import TestCluster
from support.serviceaccount import render

REPO = Path(__file__).resolve().parents[2]
CLUSTERWIDE, NAMESPACED = REPO / "manifests", REPO / "manifests" / "namespaced"
OPERATOR_NAMESPACE = "kstrata-system"
WATCHED = "team-a"


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def the(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = by_kind(objects, kind)
    return found


@contextlib.contextmanager
def namespace_present(cluster: TestCluster, name: str, *, keep: bool) -> Iterator[None]:
    """``name`` exists meanwhile; deleted afterwards only if made here and not ``keep``."""
    made = not cluster.exists(cluster.core.read_namespace, name)
    if made:
        cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield
    finally:
        if made and not keep:
            cluster.delete_namespace(name)


@pytest.mark.parametrize(
    "kustomization", [CLUSTERWIDE, NAMESPACED], ids=["clusterwide", "namespaced"]
)
def test_server_side_dry_run_accepts_every_object(
    cluster: TestCluster, kustomization: Path
) -> None:
    # A server-side dry run creates nothing, so the namespaces its objects live
    # in must exist first (a real `kubectl apply -k` creates kstrata-system
    # before the objects in it).  kstrata-system is kept: other cluster tests
    # install into it too.
    with (
        namespace_present(cluster, OPERATOR_NAMESPACE, keep=True),
        namespace_present(cluster, WATCHED, keep=False),
    ):
        result = cluster.kubectl("apply", "-k", str(kustomization), "--dry-run=server")
    objects = render(cluster, kustomization)
    assert len(result.stdout.splitlines()) == len(objects)
    assert all("(server dry run)" in line for line in result.stdout.splitlines())
    # Warnings (deprecated APIs, Pod Security "would violate") count as failures;
    # kubectl's note that an object made by someone else (another test, `kubectl
    # create`) lacks its last-applied annotation is about the cluster, not us.
    warnings = [
        line
        for line in result.stderr.splitlines()
        if "Warning" in line and "last-applied-configuration annotation" not in line
    ]
    assert not warnings, result.stderr


def test_a_plain_apply_order_needs_no_second_pass(cluster: TestCluster) -> None:
    """No object of a CRD that the same apply creates (kubectl cannot map those)."""
    objects = render(cluster, CLUSTERWIDE) + render(cluster, NAMESPACED)
    defined = {
        (crd["spec"]["group"], crd["spec"]["names"]["kind"])
        for crd in by_kind(objects, "CustomResourceDefinition")
    }
    assert defined, "the CRDs are part of the install"
    for obj in objects:
        group = obj["apiVersion"].rpartition("/")[0]
        assert (group, obj["kind"]) not in defined, obj["metadata"]["name"]


def test_the_crds_are_those_of_crds_dir(cluster: TestCluster) -> None:
    rendered = {
        crd["metadata"]["name"]: crd
        for crd in by_kind(render(cluster, CLUSTERWIDE), "CustomResourceDefinition")
    }
    for path in sorted((REPO / "crds").glob("*.kstrata.dev.yaml")):
        committed = yaml.safe_load(path.read_text())
        assert rendered[committed["metadata"]["name"]] == committed


def test_the_operator_pod_is_admitted_under_restricted_pod_security(cluster: TestCluster) -> None:
    deployment = the(render(cluster, CLUSTERWIDE), "Deployment")
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kstrata-pss"},
        "spec": deployment["spec"]["template"]["spec"],
    }
    with cluster.temporary_namespace(prefix="pss", labels=labels) as namespace:
        cluster.kubectl("create", "serviceaccount", "kstrata", "-n", namespace)
        result = cluster.kubectl(
            "create",
            "-n",
            namespace,
            "--dry-run=server",
            "-f",
            "-",
            input=yaml.safe_dump(pod),
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert "violate" not in result.stderr


def test_the_deployment_is_two_hardened_probed_bounded_replicas(cluster: TestCluster) -> None:
    spec = the(render(cluster, CLUSTERWIDE), "Deployment")["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "kstrata"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "readinessProbe" in container
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    env = {e["name"]: e for e in container["env"]}
    # kopf's peering identity must differ per replica: the pod name.
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["KSTRATA_ENVIRONMENT"]["value"] == "prod"
    # The only writable path is an emptyDir at /tmp.
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    (volume,) = pod["volumes"]
    assert volume["name"] == mount["name"]
    assert "emptyDir" in volume
    budget = the(render(cluster, CLUSTERWIDE), "PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"] == spec["selector"]["matchLabels"]


def port_of(address: str | None) -> int:
    """The port of ``host:port`` or of a URL."""
    assert address is not None
    if "://" in address:
        port = urllib.parse.urlsplit(address).port
        assert port is not None
        return port
    return int(address.rpartition(":")[2])


def test_ports_and_services_agree_with_the_operator_defaults(cluster: TestCluster) -> None:
    objects = render(cluster, CLUSTERWIDE)
    defaults = Settings()
    (container,) = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # The reseal endpoint is off by default; the manifests turn it on by flag.
    (reseal_address,) = [
        a.removeprefix("--reseal-address=") for a in container["args"] if "reseal-address" in a
    ]
    assert ports == {
        "webhook": port_of(defaults.webhook_address),
        "reseal": port_of(reseal_address),
        "metrics": port_of(defaults.metrics_address),
        "health": port_of(defaults.liveness_endpoint),
    }
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    webhook_service = services[defaults.webhook_service]
    assert webhook_service["metadata"]["namespace"] == defaults.operator_namespace
    (port,) = webhook_service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (443, "webhook")
    (reseal,) = services["kstrata-reseal"]["spec"]["ports"]
    assert (reseal["port"], reseal["targetPort"]) == (443, "reseal")
    (metrics,) = services["kstrata-metrics"]["spec"]["ports"]
    assert metrics["targetPort"] == "metrics"
    selector = the(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    for service in services.values():
        assert service["spec"]["selector"] == selector


@pytest.mark.parametrize(
    ("kustomization", "namespaces"),
    [(CLUSTERWIDE, ()), (NAMESPACED, (WATCHED,))],
    ids=["clusterwide", "namespaced"],
)
def test_the_shipped_webhook_configuration_is_what_the_operator_writes(
    cluster: TestCluster, kustomization: Path, namespaces: tuple[str, ...]
) -> None:
    """So re-applying the manifests and the operator's start-up never fight (but for caBundle)."""
    settings = Settings(namespaces=namespaces)
    shipped = the(render(cluster, kustomization), "ValidatingWebhookConfiguration")
    assert settings.webhook_configuration is not None
    config = admission.client_config(settings, b"unused", 9443)
    del config["caBundle"]
    written = admission.webhook_configuration(settings.webhook_configuration, config, namespaces)
    assert shipped["metadata"]["name"] == written["metadata"]["name"]
    assert shipped["webhooks"] == written["webhooks"]


def rbac_rules(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in ("ClusterRole", "Role"):
            for rule in obj["rules"]:
                yield obj, rule


@pytest.mark.parametrize(
    "kustomization", [CLUSTERWIDE, NAMESPACED], ids=["clusterwide", "namespaced"]
)
def test_rbac_has_no_wildcards_and_names_what_it_can(
    cluster: TestCluster, kustomization: Path
) -> None:
    objects = render(cluster, kustomization)
    for role, rule in rbac_rules(objects):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
        if "validatingwebhookconfigurations" in rule["resources"]:
            assert rule["resourceNames"] == ["kstrata.dev"]
        if role["kind"] == "Role" and "secrets" in rule["resources"]:
            # In its own namespace: the key and certificate Secrets by name, plus create.
            assert rule.get("resourceNames") or rule["verbs"] == ["create"], rule
    # Every binding names the one ServiceAccount.
    for binding in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "kstrata", "namespace": OPERATOR_NAMESPACE}
        ]


def test_the_namespaced_install_grants_nothing_cluster_wide_in_app_namespaces(
    cluster: TestCluster,
) -> None:
    objects = render(cluster, NAMESPACED)
    bound = {b["roleRef"]["name"] for b in by_kind(objects, "ClusterRoleBinding")}
    assert bound == {"kstrata:cluster"}
    rules = next(r for r in by_kind(objects, "ClusterRole") if r["metadata"]["name"] in bound)
    resources = {res for rule in rules["rules"] for res in rule["resources"]}
    assert resources == {
        "namespaces",
        "customresourcedefinitions",
        "validatingwebhookconfigurations",
    }
    (container,) = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert f"--namespace={WATCHED}" in container["args"]
    assert {b["metadata"]["namespace"] for b in by_kind(objects, "RoleBinding")} == {
        OPERATOR_NAMESPACE,
        WATCHED,
    }


def makefile_default(name: str) -> str:
    match = re.search(rf"^{name} \?= (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile sets no default {name}"
    return match.group(1)


def test_the_image_kind_deploy_builds_is_the_one_the_deployment_runs(cluster: TestCluster) -> None:
    # kind-deploy installs the local overlay: the shipped manifests with the image it built.
    overlay = CLUSTERWIDE / "overlays" / "local"
    (container,) = the(render(cluster, overlay), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["image"] == makefile_default("IMAGE")
    # Docker is not needed to check what make would run.
    plan = subprocess.run(
        ["make", "-n", "kind-deploy"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert plan.returncode == 0, plan.stderr
    assert "docker build -f operator/Dockerfile" in plan.stdout
    assert "kind load docker-image" in plan.stdout
    assert "apply -k manifests/overlays/local" in plan.stdout
    assert "examples/config/" in plan.stdout


def test_the_local_overlay_changes_only_the_image(cluster: TestCluster) -> None:
    shipped = render(cluster, CLUSTERWIDE)
    local = render(cluster, CLUSTERWIDE / "overlays" / "local")
    (container,) = the(local, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "kstrata-operator:dev"
    container["image"] = the(shipped, "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    assert local == shipped


def test_the_dockerfile_is_pinned_small_and_non_root() -> None:
    text = (REPO / "operator" / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm$", text, re.MULTILINE)
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]  # multi-stage, one pinned base
    (user,) = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    uid = int(user.split(":")[0])
    assert uid > 0
    deployment = yaml.safe_load((REPO / "manifests" / "base" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid
    assert "COPY config/ /etc/kstrata/config/" in text
    assert "KSTRATA_CONFIG_DIR=/etc/kstrata/config" in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*") :][:1] == ["*"]
    assert {"!config/", "!operator/kstrata/", "!pyproject.toml"} <= set(ignored)
