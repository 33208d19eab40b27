"""The validating webhook rejects invalid ConfigProfiles at `kubectl apply` time."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client

import controlplane
from support.cluster import TestCluster
from support.hostile import multiplying_schema
from support.operator import RunningOperator, running_operator
from support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("kstrata_crds")

CANARY = "canary-4d1c-not-a-port"
SCHEMA = {
    "type": "object",
    "properties": {"port": {"type": "integer"}},
    "required": ["port"],
}


def manifest(name: str, environments: dict[str, object]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kstrata.dev/v1alpha1",
            "kind": "ConfigProfile",
            "metadata": {"name": name},
            "spec": {"schema": SCHEMA, "base": {"port": 80}, "environments": environments},
        }
    )


def webhook_configuration(namespace: str) -> str:
    return f"kstrata-test-{namespace}"


@contextlib.contextmanager
def operator_with_webhook(cluster: TestCluster, namespace: str) -> Iterator[RunningOperator]:
    port = controlplane.free_port()
    with running_operator(
        cluster,
        namespaces=(namespace,),
        webhook_address=f"127.0.0.1:{port}",
        webhook_url=f"https://127.0.0.1:{port}",
        webhook_configuration=webhook_configuration(namespace),
    ) as running:
        yield running


def delete_webhook_configuration(cluster: TestCluster, namespace: str) -> None:
    """A webhook pointing at a stopped test operator would fail every later apply."""
    admission = client.AdmissionregistrationV1Api(cluster.api)
    configuration = webhook_configuration(namespace)
    if cluster.exists(admission.read_validating_webhook_configuration, configuration):
        admission.delete_validating_webhook_configuration(configuration)


@pytest.fixture
def webhook_operator(cluster: TestCluster, namespace: str) -> Iterator[RunningOperator]:
    try:
        with operator_with_webhook(cluster, namespace) as running:
            yield running
    finally:
        delete_webhook_configuration(cluster, namespace)


def kubectl_apply(
    cluster: TestCluster, namespace: str, text: str
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text, check=False)


def test_invalid_profile_is_rejected_naming_environment_and_path(
    cluster: TestCluster, namespace: str, webhook_operator: RunningOperator
) -> None:
    bad = manifest("api", {"prod": {"port": CANARY}})

    def rejected() -> subprocess.CompletedProcess[str] | None:
        result = kubectl_apply(cluster, namespace, bad)
        # Until its server listens, the webhook fails with "connection refused":
        # only a denial from the running webhook counts.
        return result if "denied the request" in result.stderr else None

    # The apiserver picks up a new webhook configuration asynchronously.
    result = wait_for(rejected, timeout=30, what="the webhook to reject the invalid profile")
    assert "denied the request" in result.stderr
    assert "environment prod: $.port: must be of type integer" in result.stderr
    assert CANARY not in result.stderr
    assert not cluster.exists(
        cluster.custom.get_namespaced_custom_object,
        "kstrata.dev",
        "v1alpha1",
        namespace,
        "configprofiles",
        "api",
    )

    good = kubectl_apply(cluster, namespace, manifest("api", {"prod": {"port": 443}}))
    assert good.returncode == 0, good.stderr


def test_the_webhook_is_scoped_strict_and_quick(
    cluster: TestCluster, namespace: str, webhook_operator: RunningOperator
) -> None:
    admission = client.AdmissionregistrationV1Api(cluster.api)
    name = webhook_configuration(namespace)
    configuration = wait_for(
        lambda: admission.read_validating_webhook_configuration(name),
        timeout=30,
        what="the webhook configuration",
    )
    # ConfigProfiles, and SealedSecrets with templates (test_sealedsecret_templates.py).
    webhooks = configuration.webhooks or []
    assert [[r.resources for r in w.rules] for w in webhooks] == [
        [["configprofiles"]],
        [["sealedsecrets"]],
    ]
    for webhook in webhooks:
        assert webhook.failure_policy == "Fail"
        assert webhook.timeout_seconds == 5
        assert webhook.side_effects == "None"
        assert [rule.api_groups for rule in webhook.rules] == [["kstrata.dev"]]
        assert webhook.namespace_selector.match_expressions[0].values == [namespace]
        assert webhook.client_config.ca_bundle


def test_a_profile_whose_base_is_not_there_yet_is_admitted(
    cluster: TestCluster, namespace: str, webhook_operator: RunningOperator
) -> None:
    """`kubectl apply -f dir/` and GitOps apply in any order: a missing base is not an error yet."""
    admission = client.AdmissionregistrationV1Api(cluster.api)
    wait_for(
        lambda: admission.read_validating_webhook_configuration(webhook_configuration(namespace)),
        timeout=30,
        what="the webhook configuration",
    )
    wait_for(
        lambda: (
            "denied the request"
            in kubectl_apply(cluster, namespace, manifest("probe", {"x": {"port": "no"}})).stderr
        ),
        timeout=30,
        what="the webhook to be serving",
    )
    child = yaml.safe_dump(
        {
            "apiVersion": "kstrata.dev/v1alpha1",
            "kind": "ConfigProfile",
            "metadata": {"name": "child"},
            "spec": {"extends": ["later"], "base": {"port": 1}},
        }
    )
    result = kubectl_apply(cluster, namespace, child)
    assert result.returncode == 0, result.stderr


def test_metadata_only_updates_are_not_reviewed(cluster: TestCluster, namespace: str) -> None:
    """kopf's bookkeeping and kstrata's revision annotations must not wait on the webhook.

    With the webhook unreachable (its operator stopped, failurePolicy Fail), a
    spec change is refused but a label or annotation change still goes
    through: the webhook configuration only matches updates that change the
    spec.
    """
    try:
        with operator_with_webhook(cluster, namespace):
            wait_for(
                lambda: (
                    "denied the request"
                    in kubectl_apply(
                        cluster, namespace, manifest("probe", {"x": {"port": "n"}})
                    ).stderr
                ),
                timeout=30,
                what="the webhook to be serving",
            )
            applied = kubectl_apply(cluster, namespace, manifest("profile", {"prod": {"port": 1}}))
            assert applied.returncode == 0, applied.stderr
            registered = json.loads(
                cluster.kubectl(
                    "get", "validatingwebhookconfiguration",
                    webhook_configuration(namespace), "-o", "json",
                ).stdout
            )  # fmt: skip
        # A stopping operator removes what it registered; one that crashed
        # leaves it behind, pointing at nothing.  Put it back as a crash would.
        for field in ("resourceVersion", "uid", "creationTimestamp", "generation"):
            registered["metadata"].pop(field, None)
        cluster.kubectl("create", "-f", "-", input=json.dumps(registered))

        def spec_change_refused() -> bool:
            result = cluster.kubectl(
                "patch", "configprofile", "profile", "-n", namespace, "--type", "merge",
                "-p", '{"spec": {"base": {"port": 81}}}', check=False,
            )  # fmt: skip
            return result.returncode != 0 and "failed calling webhook" in result.stderr

        wait_for(spec_change_refused, timeout=30, what="spec updates to need the stopped webhook")
        labelled = cluster.kubectl(
            "label", "configprofile", "profile", "-n", namespace, "team=payments", check=False
        )
        assert labelled.returncode == 0, labelled.stderr
        annotated = cluster.kubectl(
            "annotate", "configprofile", "profile", "-n", namespace,
            "kubernetes.io/change-cause=metadata only", check=False,
        )  # fmt: skip
        assert annotated.returncode == 0, annotated.stderr
    finally:
        delete_webhook_configuration(cluster, namespace)


def test_a_multiplying_schema_is_refused_within_the_webhooks_timeout(
    cluster: TestCluster, namespace: str, webhook_operator: RunningOperator
) -> None:
    """The review's time budget ends it with our message, not the API server's timeout."""
    evil = yaml.safe_dump(
        {
            "apiVersion": "kstrata.dev/v1alpha1",
            "kind": "ConfigProfile",
            "metadata": {"name": "evil"},
            "spec": {"schema": multiplying_schema(), "base": {"x": 1}},
        }
    )

    def refused() -> subprocess.CompletedProcess[str] | None:
        result = kubectl_apply(cluster, namespace, evil)
        return result if "denied the request" in result.stderr else None

    result = wait_for(refused, timeout=60, what="the webhook to refuse the multiplying schema")
    assert "took longer than its 2 s budget" in result.stderr
    # The webhook is free again at once: an honest profile is admitted.
    good = kubectl_apply(cluster, namespace, manifest("api", {"prod": {"port": 443}}))
    assert good.returncode == 0, good.stderr
