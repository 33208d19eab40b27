"""SealedSecrets and sealing keys on the real control plane: the helpers tests share.

Building, sealing, applying and waiting on SealedSecrets, reading what the
operator produced, and tokens that must not open.  Used by the SealedSecret,
sealing-key, leak-scan, template, import and Secret-watch tests.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from kstrata.crypto import PublicKeyBundle, Scope, SealingContext, generate_keypair, seal
from kstrata.domain.crds import GROUP, VERSION
from support.cluster import TestCluster
from support.operator import RunningOperator, running_operator
from support.waiting import wait_for

PLURAL = "sealedsecrets"
PUBLIC_KEYS = "kstrata-sealing-public-keys"
KEY_SECRET = "kstrata-sealing-keys"


def canary(label: str) -> bytes:
    """A value that must never show up outside the Secret's data."""
    return f"canary-{label}-{uuid.uuid4().hex[:12]}".encode()


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
    return cluster.kstrata_object(PLURAL, namespace, name)


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


def bundle_text(cluster: TestCluster, keys_namespace: str) -> str:
    text: str = cluster.core.read_namespaced_config_map(PUBLIC_KEYS, keys_namespace).data[
        "keys.json"
    ]
    return text


def wait_bundle(cluster: TestCluster, keys_namespace: str, *, keys: int) -> PublicKeyBundle:
    def read() -> PublicKeyBundle | None:
        bundle = PublicKeyBundle.parse(bundle_text(cluster, keys_namespace))
        return bundle if len(bundle) == keys else None

    return wait_for(read, timeout=30, what=f"{keys} published key(s)")


def metric(operator: RunningOperator, name: str) -> float:
    for line in operator.metrics().splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.split()[-1])
    raise AssertionError(f"metric {name} not exported")
