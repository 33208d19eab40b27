"""SealedSecrets unsealed into Secrets by the operator, on the real control plane.

Values are sealed here exactly as a user would: with ``kstrata.crypto.seal``
and the public key bundle read from the ConfigMap the operator publishes.
Every test checks what the API server really holds (Secrets, statuses,
events) and that no plaintext value appears anywhere but in the Secret's data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from kstrata.app.sealed_secrets import SealedSecretReconciler
from kstrata.crypto import (
    PublicKeyBundle,
    generate_keypair,
    parse_token,
)
from kstrata.errors import InvalidInputError
from kstrata.kube.api import SEALED_SECRETS, KubeApi, as_payload
from support.cluster import TestCluster
from support.operator import RunningOperator, test_settings
from support.sealed_secrets import (
    BAD_TOKENS,
    apply,
    assert_nowhere_but_in_data,
    canary,
    condition,
    events_about,
    get_sealed,
    operator_for,
    published_bundle,
    read_secret,
    seal_for,
    sealed_secret,
    secret_data,
    secret_exists,
    wait_not_ready,
    wait_ready,
)
from support.waiting import wait_for

GROUP, VERSION, PLURAL = "kstrata.dev", "v1alpha1", "sealedsecrets"
pytestmark = pytest.mark.usefixtures("kstrata_crds")


# --- helpers -------------------------------------------------------------


@pytest.fixture
def operator(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> Iterator[RunningOperator]:
    with operator_for(cluster, namespace, keys_namespace) as running:
        yield running


# --- the happy path -------------------------------------------------------


def test_round_trip_from_the_published_bundle(
    cluster: TestCluster,
    namespace: str,
    keys_namespace: str,
    operator: RunningOperator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bundle = published_bundle(cluster, keys_namespace)
    password, api_key = canary("password"), canary("api-key")

    def seal_item(value: bytes, item: str) -> str:
        return seal_for(bundle, value, namespace=namespace, name="db", item=item)

    apply(
        cluster,
        namespace,
        sealed_secret(
            "db",
            {
                "encryptedData": {
                    "password": seal_item(password, "password"),
                    "api-key": seal_item(api_key, "api-key"),
                    "empty": seal_item(b"", "empty"),
                },
                "template": {"labels": {"team": "a"}, "annotations": {"note": "hello"}},
            },
        ),
    )
    body = wait_ready(cluster, namespace, "db", revision=1)
    assert secret_data(cluster, namespace, "db") == {
        "password": password,
        "api-key": api_key,
        "empty": b"",
    }
    secret = read_secret(cluster, namespace, "db")
    assert secret.type == "Opaque"
    assert secret.metadata.labels["team"] == "a"
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "kstrata"
    assert secret.metadata.labels["kstrata.dev/sealed-secret"] == "db"
    assert secret.metadata.labels["kstrata.dev/revision"] == "1"
    assert secret.metadata.annotations["note"] == "hello"
    (owner,) = secret.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("SealedSecret", "db", body["metadata"]["uid"])

    status = body["status"]
    assert status["secretName"] == "db"
    assert (status["environment"], status["environmentSource"]) == ("dev", "default")
    assert status["keyIds"] == [bundle.newest.key_id]
    items = {item["key"]: item for item in status["items"]}
    assert set(items) == {"password", "api-key", "empty"}
    assert all(item["keyId"] == bundle.newest.key_id for item in items.values())
    assert all(item["fingerprint"].startswith("hmac-sha256:") for item in items.values())
    # The first unseal is reported by Ready=True alone (no event per new object).
    assert events_about(cluster, namespace, "db", "Normal") == []

    # Re-sealing the same value is a new revision with the same fingerprint;
    # a new value changes the fingerprint.
    new_password = canary("password-2")
    apply(
        cluster,
        namespace,
        sealed_secret(
            "db",
            {
                "encryptedData": {
                    "password": seal_item(new_password, "password"),
                    "api-key": seal_item(api_key, "api-key"),
                },
                "template": {"labels": {"team": "a"}, "annotations": {"note": "hello"}},
            },
        ),
    )
    body = wait_ready(cluster, namespace, "db", revision=2)
    assert secret_data(cluster, namespace, "db") == {"password": new_password, "api-key": api_key}
    after = {item["key"]: item["fingerprint"] for item in body["status"]["items"]}
    assert after["api-key"] == items["api-key"]["fingerprint"]
    assert after["password"] != items["password"]["fingerprint"]
    assert read_secret(cluster, namespace, "db").metadata.labels["kstrata.dev/revision"] == "2"
    # A change of what it serves is: one Normal event naming the new revision.
    (changed,) = wait_for(
        lambda: events_about(cluster, namespace, "db", "Normal"), timeout=30, what="the event"
    )
    assert changed.reason == "Unsealed"
    assert "revision 2" in changed.message

    # A deleted Secret is written again at once, at the same revision: its
    # sealed data did not change, so neither does the revision.
    deleted_uid = read_secret(cluster, namespace, "db").metadata.uid
    cluster.core.delete_namespaced_secret("db", namespace)
    wait_for(
        lambda: (
            secret_exists(cluster, namespace, "db")
            and read_secret(cluster, namespace, "db").metadata.uid != deleted_uid
        ),
        timeout=30,
        what="the deleted Secret written again",
    )
    assert secret_data(cluster, namespace, "db") == {"password": new_password, "api-key": api_key}
    assert read_secret(cluster, namespace, "db").metadata.labels["kstrata.dev/revision"] == "2"
    assert get_sealed(cluster, namespace, "db")["status"]["revision"] == 2

    # Secrets are followed, never handled: kopf left nothing of its own on them.
    secret = read_secret(cluster, namespace, "db")
    assert not secret.metadata.finalizers
    assert not any("kopf" in key for key in secret.metadata.annotations or {})

    assert "unsealed 2 item(s) into Secret db at revision 2" in caplog.text  # logs are captured
    assert_nowhere_but_in_data(cluster, namespace, [password, api_key, new_password], caplog.text)


def test_environment_overrides_replace_base_items(
    cluster: TestCluster, namespace: str, keys_namespace: str, operator: RunningOperator
) -> None:
    bundle = published_bundle(cluster, keys_namespace)

    def spec_for(name: str) -> dict[str, Any]:
        def token(value: bytes, item: str) -> str:
            return seal_for(bundle, value, namespace=namespace, name=name, item=item)

        return {
            "encryptedData": {
                "user": token(b"app", "user"),
                "password": token(b"base", "password"),
            },
            "environments": {
                "prod": {"encryptedData": {"password": token(b"prod-pw", "password")}},
                "staging": {"encryptedData": {"extra": token(b"stg", "extra")}},
            },
        }

    apply(cluster, namespace, sealed_secret("creds", spec_for("creds")))
    wait_ready(cluster, namespace, "creds", revision=1)
    assert secret_data(cluster, namespace, "creds") == {"user": b"app", "password": b"base"}

    pinned = {**spec_for("creds"), "environment": "prod"}
    apply(cluster, namespace, sealed_secret("creds", pinned))
    body = wait_ready(cluster, namespace, "creds", revision=2)
    assert (body["status"]["environment"], body["status"]["environmentSource"]) == ("prod", "spec")
    assert secret_data(cluster, namespace, "creds") == {"user": b"app", "password": b"prod-pw"}

    # Without spec.environment the namespace label decides, and relabelling re-unseals.
    apply(cluster, namespace, sealed_secret("follower", spec_for("follower")))
    wait_ready(cluster, namespace, "follower", revision=1)
    cluster.kubectl("label", "ns", namespace, "kstrata.dev/environment=staging", "--overwrite")
    body = wait_ready(cluster, namespace, "follower", revision=2)
    assert body["status"]["environmentSource"] == "namespace-label"
    assert secret_data(cluster, namespace, "follower") == {
        "user": b"app",
        "password": b"base",
        "extra": b"stg",
    }


# --- tokens that must not open --------------------------------------------


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_a_token_that_does_not_open_writes_nothing(
    cluster: TestCluster,
    namespace: str,
    keys_namespace: str,
    operator: RunningOperator,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    tamper, reason, named = BAD_TOKENS[case]
    bundle = published_bundle(cluster, keys_namespace)
    user, password = canary("user"), canary("password")
    good_user, good_password = canary("good-user"), canary("good-password")

    # An existing, good Secret stays exactly as it is...
    apply(
        cluster,
        namespace,
        sealed_secret(
            "app",
            {
                "encryptedData": {
                    "user": seal_for(
                        bundle, good_user, namespace=namespace, name="app", item="user"
                    ),
                    "password": seal_for(
                        bundle, good_password, namespace=namespace, name="app", item="password"
                    ),
                }
            },
        ),
    )
    good = wait_ready(cluster, namespace, "app", revision=1)
    before = read_secret(cluster, namespace, "app")

    bad_items = tamper(bundle, namespace, "app", user, password)
    apply(cluster, namespace, sealed_secret("app", {"encryptedData": bad_items}))
    body = wait_not_ready(cluster, namespace, "app", reason)
    after = read_secret(cluster, namespace, "app")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert secret_data(cluster, namespace, "app") == {"user": good_user, "password": good_password}
    # ...the status still describes the Secret that is really there.
    assert body["status"]["revision"] == 1
    assert body["status"]["items"] == good["status"]["items"]

    # ...and a new SealedSecret with the same kind of tokens gets no Secret at all.
    apply(
        cluster,
        namespace,
        sealed_secret(
            "fresh", {"encryptedData": tamper(bundle, namespace, "fresh", user, password)}
        ),
    )
    wait_not_ready(cluster, namespace, "fresh", reason)
    assert not secret_exists(cluster, namespace, "fresh")

    message = condition(body)["message"]
    for item in named:
        assert item in message
    if reason != "MalformedToken":
        for key, token in bad_items.items():
            if key in named:
                assert parse_token(token).key_id in message

    warnings = wait_for(
        lambda: events_about(cluster, namespace, "app", "Warning"), what="a Warning event"
    )
    assert len(warnings) == 1, "one Warning event per failure, not one per retry"
    assert warnings[0].reason == reason
    assert all(item in warnings[0].message for item in named)
    assert "not unsealed" in caplog.text  # the operator's logs are captured...
    assert_nowhere_but_in_data(  # ...and hold no value, like events and status
        cluster, namespace, [user, password, good_user, good_password], caplog.text
    )


def test_type_and_immutability_changes_replace_the_secret(
    cluster: TestCluster, namespace: str, keys_namespace: str, operator: RunningOperator
) -> None:
    bundle = published_bundle(cluster, keys_namespace)

    def spec(value: bytes, template: dict[str, Any]) -> dict[str, Any]:
        token = seal_for(bundle, value, namespace=namespace, name="frozen", item="v")
        return {"encryptedData": {"v": token}, "template": template}

    apply(cluster, namespace, sealed_secret("frozen", spec(b"one", {"immutable": True})))
    wait_ready(cluster, namespace, "frozen", revision=1)
    first = read_secret(cluster, namespace, "frozen")
    assert first.immutable is True

    # Immutable data cannot be updated in place: the operator replaces the Secret.
    apply(cluster, namespace, sealed_secret("frozen", spec(b"two", {"immutable": True})))
    wait_ready(cluster, namespace, "frozen", revision=2)
    second = read_secret(cluster, namespace, "frozen")
    assert second.metadata.uid != first.metadata.uid
    assert (second.immutable, secret_data(cluster, namespace, "frozen")) == (True, {"v": b"two"})

    # Nor can a Secret's type change in place.
    apply(cluster, namespace, sealed_secret("frozen", spec(b"three", {"type": "example.com/kind"})))
    wait_ready(cluster, namespace, "frozen", revision=3)
    third = read_secret(cluster, namespace, "frozen")
    assert (third.type, third.immutable) == ("example.com/kind", None)
    assert secret_data(cluster, namespace, "frozen") == {"v": b"three"}

    # A replacement the API server refuses (a TLS Secret needs tls.crt and tls.key)
    # puts the previous Secret back, and the reason quotes nothing of the server's.
    value = canary("tls")
    apply(cluster, namespace, sealed_secret("frozen", spec(value, {"type": "kubernetes.io/tls"})))
    body = wait_not_ready(cluster, namespace, "frozen", "SecretRejected")
    assert body["status"]["revision"] == 3
    restored = read_secret(cluster, namespace, "frozen")
    assert restored.type == "example.com/kind"
    assert secret_data(cluster, namespace, "frozen") == {"v": b"three"}
    assert restored.metadata.labels["kstrata.dev/revision"] == "3"
    assert condition(body)["message"].startswith("the API server rejected the Secret")
    assert_nowhere_but_in_data(cluster, namespace, [value])


# --- what the operator refuses to write -----------------------------------


def test_an_existing_secret_that_is_not_ours_is_untouched_until_adopted(
    cluster: TestCluster, namespace: str, keys_namespace: str, operator: RunningOperator
) -> None:
    cluster.kubectl("create", "secret", "generic", "legacy", "-n", namespace, "--from-literal=a=1")
    before = read_secret(cluster, namespace, "legacy")
    bundle = published_bundle(cluster, keys_namespace)
    value = canary("legacy")
    token = seal_for(bundle, value, namespace=namespace, name="legacy", item="a")
    apply(cluster, namespace, sealed_secret("legacy", {"encryptedData": {"a": token}}))
    body = wait_not_ready(cluster, namespace, "legacy", "NotOwned")
    assert "app.kubernetes.io/managed-by=kstrata" in condition(body)["message"]
    after = read_secret(cluster, namespace, "legacy")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert secret_data(cluster, namespace, "legacy") == {"a": b"1"}
    # Created without reading first, met the Secret: no revision for content never served.
    revisions = cluster.kubectl("get", "controllerrevisions", "-n", namespace, "-o", "name")
    assert revisions.stdout.strip() == ""

    # The annotation that adopts a ConfigMap does not adopt a Secret (the operator's
    # Secret watch selects by label): a spec change makes it look again, and refuse.
    cluster.kubectl("annotate", "secret", "legacy", "-n", namespace, "kstrata.dev/adopt=true")
    patch = {"spec": {"template": {"annotations": {"look": "again"}}}}
    cluster.kubectl(
        "patch", "sealedsecret", "legacy", "-n", namespace, "--type=merge", "-p", json.dumps(patch)
    )
    body = wait_not_ready(cluster, namespace, "legacy", "NotOwned")
    wait_for(
        lambda: (
            cluster.kstrata_object("sealedsecrets", namespace, "legacy")["status"].get(
                "observedGeneration"
            )
            == 2
        ),
        what="the refusal of the annotated Secret",
    )
    assert secret_data(cluster, namespace, "legacy") == {"a": b"1"}

    # The label adopts it, at once (the metadata watch reports the relabelling).
    cluster.kubectl(
        "label", "secret", "legacy", "-n", namespace, "app.kubernetes.io/managed-by=kstrata"
    )
    wait_ready(cluster, namespace, "legacy", revision=1)
    assert secret_data(cluster, namespace, "legacy") == {"a": value}
    assert read_secret(cluster, namespace, "legacy").metadata.owner_references[0].name == "legacy"


def test_credential_secret_types_are_refused(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:
    # The CRD's CEL rule refuses them at the API server...
    rejected = cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(
            sealed_secret(
                "sa",
                {"encryptedData": {}, "template": {"type": "kubernetes.io/service-account-token"}},
            )
        ),
        check=False,
    )
    assert rejected.returncode != 0
    assert "cannot be sealed" in rejected.stderr

    with operator_for(cluster, namespace, keys_namespace):
        bundle = published_bundle(cluster, keys_namespace)
        # ...an existing token Secret, even one asking to be adopted, is never overwritten...
        cluster.kubectl(
            "create",
            "secret",
            "generic",
            "boot",
            "-n",
            namespace,
            "--type=bootstrap.kubernetes.io/token",
            "--from-literal=token-id=abcdef",
        )
        cluster.kubectl(
            "label", "secret", "boot", "-n", namespace, "app.kubernetes.io/managed-by=kstrata"
        )
        before = read_secret(cluster, namespace, "boot")
        token = seal_for(bundle, canary("boot"), namespace=namespace, name="boot", item="token-id")
        apply(cluster, namespace, sealed_secret("boot", {"encryptedData": {"token-id": token}}))
        wait_not_ready(cluster, namespace, "boot", "ForbiddenSecretType")
        after = read_secret(cluster, namespace, "boot")
        assert after.metadata.resource_version == before.metadata.resource_version

        apply(cluster, namespace, sealed_secret("plain", {"encryptedData": {}}))
        wait_ready(cluster, namespace, "plain", revision=1)

    # ...and a spec that slipped past the CEL rule (an older CRD) is refused by the
    # operator itself, before any key is used and without writing a Secret.
    stored = get_sealed(cluster, namespace, "plain")
    bypassed = {
        **stored,
        "spec": {**stored["spec"], "template": {"type": "bootstrap.kubernetes.io/token"}},
    }
    api = KubeApi(cluster.connection)
    reconciler = SealedSecretReconciler(api, test_settings(operator_namespace=keys_namespace))
    cluster.core.delete_namespaced_secret("plain", namespace)
    with pytest.raises(InvalidInputError) as refused:
        reconciler.reconcile(as_payload(SEALED_SECRETS, bypassed))
    assert refused.value.reason == "ForbiddenSecretType"
    assert not secret_exists(cluster, namespace, "plain")
    recorded = condition(get_sealed(cluster, namespace, "plain"))
    assert recorded is not None
    assert recorded["reason"] == "ForbiddenSecretType"


def test_restarting_the_operator_writes_nothing(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:
    with operator_for(cluster, namespace, keys_namespace):
        bundle = published_bundle(cluster, keys_namespace)
        for name in ("one", "two"):
            token = seal_for(bundle, canary(name), namespace=namespace, name=name, item="v")
            apply(cluster, namespace, sealed_secret(name, {"encryptedData": {"v": token}}))
        wrong = PublicKeyBundle.of([generate_keypair(created=bundle.newest.created)])
        token = seal_for(wrong, b"x", namespace=namespace, name="broken", item="v")
        apply(cluster, namespace, sealed_secret("broken", {"encryptedData": {"v": token}}))
        wait_ready(cluster, namespace, "one", revision=1)
        wait_ready(cluster, namespace, "two", revision=1)
        wait_not_ready(cluster, namespace, "broken", "SealingKeyMissing")

    def versions() -> dict[str, str]:
        objects = {
            f"kss/{s['metadata']['name']}": s["metadata"]["resourceVersion"]
            for s in cluster.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL
            )["items"]
        }
        for ns in (namespace, keys_namespace):
            for secret in cluster.core.list_namespaced_secret(ns).items:
                objects[f"secret/{ns}/{secret.metadata.name}"] = secret.metadata.resource_version
            for cm in cluster.core.list_namespaced_config_map(ns).items:
                objects[f"cm/{ns}/{cm.metadata.name}"] = cm.metadata.resource_version
            objects[f"events/{ns}"] = str(len(cluster.core.list_namespaced_event(ns).items))
        return objects

    before = versions()
    # Metrics live in this process's registry: count from before the restart, so
    # resumes that finish before the first scrape are counted too.
    baseline = _reconciles()
    with operator_for(cluster, namespace, keys_namespace):
        wait_for(
            lambda: _reconciles() >= baseline + 3,
            timeout=30,
            what="all three SealedSecrets to be resumed",
        )
    assert versions() == before


def _reconciles() -> float:
    return sum(
        REGISTRY.get_sample_value("kstrata_reconcile_total", {"kind": "SealedSecret", "result": r})
        or 0.0
        for r in ("ok", "invalid", "error")
    )
