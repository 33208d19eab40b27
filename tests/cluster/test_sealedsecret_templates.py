"""``spec.template.data`` on the real control plane: rendered into the Secret, nowhere else.

A SealedSecret with a user, a password and a connection-string template: the
Secret gets the combined value; a changed item or template re-renders and
rolls a following workload once; a bad template is refused by the admission
webhook with a message naming the template and item keys, and (webhook
bypassed) leaves the last good Secret with a condition and an event saying
why.  Every flow runs with DEBUG logging and ends in the canary scan of
``support.leaks``: the items and the rendered value appear only in the
produced Secret's data.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

import controlplane
from kstrata.app.admission import webhook_configuration
from kstrata.crypto import PublicKeyBundle
from kstrata.payloads import WebhookClientConfig
from support.cluster import TestCluster
from support.leaks import Canary, LogCapture, captured_logs, cluster_texts, report, scan
from support.operator import operator_with_webhook, running_operator
from support.reloads import (
    create_deployment,
    replica_sets,
    template_annotation,
)
from support.sealed_secrets import (
    events_about,
    get_sealed,
    published_bundle,
    seal_for,
    sealed_secret,
    secret_data,
    wait_not_ready,
    wait_ready,
)
from support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("kstrata_crds")

URL = 'postgres://{{ .user }}:{{ index . "password" }}@db:5432/app'


@pytest.fixture
def operator_log() -> Iterator[LogCapture]:
    """Every log record of this process at DEBUG (operator, kopf, clients), for the scan."""
    with captured_logs("kopf", "kstrata", "kubernetes", "urllib3", "aiohttp") as capture:
        yield capture


def spec(
    bundle: PublicKeyBundle, namespace: str, values: dict[str, bytes], templates: dict[str, Any]
) -> dict[str, Any]:
    return {
        "encryptedData": {
            item: seal_for(bundle, value, namespace=namespace, name="db", item=item)
            for item, value in values.items()
        },
        "template": {"data": templates},
    }


def kubectl_apply(
    cluster: TestCluster, namespace: str, body: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=False
    )


def same_data(found: dict[str, bytes], expected: dict[str, bytes]) -> None:
    """Compare Secret data without ever printing a value (pytest would show both sides)."""
    if found != expected:
        differing = sorted(
            k for k in found.keys() | expected.keys() if found.get(k) != expected.get(k)
        )
        pytest.fail(f"the Secret's data differs in item(s) {differing}")


def assert_no_leak(
    cluster: TestCluster,
    namespaces: list[str],
    log: LogCapture,
    canaries: list[Canary],
    *extra: str,
) -> None:
    dump = cluster_texts(cluster, namespaces)
    # Positive control: the scan does find them where they belong.
    assert scan(dump.produced_data, canaries), "the scan found nothing in the Secret's data"
    texts = {**dump.texts, **log.texts()}
    texts.update({f"output #{i}": text for i, text in enumerate(extra)})
    hits = scan(texts, canaries)
    assert not hits, report(hits)


def test_the_combination_is_rendered_re_rendered_and_rolls_once(
    cluster: TestCluster, namespace: str, keys_namespace: str, operator_log: LogCapture
) -> None:
    user, first, second = Canary.new("user"), Canary.new("password"), Canary.new("password2")
    with running_operator(
        cluster, namespaces=(namespace, keys_namespace), operator_namespace=keys_namespace
    ):
        bundle = published_bundle(cluster, keys_namespace)
        templates: dict[str, Any] = {"DATABASE_URL": URL, "MODE": "rw"}
        body = sealed_secret(
            "db", spec(bundle, namespace, {"user": user.value, "password": first.value}, templates)
        )
        applied = kubectl_apply(cluster, namespace, body)
        assert applied.returncode == 0, applied.stderr
        ready = wait_ready(cluster, namespace, "db", revision=1)
        same_data(
            secret_data(cluster, namespace, "db"),
            {
                "DATABASE_URL": b"postgres://" + user.value + b":" + first.value + b"@db:5432/app",
                "MODE": b"rw",
                "password": first.value,
                "user": user.value,
            },
        )
        # The status speaks for the sealed items only (keyed fingerprints).
        assert sorted(item["key"] for item in ready["status"]["items"]) == ["password", "user"]

        create_deployment(cluster, namespace, "web", {"kstrata.dev/reload": "db"})
        wait_for(
            lambda: (
                template_annotation(
                    client.AppsV1Api(cluster.api).read_namespaced_deployment("web", namespace)
                )
                is None
                and replica_sets(cluster, namespace, "web") == 1
            ),
            timeout=30,
            what="web's first ReplicaSet",
        )

        def rolled_to(revision: int, count: int) -> None:
            wait_for(
                lambda: (
                    template_annotation(
                        client.AppsV1Api(cluster.api).read_namespaced_deployment("web", namespace)
                    )
                    == f"db={revision}"
                    and replica_sets(cluster, namespace, "web") == count
                ),
                timeout=30,
                what=f"web rolled once to db={revision}",
            )

        # A changed item: a new revision, the value re-rendered, one rollout.
        body = sealed_secret(
            "db", spec(bundle, namespace, {"user": user.value, "password": second.value}, templates)
        )
        assert kubectl_apply(cluster, namespace, body).returncode == 0
        wait_ready(cluster, namespace, "db", revision=2)
        same_data(
            secret_data(cluster, namespace, "db"),
            {
                "DATABASE_URL": b"postgres://" + user.value + b":" + second.value + b"@db:5432/app",
                "MODE": b"rw",
                "password": second.value,
                "user": user.value,
            },
        )
        rolled_to(2, 2)

        # A changed template alone (same tokens): also a new revision and one rollout.
        body["spec"]["template"]["data"]["DATABASE_URL"] = URL.replace("5432", "6432")
        assert kubectl_apply(cluster, namespace, body).returncode == 0
        wait_ready(cluster, namespace, "db", revision=3)
        url = secret_data(cluster, namespace, "db")["DATABASE_URL"]
        assert url.endswith(b"@db:6432/app"), "the template change was not rendered"
        rolled_to(3, 3)
        # Nothing more rolls: the count stays at three while the operator resyncs.
        assert get_sealed(cluster, namespace, "db")["status"]["revision"] == 3
        assert replica_sets(cluster, namespace, "web") == 3

    assert_no_leak(cluster, [namespace, keys_namespace], operator_log, [user, first, second])


def test_a_bad_template_keeps_the_last_good_secret_and_says_why(
    cluster: TestCluster, namespace: str, keys_namespace: str, operator_log: LogCapture
) -> None:
    """Without the webhook (bypassed): the reconcile refuses, the Secret stays as it was."""
    user, password = Canary.new("user"), Canary.new("password")
    values = {"user": user.value, "password": password.value}
    with running_operator(
        cluster, namespaces=(namespace, keys_namespace), operator_namespace=keys_namespace
    ):
        bundle = published_bundle(cluster, keys_namespace)
        good = sealed_secret("db", spec(bundle, namespace, values, {"DATABASE_URL": URL}))
        assert kubectl_apply(cluster, namespace, good).returncode == 0
        wait_ready(cluster, namespace, "db", revision=1)
        served = secret_data(cluster, namespace, "db")

        missing = URL.replace('index . "password"', ".pasword")
        body = sealed_secret("db", spec(bundle, namespace, values, {"DATABASE_URL": missing}))
        assert kubectl_apply(cluster, namespace, body).returncode == 0
        failed = wait_not_ready(cluster, namespace, "db", "InvalidTemplate")
        message = next(c["message"] for c in failed["status"]["conditions"] if c["type"] == "Ready")
        assert "spec.template.data.DATABASE_URL references item(s) pasword" in message
        same_data(secret_data(cluster, namespace, "db"), served)
        wait_for(
            lambda: any(
                "spec.template.data.DATABASE_URL" in (e.message or "")
                for e in events_about(cluster, namespace, "db", "Warning")
            ),
            timeout=30,
            what="a Warning event naming the template",
        )

        syntax = sealed_secret(
            "db", spec(bundle, namespace, values, {"DATABASE_URL": "{{ .user | upper }}"})
        )
        assert kubectl_apply(cluster, namespace, syntax).returncode == 0
        wait_for(
            lambda: "at character 10" in str(get_sealed(cluster, namespace, "db")["status"]),
            timeout=30,
            what="the syntax error in the status",
        )
        same_data(secret_data(cluster, namespace, "db"), served)

    assert_no_leak(cluster, [namespace, keys_namespace], operator_log, [user, password])


def test_admission_refuses_a_bad_template_naming_its_key(
    cluster: TestCluster, namespace: str, keys_namespace: str, operator_log: LogCapture
) -> None:
    user, password = Canary.new("user"), Canary.new("password")
    values = {"user": user.value, "password": password.value}
    with operator_with_webhook(cluster, namespace, keys_namespace):
        bundle = published_bundle(cluster, keys_namespace)
        missing = URL.replace('index . "password"', ".pasword")
        bad = sealed_secret("db", spec(bundle, namespace, values, {"DATABASE_URL": missing}))

        def refused() -> subprocess.CompletedProcess[str] | None:
            result = kubectl_apply(cluster, namespace, bad)
            # Until its server listens the webhook fails with "connection refused":
            # only kstrata's own denial counts.
            return result if "denied the request" in result.stderr else None

        result = wait_for(refused, timeout=30, what="the webhook to refuse the template")
        assert "spec.template.data.DATABASE_URL references item(s) pasword" in result.stderr
        assert not cluster.exists(
            client.CustomObjectsApi(cluster.api).get_namespaced_custom_object,
            "kstrata.dev",
            "v1alpha1",
            namespace,
            "sealedsecrets",
            "db",
        )

        loop = sealed_secret("db", spec(bundle, namespace, values, {"X": "{{ range . }}{{ end }}"}))
        looped = kubectl_apply(cluster, namespace, loop)
        assert looped.returncode != 0
        assert "spec.template.data.X: at character 4: 'range' is not supported" in looped.stderr

        good = sealed_secret("db", spec(bundle, namespace, values, {"DATABASE_URL": URL}))
        admitted = kubectl_apply(cluster, namespace, good)
        assert admitted.returncode == 0, admitted.stderr
        wait_ready(cluster, namespace, "db", revision=1)

    assert_no_leak(
        cluster,
        [namespace, keys_namespace],
        operator_log,
        [user, password],
        result.stderr,
        looped.stderr,
        admitted.stdout,
    )


def test_only_templated_sealed_secrets_depend_on_the_webhook(
    cluster: TestCluster, namespace: str
) -> None:
    """With the webhook down, a SealedSecret without templates still applies (match condition)."""
    name = f"kstrata-down-{namespace}"
    dead: WebhookClientConfig = {
        "url": f"https://127.0.0.1:{controlplane.free_port()}/validate-configprofile"
    }
    configuration = webhook_configuration(name, dead, (namespace,))
    token = "kss1:" + "A" * 80  # never opened: no operator runs here
    plain = sealed_secret("plain", {"encryptedData": {"user": token}})
    templated = sealed_secret(
        "templated", {"encryptedData": {"user": token}, "template": {"data": {"U": "{{ .user }}"}}}
    )
    api = client.AdmissionregistrationV1Api(cluster.api)
    cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(configuration))
    try:
        # The API server picks up a new configuration asynchronously: wait for the refusal.
        refused = wait_for(
            lambda: (
                result
                if (result := kubectl_apply(cluster, namespace, templated)).returncode != 0
                else None
            ),
            timeout=30,
            what="the unreachable webhook to refuse the templated SealedSecret",
        )
        assert "sealedsecrets.kstrata.dev" in refused.stderr
        applied = kubectl_apply(cluster, namespace, plain)
        assert applied.returncode == 0, applied.stderr
    finally:
        api.delete_validating_webhook_configuration(name)
