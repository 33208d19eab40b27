"""SealedSecrets unsealed into Secrets by the operator, on the real control plane.

Values are sealed here exactly as a user would: with ``kstrata.crypto.seal``
and the public key bundle read from the ConfigMap the operator publishes.
Every test checks what the API server really holds (Secrets, statuses,
events) and that no plaintext value appears anywhere but in the Secret's data.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from kstrata.app.sealed_secrets import SealedSecretReconciler
from kstrata.crypto import (
    PublicKeyBundle,
    Scope,
    SealingContext,
    generate_keypair,
    parse_token,
    seal,
)
from kstrata.errors import InvalidInputError
from kstrata.kube.api import KubeApi
from support.cluster import TestCluster
from support.operator import RunningOperator, running_operator, test_settings
from support.waiting import wait_for

GROUP, VERSION, PLURAL = "kstrata.dev", "v1alpha1", "sealedsecrets"
PUBLIC_KEYS = "kstrata-sealing-public-keys"

pytestmark = pytest.mark.usefixtures("kstrata_crds")


# --- helpers -------------------------------------------------------------


def canary(label: str) -> bytes:
    """A value that must never show up outside the Secret's data."""
    return f"canary-{label}-{uuid.uuid4().hex[:12]}".encode()


@pytest.fixture
def keys_namespace(cluster: TestCluster) -> Iterator[str]:
    """Where the operator under test keeps its keys (its operator namespace)."""
    with cluster.temporary_namespace(prefix="keys") as name:
        yield name


@contextlib.contextmanager
def operator_for(
    cluster: TestCluster, namespace: str, keys_namespace: str, **overrides: Any
) -> Iterator[RunningOperator]:
    with running_operator(
        cluster,
        namespaces=(namespace, keys_namespace),
        operator_namespace=keys_namespace,
        **overrides,
    ) as running:
        yield running


@pytest.fixture
def operator(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> Iterator[RunningOperator]:
    with operator_for(cluster, namespace, keys_namespace) as running:
        yield running


def published_bundle(cluster: TestCluster, keys_namespace: str) -> PublicKeyBundle:
    def read() -> PublicKeyBundle | None:
        cm = cluster.core.read_namespaced_config_map(PUBLIC_KEYS, keys_namespace)
        return PublicKeyBundle.parse(cm.data["keys.json"])

    return wait_for(read, timeout=30, what="the published public keys")


def seal_for(
    bundle: PublicKeyBundle,
    value: bytes,
    *,
    namespace: str,
    name: str,
    item: str,
    scope: str = "strict",
) -> str:
    context = SealingContext.bind(Scope(scope), item=item, namespace=namespace, name=name)
    return seal(value, bundle.newest, context)


def sealed_secret(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SealedSecret",
        "metadata": {"name": name},
        "spec": spec,
    }


def apply(cluster: TestCluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))


def get_sealed(cluster: TestCluster, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return found


def condition(body: dict[str, Any]) -> dict[str, Any] | None:
    for item in (body.get("status") or {}).get("conditions") or []:
        if item.get("type") == "Ready":
            return dict(item)
    return None


def wait_ready(cluster: TestCluster, namespace: str, name: str, *, revision: int) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        body = get_sealed(cluster, namespace, name)
        ready_condition = condition(body)
        if (
            ready_condition
            and ready_condition["status"] == "True"
            and body["status"].get("revision") == revision
            and ready_condition.get("observedGeneration") == body["metadata"]["generation"]
        ):
            return body
        return None

    return wait_for(ready, timeout=30, what=f"{name} Ready at revision {revision}")


def wait_not_ready(cluster: TestCluster, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def failed() -> dict[str, Any] | None:
        body = get_sealed(cluster, namespace, name)
        ready_condition = condition(body)
        if (
            ready_condition
            and (ready_condition["status"], ready_condition["reason"]) == ("False", reason)
            and ready_condition.get("observedGeneration") == body["metadata"]["generation"]
        ):
            return body
        return None

    return wait_for(failed, timeout=30, what=f"{name} Ready=False ({reason})")


def read_secret(cluster: TestCluster, namespace: str, name: str) -> Any:
    return cluster.core.read_namespaced_secret(name, namespace)


def secret_data(cluster: TestCluster, namespace: str, name: str) -> dict[str, bytes]:
    secret = read_secret(cluster, namespace, name)
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def secret_exists(cluster: TestCluster, namespace: str, name: str) -> bool:
    return cluster.exists(cluster.core.read_namespaced_secret, name, namespace)


def events_about(cluster: TestCluster, namespace: str, name: str, type_: str) -> list[Any]:
    return [
        e
        for e in cluster.core.list_namespaced_event(namespace).items
        if e.involved_object.name == name and e.type == type_
    ]


def assert_nowhere_but_in_data(
    cluster: TestCluster, namespace: str, values: list[bytes], *texts: str
) -> None:
    """No value in any event, any SealedSecret (status, annotations), Secret metadata or text."""
    haystack = [e.message or "" for e in cluster.core.list_namespaced_event(namespace).items]
    for item in cluster.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
        "items"
    ]:
        haystack.append(json.dumps(item))
    for secret in cluster.core.list_namespaced_secret(namespace).items:
        haystack.append(json.dumps(secret.metadata.labels or {}))
        haystack.append(json.dumps(secret.metadata.annotations or {}))
    haystack.extend(texts)
    for value in values:
        text = value.decode()
        encoded = base64.b64encode(value).decode()
        for blob in haystack:
            assert text not in blob
            assert encoded not in blob


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


def _flip_last_byte(token: str) -> str:
    body = base64.urlsafe_b64decode(token[5:] + "=" * (-len(token[5:]) % 4))
    altered = body[:-1] + bytes([body[-1] ^ 0x01])
    return "kss1:" + base64.urlsafe_b64encode(altered).decode().rstrip("=")


def _truncate(token: str) -> str:
    body = base64.urlsafe_b64decode(token[5:] + "=" * (-len(token[5:]) % 4))
    return "kss1:" + base64.urlsafe_b64encode(body[:-4]).decode().rstrip("=")


#: name -> (how to build the bad items, expected reason, items the message must name)
Tamper = Callable[[PublicKeyBundle, str, str, bytes, bytes], dict[str, str]]


def _wrong_key(
    bundle: PublicKeyBundle, ns: str, name: str, user: bytes, pw: bytes
) -> dict[str, str]:
    unrelated = PublicKeyBundle.of([generate_keypair(created=bundle.newest.created)])
    return {
        "user": seal_for(bundle, user, namespace=ns, name=name, item="user"),
        "password": seal_for(unrelated, pw, namespace=ns, name=name, item="password"),
    }


def _replayed(
    bundle: PublicKeyBundle, ns: str, name: str, user: bytes, pw: bytes
) -> dict[str, str]:
    # Copied from the same SealedSecret in another namespace.
    return {
        "user": seal_for(bundle, user, namespace="another-ns", name=name, item="user"),
        "password": seal_for(bundle, pw, namespace="another-ns", name=name, item="password"),
    }


def _renamed(bundle: PublicKeyBundle, ns: str, name: str, user: bytes, pw: bytes) -> dict[str, str]:
    return {
        "user": seal_for(bundle, user, namespace=ns, name="other-name", item="user"),
        "password": seal_for(bundle, pw, namespace=ns, name="other-name", item="password"),
    }


def _swapped(bundle: PublicKeyBundle, ns: str, name: str, user: bytes, pw: bytes) -> dict[str, str]:
    return {
        "user": seal_for(bundle, pw, namespace=ns, name=name, item="password"),
        "password": seal_for(bundle, user, namespace=ns, name=name, item="user"),
    }


def _tampered(
    bundle: PublicKeyBundle, ns: str, name: str, user: bytes, pw: bytes
) -> dict[str, str]:
    return {
        "user": seal_for(bundle, user, namespace=ns, name=name, item="user"),
        "password": _flip_last_byte(seal_for(bundle, pw, namespace=ns, name=name, item="password")),
    }


def _truncated(
    bundle: PublicKeyBundle, ns: str, name: str, user: bytes, pw: bytes
) -> dict[str, str]:
    return {
        "user": seal_for(bundle, user, namespace=ns, name=name, item="user"),
        "password": _truncate(seal_for(bundle, pw, namespace=ns, name=name, item="password")),
    }


def _unknown_version(
    bundle: PublicKeyBundle, ns: str, name: str, user: bytes, pw: bytes
) -> dict[str, str]:
    token = seal_for(bundle, pw, namespace=ns, name=name, item="password")
    return {
        "user": seal_for(bundle, user, namespace=ns, name=name, item="user"),
        "password": "kss2:" + token[5:],
    }


BAD_TOKENS: dict[str, tuple[Tamper, str, tuple[str, ...]]] = {
    "wrong-key": (_wrong_key, "SealingKeyMissing", ("password",)),
    "replayed-into-another-namespace": (_replayed, "DecryptionFailed", ("user", "password")),
    "another-name-under-strict-scope": (_renamed, "DecryptionFailed", ("user", "password")),
    "two-items-swapped": (_swapped, "DecryptionFailed", ("user", "password")),
    "bytes-tampered": (_tampered, "DecryptionFailed", ("password",)),
    "token-truncated": (_truncated, "DecryptionFailed", ("password",)),
    "unknown-version": (_unknown_version, "MalformedToken", ("password",)),
}


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

    message = condition(body)["message"]  # type: ignore[index]
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
    assert condition(body)["message"].startswith("the API server rejected the Secret")  # type: ignore[index]
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
    assert "app.kubernetes.io/managed-by=kstrata" in condition(body)["message"]  # type: ignore[index]
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
        reconciler.reconcile(bypassed)
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
