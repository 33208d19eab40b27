"""charts/kstrata against the real API server: the same objects as manifests/, accepted,
installed, upgraded and uninstalled by the real helm.

The embedded cluster has no node, so the operator's pods stay Pending here:
these tests prove the objects, not the running operator (the node tier does).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from support.cluster import TestCluster
from support.gotools import CHART, REPO, Helm, Object, documents
from support.integration_tools import by_key

pytestmark = pytest.mark.cluster

OPERATOR_NAMESPACE = "kstrata-system"


@pytest.fixture(scope="module")
def chart(helm: Path) -> Iterator[Helm]:
    with Helm(helm) as chart:
        yield chart


def kustomize(kubectl: Path, directory: Path) -> list[Object]:
    import subprocess

    result = subprocess.run(
        [str(kubectl), "kustomize", str(directory)], capture_output=True, text=True, check=True
    )
    return documents(result.stdout)


@pytest.mark.parametrize(
    ("kustomization", "values"),
    [
        ("manifests", {}),
        ("manifests/namespaced", {"watchNamespaces": ["team-a"]}),
        ("manifests/overlays/local", {"image": {"tag": "dev"}}),
    ],
    ids=["clusterwide", "namespaced", "local"],
)
def test_the_chart_renders_the_objects_of_manifests(
    chart: Helm, kubectl: Path, kustomization: str, values: Object
) -> None:
    # Every field of every object, not only the spec: names, namespaces, labels
    # (less Helm's own), RBAC rules, the webhook, the CRDs.
    expected = by_key(kustomize(kubectl, REPO / kustomization))
    rendered = by_key(chart.template(values))
    assert sorted(rendered, key=str) == sorted(expected, key=str)
    for name, obj in expected.items():
        assert rendered[name] == obj, name


@contextlib.contextmanager
def namespace_present(cluster: TestCluster, name: str) -> Iterator[None]:
    """``name`` exists meanwhile (kstrata-system is kept: other tests install into it)."""
    made = not cluster.exists(cluster.core.read_namespace, name)
    if made:
        cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield
    finally:
        if made and name != OPERATOR_NAMESPACE:
            cluster.delete_namespace(name)


def warnings_of(stderr: str) -> list[str]:
    # kubectl's note that an object someone else made (another test, the CRDs
    # fixture) lacks its last-applied annotation is about the cluster, not the chart.
    return [
        line
        for line in stderr.splitlines()
        if "Warning" in line and "last-applied-configuration annotation" not in line
    ]


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "watchNamespaces": ["WATCHED"],
            "webhook": {"enabled": False},
            "replicas": 1,
            "environment": "staging",
        },
    ],
    ids=["defaults", "namespaced-no-webhook"],
)
def test_the_api_server_accepts_every_rendered_object(
    cluster: TestCluster, chart: Helm, values: dict[str, Any]
) -> None:
    with (
        cluster.temporary_namespace(prefix="watched") as watched,
        namespace_present(cluster, OPERATOR_NAMESPACE),
    ):
        if "watchNamespaces" in values:
            values = dict(values, watchNamespaces=[watched])
        text = chart.template_text(values)
        result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text)
    lines = result.stdout.splitlines()
    assert len(lines) == len(documents(text))
    assert all("(server dry run)" in line for line in lines), result.stdout
    assert not warnings_of(result.stderr), result.stderr


def live(cluster: TestCluster, kind: str, name: str, namespace: str | None = None) -> Any:
    args = ["get", kind, name, "-o", "yaml", "--ignore-not-found"]
    if namespace:
        args += ["-n", namespace]
    text = cluster.kubectl(*args).stdout
    return yaml.safe_load(text) if text.strip() else None


def test_helm_install_upgrade_and_uninstall(
    cluster: TestCluster, chart: Helm, kstrata_crds: None
) -> None:
    # Another operator namespace than kstrata-system, which other tests use
    # without Helm (the release could not take it over).
    with cluster.temporary_namespace(prefix="helm-release") as release_namespace:
        operator_namespace = release_namespace + "-op"
        rendered = chart.template({"namespace": {"name": operator_namespace}})
        cluster_scoped = [
            (o["kind"], o["metadata"]["name"])
            for o in rendered
            if "namespace" not in o["metadata"]
            and o["kind"] not in ("CustomResourceDefinition", "Namespace")
        ]
        present = [name for name in cluster_scoped if live(cluster, *name) is not None]
        assert not present, f"left behind by an earlier test: {present}"
        kubeconfig = cluster.kubeconfig
        release = ["--namespace", release_namespace]
        try:
            installed = chart.run(
                "install",
                "kstrata",
                str(CHART),
                *release,
                "--set",
                f"namespace.name={operator_namespace}",
                kubeconfig=kubeconfig,
            )
            # NOTES.txt: what to do next, with this install's namespace.
            assert f"kubectl -n {operator_namespace} rollout status deployment/kstrata" in (
                installed.stdout
            )
            assert "kstrata-sealing-keys" in installed.stdout

            for kind, name in cluster_scoped:
                obj = live(cluster, kind, name)
                assert obj is not None, (kind, name)
                assert obj["metadata"]["annotations"]["meta.helm.sh/release-name"] == "kstrata"
            namespace = live(cluster, "namespace", operator_namespace)
            assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
                "restricted"
            )
            deployment = live(cluster, "deployment", "kstrata", operator_namespace)
            assert deployment["spec"]["replicas"] == 2
            operator = deployment["spec"]["template"]["spec"]["containers"][0]
            assert f"--operator-namespace={operator_namespace}" in operator["args"]
            webhook = live(cluster, "validatingwebhookconfiguration", "kstrata.dev")
            assert webhook["webhooks"][0]["clientConfig"]["service"]["namespace"] == (
                operator_namespace
            )
            # No node: the pods are Pending, never running (the node tier runs them).
            pods = cluster.core.list_namespaced_pod(operator_namespace).items
            assert all(pod.status.phase == "Pending" for pod in pods)

            # The operator writes its CA into the webhook at start-up only: an
            # upgrade, even one that changes the webhook, must keep it.
            ca_bundle = base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()
            cluster.kubectl(
                "patch",
                "validatingwebhookconfiguration",
                "kstrata.dev",
                "--type=json",
                "-p",
                json.dumps(
                    [
                        {
                            "op": "add",
                            "path": f"/webhooks/{index}/clientConfig/caBundle",
                            "value": ca_bundle,
                        }
                        for index in (0, 1)
                    ]
                ),
            )
            chart.run(
                "upgrade",
                "kstrata",
                str(CHART),
                *release,
                "--reuse-values",
                "--set",
                f"replicas=3,watchNamespaces={{{release_namespace}}}",
                kubeconfig=kubeconfig,
            )
            webhooks = live(cluster, "validatingwebhookconfiguration", "kstrata.dev")["webhooks"]
            assert len(webhooks) == 2  # ConfigProfiles, SealedSecrets with templates
            for webhook in webhooks:
                assert webhook["clientConfig"]["caBundle"] == ca_bundle
                assert webhook["namespaceSelector"]["matchExpressions"][0]["values"] == [
                    release_namespace
                ]
            assert live(cluster, "clusterrolebinding", "kstrata:app") is None
            assert live(cluster, "rolebinding", "kstrata:app", release_namespace) is not None
            assert (
                live(cluster, "deployment", "kstrata", operator_namespace)["spec"]["replicas"] == 3
            )

            chart.run(
                "upgrade",
                "kstrata",
                str(CHART),
                *release,
                "--reuse-values",
                "--set",
                "replicas=1,environment=staging,webhook.enabled=false",
                kubeconfig=kubeconfig,
            )
            deployment = live(cluster, "deployment", "kstrata", operator_namespace)
            assert deployment["spec"]["replicas"] == 1
            operator = deployment["spec"]["template"]["spec"]["containers"][0]
            assert "--no-webhook" in operator["args"]
            assert {"name": "KSTRATA_ENVIRONMENT", "value": "staging"} in operator["env"]
            assert live(cluster, "validatingwebhookconfiguration", "kstrata.dev") is None
            assert live(cluster, "service", "kstrata-webhook", operator_namespace) is None
            history = chart.run("history", "kstrata", *release, kubeconfig=kubeconfig).stdout
            assert "Upgrade complete" in history
        finally:
            uninstalled = chart.run(
                "uninstall", "kstrata", *release, "--wait", kubeconfig=kubeconfig, check=False
            )
        try:
            assert uninstalled.returncode == 0, uninstalled.stderr
            # Kept by design: the CRDs (deleting them deletes every ConfigProfile
            # and SealedSecret) and the operator namespace, where the sealing keys live.
            assert "kept due to the resource policy" in uninstalled.stdout
            for kind, name in [*cluster_scoped, ("ClusterRole", "kstrata:namespaced-peering")]:
                assert live(cluster, kind, name) is None, (kind, name)
            assert live(cluster, "rolebinding", "kstrata:app", release_namespace) is None
            for kind in ("deployment", "service", "serviceaccount", "role", "rolebinding", "pdb"):
                listed = cluster.kubectl("get", kind, "-n", operator_namespace, "-o", "name")
                assert "kstrata" not in listed.stdout, listed.stdout
            assert live(cluster, "crd", "configprofiles.kstrata.dev") is not None
            assert live(cluster, "namespace", operator_namespace) is not None
            releases = chart.run("list", "--all", "-q", *release, kubeconfig=kubeconfig).stdout
            assert not releases.strip(), "the release record is gone too"
            # Installing again takes the kept namespace back (it still carries
            # the release's ownership labels and annotations).
            chart.run(
                "install",
                "kstrata",
                str(CHART),
                *release,
                "--set",
                f"namespace.name={operator_namespace}",
                kubeconfig=kubeconfig,
            )
            assert live(cluster, "deployment", "kstrata", operator_namespace) is not None
            chart.run("uninstall", "kstrata", *release, "--wait", kubeconfig=kubeconfig)
        finally:
            if cluster.exists(cluster.core.read_namespace, operator_namespace):
                cluster.delete_namespace(operator_namespace)
