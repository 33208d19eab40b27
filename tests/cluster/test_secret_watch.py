"""The operator receives only the Secrets it manages; foreign ones it follows come as metadata.

Issue 14, item 8: kopf's one watch of Secrets carries the label selector
``app.kubernetes.io/managed-by=kstrata``, so a Secret kstrata neither
manages nor is asked to adopt never reaches a kopf handler, kopf's memory or
a log line.  A foreign Secret a workload reloads on is followed by the
metadata watch (controller.followed_secrets): a metadata-only change rolls
nothing, a data change rolls once.  A foreign Secret in the way of a
SealedSecret is reported by that watch when it is deleted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
import yaml
from kopf.testing import KopfRunner

from kstrata.controller.runner import OperatorContext, assemble, kopf_cli_args
from support.cluster import TestCluster
from support.leaks import Canary, LogCapture, scan
from support.operator import test_settings
from support.sealed_secrets import (
    published_bundle,
    seal_for,
    sealed_secret,
    secret_data,
    wait_not_ready,
    wait_ready,
)
from support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("kstrata_crds")

RECORD = "kstrata.dev/revisions"


@contextlib.contextmanager
def operator_with_probe(
    cluster: TestCluster, seen: list[tuple[str, str]], **overrides: Any
) -> Iterator[KopfRunner]:
    """The in-process operator, plus one more kopf handler on Secrets recording what arrives.

    The probe shares kopf's one Secret watch with the operator's handlers: what
    it never sees, no handler of the operator sees either.
    """
    settings = test_settings(**overrides)
    context = OperatorContext(settings=settings, cluster=cluster.connection)
    registry, operator_settings = assemble(context)

    @kopf.on.event("", "v1", "secrets", id="test_probe", registry=registry)
    async def probe(*, namespace: str | None, name: str, **_: Any) -> None:
        seen.append((namespace or "", name))

    args = [*kopf_cli_args(settings), "--verbose"]
    with KopfRunner(args, registry=registry, settings=operator_settings, timeout=60) as runner:
        wait_for(lambda: context.metrics_bound is not None, timeout=30, what="the operator")
        yield runner


def apply(cluster: TestCluster, namespace: str, *objects: Any) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))


def secret(name: str, value: str, labels: dict[str, str] | None = None) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels or {}},
        "stringData": {"token": value},
    }


def deployment(name: str, reload: str, secret_name: str) -> Any:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"kstrata.dev/reload": reload}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.k8s.io/pause:3.10",
                            "envFrom": [{"secretRef": {"name": secret_name, "optional": True}}],
                        }
                    ]
                },
            },
        },
    }


def replica_sets(cluster: TestCluster, namespace: str, name: str) -> int:
    items = cluster.apps.list_namespaced_replica_set(namespace).items
    return len(
        [
            rs
            for rs in items
            if any(o.kind == "Deployment" and o.name == name for o in rs.metadata.owner_references)
        ]
    )


def record(cluster: TestCluster, namespace: str, name: str) -> str:
    found = cluster.apps.read_namespaced_deployment(name, namespace)
    return str((found.metadata.annotations or {}).get(RECORD) or "")


def test_foreign_secrets_never_reach_kopf_and_followed_ones_roll_on_data_only(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:
    ns = namespace
    bystander = Canary.new("bystander")
    followed = Canary.new("followed")
    changed = Canary.new("followed-changed")
    capture = LogCapture(redacting=[bystander, followed, changed])
    root = logging.getLogger()
    root.addHandler(capture)
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    seen: list[tuple[str, str]] = []
    try:
        apply(cluster, ns, secret("bystander", bystander.text), secret("creds", followed.text))
        apply(cluster, ns, deployment("app", "secret/creds", "creds"))
        settings = {"namespaces": (ns, keys_namespace), "operator_namespace": keys_namespace}
        with operator_with_probe(cluster, seen, **settings):
            wait_for(lambda: "secret/creds=" in record(cluster, ns, "app"), what="first record")
            assert replica_sets(cluster, ns, "app") == 1

            # A metadata-only write of the followed Secret, then a data change:
            # one rollout, for the data change.
            cluster.kubectl("label", "-n", ns, "secret/creds", "touched=yes")
            apply(cluster, ns, secret("creds", changed.text, {"touched": "yes"}))
            wait_for(lambda: replica_sets(cluster, ns, "app") >= 2, what="the rollout")

            # The bystander changes too; then a managed Secret appears.  kopf's
            # stream delivers in order: once the managed one has arrived, the
            # bystander's changes would have, had the selector let them through.
            apply(cluster, ns, secret("bystander", bystander.text + "-2"))
            apply(
                cluster,
                ns,
                secret("managed", "not-secret", {"app.kubernetes.io/managed-by": "kstrata"}),
            )
            wait_for(lambda: (ns, "managed") in seen, what="the managed Secret to reach kopf")
            assert replica_sets(cluster, ns, "app") == 2
    finally:
        root.removeHandler(capture)
        root.setLevel(previous_level)

    names = {name for where, name in seen if where == ns}
    assert names == {"managed"}, names  # neither bystander nor the followed foreign Secret
    # kopf's key Secret events still arrive (it carries the label).
    assert (keys_namespace, "kstrata-sealing-keys") in seen
    hits = scan(capture.texts(), [bystander, followed, changed])
    assert not hits, hits


def test_a_foreign_secret_in_the_way_is_noticed_when_deleted(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:

    ns = namespace
    cluster.kubectl("create", "secret", "generic", "legacy", "-n", ns, "--from-literal=a=1")
    seen: list[tuple[str, str]] = []
    # The periodic safety net is an hour away: only the watch can be this quick.
    settings = {
        "namespaces": (ns, keys_namespace),
        "operator_namespace": keys_namespace,
        "blocked_retry_seconds": 3600.0,
    }
    with operator_with_probe(cluster, seen, **settings):
        bundle = published_bundle(cluster, keys_namespace)
        value = Canary.new("in-the-way")
        token = seal_for(bundle, value.value, namespace=ns, name="legacy", item="a")
        apply(cluster, ns, sealed_secret("legacy", {"encryptedData": {"a": token}}))
        wait_not_ready(cluster, ns, "legacy", "NotOwned")
        cluster.kubectl("delete", "secret", "legacy", "-n", ns)
        wait_ready(cluster, ns, "legacy", revision=1)
        assert secret_data(cluster, ns, "legacy") == {"a": value.value}


def test_an_unlabelled_key_secret_is_labelled_at_start_up(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:
    # A key Secret made before the selector (or restored without its labels)
    # would never reach kopf's Secret watch: start-up labels it.
    settings = {"namespaces": (namespace, keys_namespace), "operator_namespace": keys_namespace}
    seen: list[tuple[str, str]] = []
    with operator_with_probe(cluster, seen, **settings):
        wait_for(lambda: (keys_namespace, "kstrata-sealing-keys") in seen, what="the key Secret")
    cluster.kubectl(
        "label", "secret", "kstrata-sealing-keys", "-n", keys_namespace,
        "app.kubernetes.io/managed-by-", "app.kubernetes.io/component-",
    )  # fmt: skip
    before = cluster.core.read_namespaced_secret("kstrata-sealing-keys", keys_namespace)
    seen.clear()
    with operator_with_probe(cluster, seen, **settings):
        wait_for(lambda: (keys_namespace, "kstrata-sealing-keys") in seen, what="the key")
    after = cluster.core.read_namespaced_secret("kstrata-sealing-keys", keys_namespace)
    assert after.metadata.labels["app.kubernetes.io/managed-by"] == "kstrata"
    assert after.metadata.labels["app.kubernetes.io/component"] == "sealing-keys"
    assert after.data == before.data  # labels only: no key was added or replaced


def test_a_key_secret_restored_without_labels_is_noticed_and_used(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:

    ns = namespace
    seen: list[tuple[str, str]] = []
    settings = {
        "namespaces": (ns, keys_namespace),
        "operator_namespace": keys_namespace,
        "blocked_retry_seconds": 3600.0,  # only the watches can be this quick
    }
    with operator_with_probe(cluster, seen, **settings):
        bundle = published_bundle(cluster, keys_namespace)
        backup = cluster.core.read_namespaced_secret("kstrata-sealing-keys", keys_namespace)
        # Deleted once kopf's watch has it (its deletion is what the operator hears).
        key = (keys_namespace, "kstrata-sealing-keys")
        wait_for(lambda: key in seen, what="the key Secret on kopf's watch")
        cluster.kubectl("delete", "secret", "kstrata-sealing-keys", "-n", keys_namespace)
        value = Canary.new("restored-keys")
        token = seal_for(bundle, value.value, namespace=ns, name="waiting", item="a")
        apply(cluster, ns, sealed_secret("waiting", {"encryptedData": {"a": token}}))
        wait_not_ready(cluster, ns, "waiting", "SealingKeyMissing")
        # Restored without its labels: outside kopf's selection.
        restored = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kstrata-sealing-keys", "namespace": keys_namespace},
            "type": "Opaque",
            "data": backup.data,
        }
        cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(restored))
        wait_ready(cluster, ns, "waiting", revision=1)
        labels = cluster.core.read_namespaced_secret(
            "kstrata-sealing-keys", keys_namespace
        ).metadata.labels
        assert labels["app.kubernetes.io/managed-by"] == "kstrata"
