"""charts/kstrata installed, upgraded and uninstalled by the real helm on the real node.

The integration tier proves the chart's objects on a cluster without a node;
here its operator runs: two replicas from the locally built image (the chart's
``image.tag``), serving a ConfigProfile and a SealedSecret to a pod that
prints what it was given.  ``helm upgrade --set environment=staging`` changes
the settings overlay the operator runs with, which decides the environment a
profile renders for in a namespace that names none: the new replicas render
the staging value and the workload rolls onto it, and a changed profile
after that rolls it once more.  ``helm uninstall`` removes the operator and
keeps what the chart says it keeps (the CRDs, per Helm's rule for ``crds/``,
and the operator namespace with the sealing keys); the served ConfigMap and
Secret stay, and nothing left behind blocks a write.

The kustomize install the other tests share (the ``kstrata`` fixture) is
removed first, since Helm refuses objects it did not create; the fixture
installs it again for whichever test needs it next.  At the end the test
deletes what the chart kept, as docs/operations.md tells a user to, so the
node is as it was before kstrata.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from support.cluster import TestCluster
from support.e2e import (
    OPERATOR_IMAGE,
    OPERATOR_NAMESPACE,
    OPERATOR_SELECTOR,
    apply,
    config_profile,
    deployment,
    logs,
    pods_of,
    restricted_container,
    sealed_secret,
    uninstall_kstrata,
    wait_rolled_out,
    wait_serving,
)
from support.gotools import CHART, Helm, install_tool
from support.waiting import wait_for

RELEASE = "kstrata"
#: Where Helm keeps the release record; the operator's objects go to namespace.name.
RELEASE_NAMESPACE = "default"
#: The chart's crds/: Helm creates them at install, and never upgrades or deletes them.
CRDS = {
    "customresourcedefinition.apiextensions.k8s.io/configprofiles.kstrata.dev",
    "customresourcedefinition.apiextensions.k8s.io/sealedsecrets.kstrata.dev",
    "customresourcedefinition.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev",
    "customresourcedefinition.apiextensions.k8s.io/kopfpeerings.kopf.dev",
}
PART_OF = "app.kubernetes.io/part-of=kstrata"

#: The config file it was started with, then a digest of the password (never the value).
PRINT_THEN_IDLE = [
    "sh",
    "-c",
    "cat /etc/app/config.yaml;"
    ' printf "password %s\\n" "$(sha256sum < /etc/db/password | cut -d" " -f1)";'
    " exec sleep 100000",
]


@pytest.fixture(scope="module")
def helm(request: pytest.FixtureRequest) -> Iterator[Helm]:
    with Helm(install_tool(request.config, "helm")) as helm:
        yield helm


def release(helm: Helm, cluster: TestCluster, *args: str) -> str:
    """``helm ARGS`` on the node cluster's release; its standard output."""
    return helm.run(*args, "-n", RELEASE_NAMESPACE, kubeconfig=cluster.kubeconfig).stdout


def delete_what_helm_keeps(cluster: TestCluster) -> None:
    """The operator namespace (sealing keys included) and the CRDs (every CR with them)."""
    cluster.kubectl("delete", "namespace", OPERATOR_NAMESPACE, "--ignore-not-found", "--wait=false")
    cluster.kubectl("delete", "crd", "-l", PART_OF, "--wait=true", "--timeout=60s")
    wait_for(
        lambda: not cluster.exists(cluster.core.read_namespace, OPERATOR_NAMESPACE),
        timeout=120,
        what="the operator namespace gone",
    )


@pytest.fixture
def no_kstrata(node_cluster: TestCluster, helm: Helm) -> Iterator[TestCluster]:
    """No kstrata before (the shared kustomize install removed), none after (whatever failed)."""
    started = time.monotonic()
    uninstall_kstrata(node_cluster)
    print(f"kustomize install removed in {time.monotonic() - started:.1f} s")
    yield node_cluster
    helm.run(
        "uninstall",
        RELEASE,
        "-n",
        RELEASE_NAMESPACE,
        "--wait",
        "--ignore-not-found",
        kubeconfig=node_cluster.kubeconfig,
    )
    delete_what_helm_keeps(node_cluster)


def profile(greeting: str) -> dict[str, Any]:
    # No spec.environment, and the namespace has no kstrata.dev/environment
    # label: the operator's default environment (its settings overlay) decides.
    return config_profile(
        "app",
        "app-config",
        {"greeting": greeting, "pool": 1},
        environments={"prod": {"pool": 20}, "staging": {"pool": 5}},
    )


def workload() -> dict[str, Any]:
    return deployment(
        "app",
        [
            restricted_container(
                "app",
                PRINT_THEN_IDLE,
                volumeMounts=[
                    {"name": "config", "mountPath": "/etc/app", "readOnly": True},
                    {"name": "db", "mountPath": "/etc/db", "readOnly": True},
                ],
            )
        ],
        [
            {"name": "config", "configMap": {"name": "app-config"}},
            {"name": "db", "secret": {"secretName": "db"}},
        ],
        replicas=1,
        annotations={"kstrata.dev/reload": "app,db"},
    )


def served(cluster: TestCluster, namespace: str) -> str:
    body: Any = cluster.core.read_namespaced_config_map("app-config", namespace)
    return str(body.data["config.yaml"])


def printed(cluster: TestCluster, namespace: str) -> set[str]:
    """What each running pod of the workload printed (settled: no pod is going away)."""
    pods = pods_of(cluster, namespace, "app")
    if any(p.metadata.deletion_timestamp for p in pods):
        return set()
    return {logs(cluster, namespace, p.metadata.name) for p in pods}


def revision(cluster: TestCluster, namespace: str) -> int:
    body: Any = cluster.apps.read_namespaced_deployment("app", namespace)
    return int(body.metadata.annotations["deployment.kubernetes.io/revision"])


def labelled(cluster: TestCluster, kinds: str) -> list[str]:
    """Cluster-wide objects of ``kinds`` that are part of kstrata."""
    return cluster.kubectl("get", kinds, "-l", PART_OF, "-o", "name").stdout.split()


@contextlib.contextmanager
def explained(cluster: TestCluster) -> Iterator[None]:
    """A failure carries what the operator namespace looked like (no values: no Secrets read)."""
    try:
        yield
    except AssertionError as failure:
        shown = [
            cluster.kubectl(*args, check=False)
            for args in (
                ("get", "pods,deployments,replicasets", "-n", OPERATOR_NAMESPACE, "-o", "wide"),
                ("get", "events", "-n", OPERATOR_NAMESPACE, "--sort-by=.lastTimestamp"),
                ("logs", "-n", OPERATOR_NAMESPACE, "-l", OPERATOR_SELECTOR, "--tail=20"),
            )
        ]
        text = "\n".join(r.stdout + r.stderr for r in shown)
        raise AssertionError(f"{failure}\n--- {OPERATOR_NAMESPACE}:\n{text}") from failure


def operator_pods(cluster: TestCluster) -> list[Any]:
    return list(
        cluster.core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=OPERATOR_SELECTOR).items
    )


# Longer than the tier's 300 s only if the node runs slow: the body takes ~70 s.
@pytest.mark.timeout(600)
def test_helm_install_upgrade_uninstall_on_the_node(no_kstrata: TestCluster, helm: Helm) -> None:
    cluster = no_kstrata
    timings: dict[str, float] = {}
    password = secrets.token_hex(12)
    digest = hashlib.sha256(password.encode()).hexdigest()

    def serves(pool: int, greeting: str) -> str:
        config = served(cluster, ns)
        if yaml.safe_load(config) != {"greeting": greeting, "pool": pool}:
            return ""
        return config

    def prints(config: str) -> bool:
        return printed(cluster, ns) == {f"{config}password {digest}\n"}

    with explained(cluster), cluster.temporary_namespace("helm-app") as ns:
        # Install: the chart's defaults but the local image's tag.
        started = time.monotonic()
        notes = release(helm, cluster, "install", RELEASE, str(CHART), "--set", "image.tag=dev")
        assert f"kubectl -n {OPERATOR_NAMESPACE} rollout status deployment/kstrata" in notes
        first = wait_serving(cluster)
        timings["install until serving"] = time.monotonic() - started
        assert len(first) == 2
        # Admitted where the chart's namespace enforces "restricted".
        operator_namespace: Any = cluster.core.read_namespace(OPERATOR_NAMESPACE)
        labels = operator_namespace.metadata.labels
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        for pod in operator_pods(cluster):
            (container,) = pod.spec.containers
            assert container.image == OPERATOR_IMAGE
            assert {"name": "KSTRATA_ENVIRONMENT", "value": "prod"} in [
                {"name": e.name, "value": e.value} for e in container.env
            ]
            (status,) = pod.status.container_statuses
            assert status.ready
            assert status.image.endswith(OPERATOR_IMAGE)

        started = time.monotonic()
        apply(
            cluster,
            ns,
            profile("hello"),
            sealed_secret(cluster, ns, "db", password=password),
            workload(),
        )
        prod = wait_for(lambda: serves(20, "hello"), timeout=60, what="the prod render")
        wait_rolled_out(cluster, ns, "app")
        wait_for(lambda: prints(prod), timeout=60, interval=0.5, what="the pod printing it")
        timings["profile, secret and pod served"] = time.monotonic() - started

        # Upgrade: another settings overlay; new operator pods, the same release.
        started = time.monotonic()
        release(
            helm,
            cluster,
            "upgrade",
            RELEASE,
            str(CHART),
            "--reuse-values",
            "--set",
            "environment=staging",
        )
        second = wait_serving(cluster)
        timings["upgrade until serving"] = time.monotonic() - started
        assert len(second) == 2
        assert not set(first) & set(second), "the upgrade replaced every operator pod"
        staging = wait_for(
            lambda: serves(5, "hello"), timeout=90, what="the staging render by the new operator"
        )
        wait_for(lambda: prints(staging), timeout=90, interval=0.5, what="the pod on staging")
        timings["staging render reached the pod"] = time.monotonic() - started

        # The upgraded operator still serves: a changed profile rolls the workload once.
        started = time.monotonic()
        before = revision(cluster, ns)
        apply(cluster, ns, profile("bonjour"))
        changed = wait_for(lambda: serves(5, "bonjour"), timeout=60, what="the changed render")
        wait_for(lambda: prints(changed), timeout=90, interval=0.5, what="the pod on the change")
        wait_rolled_out(cluster, ns, "app")
        assert revision(cluster, ns) == before + 1
        timings["change rolled"] = time.monotonic() - started

        # Uninstall: the operator goes; the CRDs and its namespace stay.
        started = time.monotonic()
        output = release(helm, cluster, "uninstall", RELEASE, "--wait")
        assert "kept due to the resource policy" in output
        # --wait waits for the Deployment, not its pods: they drain kopf within
        # their grace period (having lost their RBAC and token already).
        wait_for(lambda: not operator_pods(cluster), timeout=60, what="the operator pods gone")
        timings["uninstall until the operator pods are gone"] = time.monotonic() - started
        assert (
            labelled(cluster, "validatingwebhookconfigurations,clusterrole,clusterrolebinding")
            == []
        )
        listed = cluster.kubectl(
            "get", "all,role,rolebinding,serviceaccount,pdb", "-n", OPERATOR_NAMESPACE, "-o", "name"
        ).stdout.split()
        # The namespace's own ServiceAccount is the API server's, not the chart's.
        assert listed == ["serviceaccount/default"], listed
        assert release(helm, cluster, "list", "--all", "-q").strip() == ""
        # Kept: the CRDs (Helm never deletes a chart's crds/), so the profile
        # and the sealed secret, and what they rendered, are all still there;
        # the namespace with the sealing keys (helm.sh/resource-policy: keep).
        assert set(labelled(cluster, "crd")) == CRDS
        assert cluster.exists(
            cluster.core.read_namespaced_secret, "kstrata-sealing-keys", OPERATOR_NAMESPACE
        )
        assert served(cluster, ns) == changed
        assert cluster.exists(cluster.core.read_namespaced_secret, "db", ns)
        # Nothing blocks a write (no webhook left to refuse it), and the workload
        # keeps running with what it was given.
        apply(cluster, ns, profile("after"))
        assert prints(changed)

    started = time.monotonic()
    delete_what_helm_keeps(cluster)
    timings["deleting what helm keeps"] = time.monotonic() - started
    assert labelled(cluster, "namespaces,crd") == []
    print(", ".join(f"{what} {seconds:.1f} s" for what, seconds in timings.items()))
