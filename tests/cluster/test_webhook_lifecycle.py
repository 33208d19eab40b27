"""A foreground operator's admission webhook cannot outlive it by accident (issue 19).

* A foreground operator (``--webhook-url``) removes the
  ValidatingWebhookConfiguration it registered when it stops.
* One left behind anyway (a crashed operator) makes the API server fail
  every write; the CLI passes the API server's own message through, names the
  configuration and the command that removes it, instead of "API server
  unavailable".
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client

import controlplane
from kstrata.cli.main import main
from support.cluster import TestCluster
from support.operator import running_operator
from support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("kstrata_crds")


def kstrata(cluster: TestCluster, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([*argv, "--kubeconfig", str(cluster.kubeconfig)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def configurations(cluster: TestCluster) -> client.AdmissionregistrationV1Api:
    return client.AdmissionregistrationV1Api(cluster.api)


@contextlib.contextmanager
def removed_afterwards(cluster: TestCluster, name: str) -> Iterator[None]:
    try:
        yield
    finally:
        if cluster.exists(configurations(cluster).read_validating_webhook_configuration, name):
            configurations(cluster).delete_validating_webhook_configuration(name)


def test_a_foreground_operator_removes_its_webhook_configuration_when_it_stops(
    cluster: TestCluster, namespace: str
) -> None:
    name = f"kstrata-fg-{namespace}"
    port = controlplane.free_port()
    read = configurations(cluster).read_validating_webhook_configuration
    with (
        removed_afterwards(cluster, name),
        running_operator(
            cluster,
            namespaces=(namespace,),
            webhook_address=f"127.0.0.1:{port}",
            webhook_url=f"https://127.0.0.1:{port}",
            webhook_configuration=name,
        ),
    ):
        wait_for(lambda: cluster.exists(read, name), timeout=30, what="the webhook configuration")
    # Stopped: the cleanup ran before the runner returned.
    assert not cluster.exists(read, name)


def test_a_shipped_webhook_configuration_is_updated_but_never_removed(
    cluster: TestCluster, namespace: str
) -> None:
    """The object manifests/ ships belongs to the cluster: a foreground operator only updates it."""
    name = f"kstrata-shipped-{namespace}"
    shipped = yaml.safe_load(
        (controlplane.REPO_ROOT / "manifests" / "base" / "webhook.yaml").read_text()
    )
    shipped["metadata"]["name"] = name
    port = controlplane.free_port()
    read = configurations(cluster).read_validating_webhook_configuration
    with removed_afterwards(cluster, name):
        configurations(cluster).create_validating_webhook_configuration(shipped)
        with running_operator(
            cluster,
            namespaces=(namespace,),
            webhook_address=f"127.0.0.1:{port}",
            webhook_url=f"https://127.0.0.1:{port}",
            webhook_configuration=name,
        ):
            wait_for(
                lambda: (read(name).webhooks[0].client_config.url or "").startswith(
                    f"https://127.0.0.1:{port}/"
                ),
                timeout=30,
                what="the operator to point the shipped configuration at itself",
            )
        assert cluster.exists(read, name)
        assert "kstrata.dev/registered-by" not in (read(name).metadata.annotations or {})


def test_a_stale_webhook_is_named_with_the_command_that_removes_it(
    cluster: TestCluster, namespace: str
) -> None:
    body = {
        "apiVersion": "kstrata.dev/v1alpha1",
        "kind": "ConfigProfile",
        "metadata": {"name": "payments"},
        "spec": {"base": {"replicas": 8}},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    name = f"kstrata-stale-{namespace}"
    # What a crashed foreground operator leaves: nothing listens at the URL.
    stale = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "configprofiles.kstrata.dev",
                "clientConfig": {"url": f"https://127.0.0.1:{controlplane.free_port()}/v"},
                "rules": [
                    {
                        "apiGroups": ["kstrata.dev"],
                        "apiVersions": ["v1alpha1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["configprofiles"],
                    }
                ],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 2,
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            }
        ],
    }
    with removed_afterwards(cluster, name):
        cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(stale))

        def refused() -> str | None:
            # The API server picks up a new configuration asynchronously.
            code, _, err = kstrata(cluster, "set", "payments", "replicas=3", "-n", namespace)
            return err if code == 3 else None

        err = wait_for(refused, timeout=30, what="the stale webhook to refuse writes")
        assert "API server unavailable" not in err
        assert (
            f"update ConfigProfile {namespace}/payments: the API server failed the request: " in err
        )
        assert 'failed calling webhook "configprofiles.kstrata.dev"' in err  # its own words
        assert f"ValidatingWebhookConfiguration {name} for every write" in err
        assert f"remove it: kubectl delete validatingwebhookconfiguration {name};" in err
