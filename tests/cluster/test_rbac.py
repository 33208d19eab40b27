"""The RBAC in manifests/ is enough and no more: proven on the real control plane.

For each install mode (cluster-wide ``manifests/`` and ``manifests/namespaced/``)
the rendered manifests are applied (without the Deployment and PDB, which need
nodes), a token for the ``kstrata-system/kstrata`` ServiceAccount is minted
with the TokenRequest API, and the operator runs in-process with *only* that
token, peering on, admission webhook on.  It must take a ConfigProfile to a
ConfigMap, a SealedSecret to a Secret, a change to a new revision (with its
ControllerRevision) and a rolling reload of an annotated Deployment, with no
"forbidden" anywhere in its logs.  Then ``kubectl auth can-i --list`` for the
account is compared with the committed allowlist, so a widened role fails
here as surely as a missing permission fails the flows.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import difflib
import logging
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import controlplane
from kstrata.controller import webhook
from kstrata.kube.api import KubeApi
from kstrata.settings import Settings
from support.cluster import TestCluster
from support.operator import running_operator
from support.reloads import sealed_manifest
from support.sealed_secrets import published_bundle
from support.serviceaccount import (
    NOT_APPLIED,
    as_service_account,
    granted_by_manifests,
    installed,
    mint_kubeconfig,
    read_allowlist,
    render,
)
from support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
OPERATOR_NAMESPACE, ACCOUNT = "kstrata-system", "kstrata"
USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{ACCOUNT}"
#: An account nobody binds: what every authenticated user may do anyway.
BASELINE_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:kstrata-rbac-baseline"
WEBHOOK_CONFIGURATION = "kstrata.dev"
GROUP, VERSION = "kstrata.dev", "v1alpha1"
#: The namespace manifests/namespaced/ watches.
WATCHED = "team-a"


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    kustomization: Path
    allowlist: Path
    clusterwide: bool


MODES = [
    Mode("clusterwide", REPO / "manifests", HERE / "rbac-allowlist.txt", True),
    Mode(
        "namespaced",
        REPO / "manifests" / "namespaced",
        HERE / "rbac-allowlist-namespaced.txt",
        False,
    ),
]


@dataclasses.dataclass(frozen=True)
class Install:
    mode: Mode
    #: Where the test puts its ConfigProfiles, SealedSecrets and Deployments.
    app_namespace: str
    #: The cluster handle authenticated as the ServiceAccount (kubectl stays admin).
    as_operator: TestCluster
    #: A kubeconfig with the ServiceAccount's token, for an operator in a subprocess.
    kubeconfig: Path


@pytest.fixture(params=MODES, ids=[m.name for m in MODES])
def install(
    request: pytest.FixtureRequest, cluster: TestCluster, tmp_path: Path
) -> Iterator[Install]:
    mode: Mode = request.param
    objects = [o for o in render(cluster, mode.kustomization) if o["kind"] not in NOT_APPLIED]
    with app_namespace_for(cluster, mode) as app_namespace, installed(cluster, objects):
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *(f"crd/{o['metadata']['name']}" for o in objects if o["kind"].endswith("Definition")),
        )
        wait_for(
            lambda: cluster.exists(
                cluster.core.read_namespaced_service_account, ACCOUNT, OPERATOR_NAMESPACE
            ),
            timeout=30,
            what="the ServiceAccount",
        )
        kubeconfig = mint_kubeconfig(cluster, OPERATOR_NAMESPACE, ACCOUNT, tmp_path / "sa.yaml")
        yield Install(mode, app_namespace, as_service_account(cluster, kubeconfig), kubeconfig)


def app_namespace_for(cluster: TestCluster, mode: Mode) -> contextlib.AbstractContextManager[str]:
    """A fresh namespace (cluster-wide) or the one the namespaced overlay watches."""
    if mode.clusterwide:
        return cluster.temporary_namespace(prefix="rbac")
    return watched_namespace(cluster)


@contextlib.contextmanager
def watched_namespace(cluster: TestCluster) -> Iterator[str]:
    if cluster.exists(cluster.core.read_namespace, WATCHED):
        cluster.delete_namespace(WATCHED)  # left over by an interrupted run
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=WATCHED)))
    try:
        yield WATCHED
    finally:
        cluster.delete_namespace(WATCHED)


# --- the flows ---------------------------------------------------------------


def apply(cluster: TestCluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))


def apply_through_webhook(cluster: TestCluster, namespace: str, body: dict[str, Any]) -> None:
    """Apply once the webhook answers: the API server picks up a new caBundle asynchronously."""

    def accepted() -> bool:
        result = cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=False
        )
        return result.returncode == 0

    wait_for(accepted, timeout=30, what="the webhook to admit the ConfigProfile")


def profile(greeting: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigProfile",
        "metadata": {"name": "payments"},
        "spec": {"base": {"greeting": greeting}},
    }


def custom_object(cluster: TestCluster, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return cluster.kstrata_object(plural, namespace, name)


def wait_revision(cluster: TestCluster, namespace: str, plural: str, name: str, n: int) -> Any:
    def ready() -> dict[str, Any] | None:
        status = custom_object(cluster, namespace, plural, name).get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        return status if status.get("revision") == n and conditions.get("Ready") == "True" else None

    return wait_for(ready, timeout=60, what=f"{plural}/{name} Ready at revision {n}")


def records(cluster: TestCluster, namespace: str, name: str) -> tuple[str | None, str | None]:
    """The reload record on the Deployment itself and on its pod template."""
    deployment = cluster.apps.read_namespaced_deployment(name, namespace)
    on_workload = (deployment.metadata.annotations or {}).get("kstrata.dev/revisions")
    on_template = (deployment.spec.template.metadata.annotations or {}).get("kstrata.dev/revisions")
    return on_workload, on_template


def owned_revisions(cluster: TestCluster, namespace: str, owner_uid: str) -> list[str]:
    items = cluster.apps.list_namespaced_controller_revision(namespace).items
    return sorted(
        item.metadata.name or ""
        for item in items
        if any(ref.uid == owner_uid for ref in item.metadata.owner_references or [])
    )


def deployment(name: str, reload: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"kstrata.dev/reload": reload}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }


def forbidden_lines(text: str) -> list[str]:
    markers = ("forbidden", "not enough permissions")
    return [line for line in text.splitlines() if any(m in line.lower() for m in markers)]


def test_the_operator_works_with_exactly_the_manifests_rbac(
    cluster: TestCluster, install: Install, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("kopf", "kstrata"):
        caplog.set_level(logging.DEBUG, logger=name)
    namespace = install.app_namespace
    port = controlplane.free_port()
    watched = () if install.mode.clusterwide else (namespace,)
    with running_operator(
        install.as_operator,
        standalone=False,
        namespaces=watched,
        operator_namespace=OPERATOR_NAMESPACE,
        webhook_address=f"127.0.0.1:{port}",
        webhook_url=f"https://127.0.0.1:{port}",
        webhook_configuration=WEBHOOK_CONFIGURATION,
    ) as operator:
        # The shipped webhook configuration was updated (not created) by the operator.
        admission = client.AdmissionregistrationV1Api(cluster.api)
        wait_for(
            lambda: (
                admission.read_validating_webhook_configuration(WEBHOOK_CONFIGURATION)
                .webhooks[0]
                .client_config.url
            ),
            timeout=30,
            what="the operator to point the shipped webhook configuration at itself",
        )

        # kopf's peering object: made by the operator, kept alive by it.
        def peers() -> dict[str, Any] | None:
            if install.mode.clusterwide:
                body = cluster.custom.get_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", "kstrata"
                )
            else:
                body = cluster.custom.get_namespaced_custom_object(
                    "kopf.dev", "v1", namespace, "kopfpeerings", "kstrata"
                )
            assert isinstance(body, dict)
            found: dict[str, Any] | None = body.get("status")
            return found

        wait_for(peers, timeout=30, what="the operator's keep-alive in its peering object")

        # ConfigProfile -> ConfigMap, through the admission webhook.
        apply_through_webhook(cluster, namespace, profile("hello"))
        wait_revision(cluster, namespace, "configprofiles", "payments", 1)
        config_map = cluster.core.read_namespaced_config_map("payments", namespace)
        assert yaml.safe_load(config_map.data["config.yaml"]) == {"greeting": "hello"}

        # A Deployment that reloads on the profile: first sight is recorded, nothing rolls.
        apply(cluster, namespace, deployment("web", "payments"))
        wait_for(
            lambda: records(cluster, namespace, "web")[0] == "payments=1",
            timeout=30,
            what="the reload record on the Deployment",
        )

        # SealedSecret -> Secret, sealed with the public keys the operator published.
        keys = published_bundle(cluster, OPERATOR_NAMESPACE)
        value = b"rbac-canary-value"
        apply(cluster, namespace, sealed_manifest(keys, namespace, value))
        wait_revision(cluster, namespace, "sealedsecrets", "db", 1)
        secret = cluster.core.read_namespaced_secret("db", namespace)
        assert base64.b64decode(secret.data["password"]) == value

        # A content change: revision 2, its ControllerRevision, and a rolled Deployment.
        apply_through_webhook(cluster, namespace, profile("bonjour"))
        wait_revision(cluster, namespace, "configprofiles", "payments", 2)
        owner = custom_object(cluster, namespace, "configprofiles", "payments")
        revisions = wait_for(
            lambda: (
                found
                if len(found := owned_revisions(cluster, namespace, owner["metadata"]["uid"])) >= 2
                else None
            ),
            timeout=30,
            what="a ControllerRevision per profile revision",
        )
        assert len(revisions) == 2, revisions
        wait_for(
            lambda: records(cluster, namespace, "web")[1] == "payments=2",
            timeout=30,
            what="the Deployment to roll (pod template record) after the profile changed",
        )

    logs = caplog.text + (operator.runner.output or "")
    assert forbidden_lines(logs) == []
    assert value.decode() not in logs


def test_rights_match_the_committed_allowlist(cluster: TestCluster, install: Install) -> None:
    mode = install.mode
    views = {"app": install.app_namespace, "operator": OPERATOR_NAMESPACE}
    with contextlib.ExitStack() as stack:
        if not mode.clusterwide:
            # A namespace it does not watch shows what it may do everywhere.
            views["unwatched"] = stack.enter_context(cluster.temporary_namespace(prefix="rbac"))
        actual = sorted(
            grant.line(view)
            for view, where in views.items()
            for grant in granted_by_manifests(cluster, USER, BASELINE_USER, where)
        )
    expected = read_allowlist(mode.allowlist)
    if actual != expected:
        diff = "\n".join(
            difflib.unified_diff(
                expected,
                actual,
                fromfile=str(mode.allowlist.relative_to(REPO)),
                tofile="kubectl auth can-i --list",
                lineterm="",
            )
        )
        pytest.fail(f"the ServiceAccount's rights differ from the allowlist:\n{diff}")


def test_replicas_share_one_webhook_certificate_with_the_manifests_rbac(
    cluster: TestCluster, install: Install, tmp_path: Path
) -> None:
    """In the cluster every replica serves the certificate whose CA is in the caBundle."""
    api = KubeApi(install.as_operator.connection)
    settings = Settings(operator_namespace=OPERATOR_NAMESPACE, webhook_address="127.0.0.1:0")
    secret = webhook.tls_secret_name(settings)
    # From scratch: the first replica ever makes it.
    cluster.kubectl("delete", "secret", secret, "-n", OPERATOR_NAMESPACE, "--ignore-not-found")
    first = webhook.shared_certificate(api, settings, tmp_path / "first")
    second = webhook.shared_certificate(api, settings, tmp_path / "second")
    assert first.ca_pem == second.ca_pem
    assert first.certfile.read_bytes() == second.certfile.read_bytes()

    # Near expiry a start-up renews it, and keeps the old CA trusted meanwhile.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=340)
    renewed = webhook.shared_certificate(api, settings, tmp_path / "renewed", now=later)
    assert renewed.certfile.read_bytes() != first.certfile.read_bytes()
    assert renewed.ca_pem.endswith(first.ca_pem)
    assert renewed.ca_pem.count(b"BEGIN CERTIFICATE") == 2
    # ...and what it stored is what the next replica gets.
    again = webhook.shared_certificate(api, settings, tmp_path / "again")
    assert again.certfile.read_bytes() == renewed.certfile.read_bytes()
    assert again.ca_pem == renewed.ca_pem


# --- two replicas ------------------------------------------------------------


def reconciled_profiles(exposition: str) -> float:
    """``kstrata_reconcile_total{kind="ConfigProfile",result="ok"}`` from a /metrics text."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "kstrata_reconcile_total" and sample.labels == {
                "kind": "ConfigProfile",
                "result": "ok",
            }:
                return float(sample.value)
    return 0.0


@dataclasses.dataclass
class Replica:
    """``kstrata operator run`` in its own process, as a second replica runs it."""

    process: subprocess.Popen[bytes]
    metrics_url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def replica_process(kubeconfig: Path, identity: str, log: Path) -> Iterator[Replica]:
    metrics_port, liveness_port = controlplane.free_port(), controlplane.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSTRATA_")}
    env["POD_ID"] = identity  # kopf's peering identity, as the Deployment sets it
    with log.open("wb") as sink:
        # A file, not a pipe: nobody reads while it runs, and a full pipe would block it.
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kstrata",
                "--kubeconfig",
                str(kubeconfig),
                "operator",
                "run",
                "--no-webhook",
                f"--operator-namespace={OPERATOR_NAMESPACE}",
                f"--metrics-address=127.0.0.1:{metrics_port}",
                f"--liveness=http://127.0.0.1:{liveness_port}/healthz",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    replica = Replica(process, f"http://127.0.0.1:{metrics_port}/metrics", log)
    try:
        yield replica
    finally:
        replica.stop()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@pytest.mark.parametrize("install", [MODES[0]], ids=[MODES[0].name], indirect=True)
def test_of_two_replicas_exactly_one_works_and_the_other_takes_over(
    cluster: TestCluster, install: Install, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="kopf")
    namespace = install.app_namespace
    # This test is about peering: both replicas run without the webhook, so the
    # shipped configuration (failurePolicy: Fail) would only refuse every apply.
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK_CONFIGURATION)
    in_process = contextlib.ExitStack()
    replica_log = tmp_path / "replica-b.log"
    with in_process, replica_process(install.kubeconfig, "replica-b", replica_log) as b:
        a = in_process.enter_context(
            running_operator(
                install.as_operator,
                standalone=False,
                operator_namespace=OPERATOR_NAMESPACE,
                webhook_address=None,
            )
        )

        def peers() -> dict[str, Any] | None:
            body = cluster.custom.get_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", "kstrata"
            )
            assert isinstance(body, dict)
            found: dict[str, Any] = body.get("status") or {}
            return found if len(found) == 2 and "replica-b" in found else None

        status = wait_for(peers, timeout=60, what="both replicas in the peering object")
        b_priority = status.pop("replica-b")["priority"]
        ((_, a_peer),) = status.items()
        assert a_peer["priority"] == a.runner.settings.peering.priority
        assert a_peer["priority"] != b_priority
        a_active = a_peer["priority"] > b_priority

        def counts() -> tuple[float, float]:
            a_count = REGISTRY.get_sample_value(
                "kstrata_reconcile_total", {"kind": "ConfigProfile", "result": "ok"}
            )
            return a_count or 0.0, reconciled_profiles(scrape(b.metrics_url))

        before = wait_for(counts, timeout=30, what="replica-b's metrics")  # it serves them
        apply(cluster, namespace, profile("both-up") | {"metadata": {"name": "first"}})
        wait_revision(cluster, namespace, "configprofiles", "first", 1)
        after = wait_for(
            lambda: (now := counts()) != before and now,
            timeout=30,
            what="a replica to count the reconcile",
        )
        # Exactly the higher-priority replica worked; the other stayed paused.
        assert (after[0] > before[0], after[1] > before[1]) == (a_active, not a_active)

        # The active one stops (a rolling update, a drain): the other takes over.
        if a_active:
            in_process.close()
        else:
            b.stop()
        apply(cluster, namespace, profile("taken-over") | {"metadata": {"name": "second"}})
        wait_revision(cluster, namespace, "configprofiles", "second", 1)
    logs = caplog.text + replica_log.read_text(errors="replace")
    assert "Pausing all operators" not in logs  # what equal priorities would do
    assert forbidden_lines(logs) == []
