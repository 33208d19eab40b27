"""Revision history recorded by the operator, on the real control plane.

What is checked here is the contract of issue 5 from the operator's side:
content changes (and only they) make revisions; each revision is one
ControllerRevision owned by the resource, pruned at ``revisionHistoryLimit``;
rolling back (writing an old revision's spec back) restores byte-identical
output as a new revision; concurrent writers never produce duplicate or
missing numbers; large configurations are handled.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from kstrata.app.profiles import ProfileReconciler
from kstrata.app.revisions import RevisionStore
from kstrata.crypto import PublicKeyBundle, Scope, SealingContext, seal
from kstrata.domain.revisions import (
    MAX_SNAPSHOT_BYTES,
    Snapshot,
    decode_history,
    decode_snapshot,
    encode_snapshot,
    encoded_size,
    revision_object_name,
)
from kstrata.errors import ConflictError, SnapshotTooLargeError
from kstrata.kube.api import CONFIG_PROFILES, SEALED_SECRETS, KubeApi, as_payload
from kstrata.payloads import ConfigMap, ConfigProfile
from kstrata.wellknown import (
    CHANGE_CAUSE_ANNOTATION,
    HISTORY_ANNOTATION,
    OWNER_KIND_LABEL,
    OWNER_UID_LABEL,
    REVISION_ANNOTATION,
)
from support.cluster import TestCluster
from support.operator import running_operator, test_settings
from support.waiting import wait_for

GROUP, VERSION = "kstrata.dev", "v1alpha1"
PROFILES, SEALED = "configprofiles", "sealedsecrets"

pytestmark = pytest.mark.usefixtures("kstrata_crds")


# --- helpers ---------------------------------------------------------------


def profile(name: str, spec: dict[str, Any], cause: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if cause is not None:
        metadata["annotations"] = {CHANGE_CAUSE_ANNOTATION: cause}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigProfile",
        "metadata": metadata,
        "spec": spec,
    }


def apply(cluster: TestCluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))


def get(cluster: TestCluster, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return cluster.kstrata_object(plural, namespace, name)


def wait_ready(
    cluster: TestCluster, namespace: str, name: str, *, revision: int, plural: str = PROFILES
) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        body = get(cluster, namespace, plural, name)
        status = body.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        if (
            conditions.get("Ready", {}).get("status") == "True"
            and status.get("revision") == revision
            and status.get("observedGeneration") == body["metadata"]["generation"]
            and (body["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION)
            == str(revision)
        ):
            return body
        return None

    return wait_for(ready, timeout=60, what=f"{name} Ready at revision {revision}")


def revisions(cluster: TestCluster, namespace: str, owner: Mapping[str, Any]) -> dict[int, Any]:
    """The owner's ControllerRevisions by number, read with the plain client."""
    selector = f"{OWNER_UID_LABEL}={owner['metadata']['uid']}"
    found = cluster.apps.list_namespaced_controller_revision(namespace, label_selector=selector)
    by_number: dict[int, Any] = {}
    for item in found.items:
        assert item.revision not in by_number, f"two ControllerRevisions for {item.revision}"
        by_number[item.revision] = item
    return by_number


def snapshot_of(item: Any) -> Snapshot:
    return decode_snapshot(item.data, item.revision)


def config_map_data(cluster: TestCluster, namespace: str, name: str) -> dict[str, str]:
    return dict(cluster.core.read_namespaced_config_map(name, namespace).data or {})


def change(
    cluster: TestCluster, namespace: str, name: str, spec: dict[str, Any], **kw: Any
) -> None:
    apply(cluster, namespace, profile(name, spec, **kw))


def reconciles(kind: str) -> float:
    return sum(
        REGISTRY.get_sample_value("kstrata_reconcile_total", {"kind": kind, "result": r}) or 0.0
        for r in ("ok", "invalid", "error")
    )


# --- ConfigProfiles ----------------------------------------------------------


def test_content_changes_make_revisions_and_nothing_else_does(
    cluster: TestCluster, namespace: str
) -> None:
    with running_operator(cluster, namespaces=(namespace,)):
        change(cluster, namespace, "web", {"base": {"port": 1}}, cause="initial import")
        body = wait_ready(cluster, namespace, "web", revision=1)
        for port in (2, 3, 4):
            change(cluster, namespace, "web", {"base": {"port": port}}, cause=f"set port={port}")
            body = wait_ready(cluster, namespace, "web", revision=port)

        # Metadata-only edits: no new generation, no new revision.
        cluster.kubectl("annotate", "-n", namespace, "configprofile/web", "team=payments")
        cluster.kubectl("label", "-n", namespace, "configprofile/web", "tier=gold")
        # A spec change that renders the same output: reconciled, but no revision.
        change(
            cluster,
            namespace,
            "web",
            {"base": {"port": 4}, "revisionHistoryLimit": 20},
            cause="set port=4",
        )
        body = wait_ready(cluster, namespace, "web", revision=4)
        # The next content change is 5: nothing in between took a number.  The
        # change-cause was not updated with it, so it is not recorded again.
        change(
            cluster,
            namespace,
            "web",
            {"base": {"port": 5}, "revisionHistoryLimit": 20},
            cause="set port=4",
        )
        body = wait_ready(cluster, namespace, "web", revision=5)

    stored = revisions(cluster, namespace, body)
    assert sorted(stored) == [1, 2, 3, 4, 5]
    for number, item in stored.items():
        assert item.metadata.name == revision_object_name("ConfigProfile", "web", number)
        assert item.metadata.labels[OWNER_KIND_LABEL] == "ConfigProfile"
        assert item.metadata.labels["app.kubernetes.io/managed-by"] == "kstrata"
        (ref,) = item.metadata.owner_references
        assert (ref.kind, ref.uid, ref.controller) == (
            "ConfigProfile",
            body["metadata"]["uid"],
            True,
        )
        snapshot = snapshot_of(item)
        assert snapshot.number == number
        assert yaml.safe_load(snapshot.rendered["config.yaml"]) == {"port": number}
    snapshots = {n: snapshot_of(i) for n, i in stored.items()}
    assert [snapshots[n].change_cause for n in range(1, 6)] == [
        "initial import",
        "set port=2",
        "set port=3",
        "set port=4",
        "",  # the same annotation again is stale, not a cause
    ]
    assert snapshots[5].rendered == config_map_data(cluster, namespace, "web")
    assert snapshots[5].digest == "sha256:" + body["status"]["renderedDigest"]

    annotations = body["metadata"]["annotations"]
    assert annotations[REVISION_ANNOTATION] == "5"
    index = decode_history(annotations[HISTORY_ANNOTATION])
    assert [e.number for e in index] == [1, 2, 3, 4, 5]
    assert [e.change_cause for e in index] == [snapshots[n].change_cause for n in range(1, 6)]
    assert all(e.digest and snapshots[e.number].digest[7:].startswith(e.digest) for e in index)
    assert len(annotations[HISTORY_ANNOTATION]) < 1024

    # The store reads the same history the plain client sees.
    store = RevisionStore(KubeApi(cluster.connection))
    profile = as_payload(CONFIG_PROFILES, body)
    assert [s.number for s in store.history(profile)] == [1, 2, 3, 4, 5]
    assert store.get(profile, 3) == snapshots[3]


def test_restarting_the_operator_writes_nothing_and_records_nothing(
    cluster: TestCluster, namespace: str
) -> None:
    with running_operator(cluster, namespaces=(namespace,)):
        for name in ("a", "b", "c"):
            change(cluster, namespace, name, {"base": {"name": name}})
            change(cluster, namespace, name, {"base": {"name": name, "v": 2}})
        for name in ("a", "b", "c"):
            wait_ready(cluster, namespace, name, revision=2)

    def versions() -> dict[str, str]:
        objects = {
            f"cfp/{p['metadata']['name']}": p["metadata"]["resourceVersion"]
            for p in cluster.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PROFILES
            )["items"]
        }
        for cm in cluster.core.list_namespaced_config_map(namespace).items:
            objects[f"cm/{cm.metadata.name}"] = cm.metadata.resource_version
        for rev in cluster.apps.list_namespaced_controller_revision(namespace).items:
            objects[f"rev/{rev.metadata.name}"] = rev.metadata.resource_version
        return objects

    before = versions()
    assert sum(key.startswith("rev/") for key in before) == 6
    baseline = reconciles("ConfigProfile")
    with running_operator(cluster, namespaces=(namespace,)):
        wait_for(
            lambda: reconciles("ConfigProfile") >= baseline + 3,
            timeout=60,
            what="all three profiles to be resumed",
        )
    assert versions() == before


def test_history_is_pruned_at_the_limit(cluster: TestCluster, namespace: str) -> None:
    with running_operator(cluster, namespaces=(namespace,)):
        for value in range(1, 7):
            change(cluster, namespace, "small", {"base": {"v": value}, "revisionHistoryLimit": 2})
            body = wait_ready(cluster, namespace, "small", revision=value)
        # Current plus two old ones.
        assert sorted(revisions(cluster, namespace, body)) == [4, 5, 6]
        index = decode_history(body["metadata"]["annotations"][HISTORY_ANNOTATION])
        assert [e.number for e in index] == [4, 5, 6]

        # Lowering the limit prunes without a content change.
        change(cluster, namespace, "small", {"base": {"v": 6}, "revisionHistoryLimit": 1})

        def pruned() -> bool:
            return sorted(revisions(cluster, namespace, body)) == [5, 6]

        wait_for(pruned, timeout=60, what="history pruned to the lowered limit")
        body = wait_ready(cluster, namespace, "small", revision=6)
        index = decode_history(body["metadata"]["annotations"][HISTORY_ANNOTATION])
        wait_for(
            lambda: (
                [
                    e.number
                    for e in decode_history(
                        get(cluster, namespace, PROFILES, "small")["metadata"]["annotations"][
                            HISTORY_ANNOTATION
                        ]
                    )
                ]
                == [5, 6]
            ),
            timeout=30,
            what="the index to follow the pruning",
        )


def _rollback(cluster: TestCluster, namespace: str, plural: str, name: str, number: int) -> None:
    """What ``kstrata rollback`` does: the old spec back, with a change cause.

    A PUT with the resourceVersion read, retried on conflict (kopf writes its
    own annotations right after each handler).
    """
    api = KubeApi(cluster.connection)
    resource = CONFIG_PROFILES if plural == PROFILES else SEALED_SECRETS
    for _ in range(20):
        body = api.get(resource, namespace, name)
        snapshot = RevisionStore(api).get(body, number)
        body["spec"] = snapshot.spec
        annotations = body["metadata"].setdefault("annotations", {})
        annotations[CHANGE_CAUSE_ANNOTATION] = f"rollback to {number}"
        try:
            api.replace(resource, namespace, body)
        except ConflictError:
            continue
        return
    raise AssertionError("rollback kept conflicting")


def test_rollback_restores_byte_identical_config_as_a_new_revision(
    cluster: TestCluster, namespace: str
) -> None:
    spec_one = {
        "base": {"db": {"host": "a.internal", "pool": 5}, "flags": ["x", "y"]},
        "environments": {"dev": {"db": {"pool": 1}}},
        "output": {"format": "properties"},
    }
    with running_operator(cluster, namespaces=(namespace,)):
        change(cluster, namespace, "app", spec_one)
        wait_ready(cluster, namespace, "app", revision=1)
        first = config_map_data(cluster, namespace, "app")
        change(cluster, namespace, "app", {**spec_one, "base": {"db": {"host": "b.internal"}}})
        wait_ready(cluster, namespace, "app", revision=2)
        assert config_map_data(cluster, namespace, "app") != first

        _rollback(cluster, namespace, PROFILES, "app", 1)
        body = wait_ready(cluster, namespace, "app", revision=3)
        assert config_map_data(cluster, namespace, "app") == first  # byte-identical
        cm = cluster.core.read_namespaced_config_map("app", namespace)
        assert cm.metadata.labels["kstrata.dev/revision"] == "3"
        snapshot = snapshot_of(revisions(cluster, namespace, body)[3])
        assert snapshot.change_cause == "rollback to 1"
        assert snapshot.rendered == first

        # Rolling back to what is already current is no change at all.
        _rollback(cluster, namespace, PROFILES, "app", 3)
        body = wait_ready(cluster, namespace, "app", revision=3)
    assert sorted(revisions(cluster, namespace, body)) == [1, 2, 3]


def test_concurrent_writers_never_duplicate_or_skip_revisions(
    cluster: TestCluster, namespace: str
) -> None:
    """Writers race on the spec (409s) while a second reconciler races the operator."""
    api = KubeApi(cluster.connection)
    with running_operator(cluster, namespaces=(namespace,)):
        change(cluster, namespace, "hot", {"base": {"n": 0}, "revisionHistoryLimit": 100})
        wait_ready(cluster, namespace, "hot", revision=1)

        conflicts = {"spec": 0, "reconciler": 0}
        done = threading.Event()
        lock = threading.Lock()

        def writer(worker: int) -> None:
            for step in range(6):
                while True:
                    body = api.get(CONFIG_PROFILES, namespace, "hot")
                    body["spec"]["base"] = {"n": worker * 100 + step}
                    try:
                        api.replace(CONFIG_PROFILES, namespace, body)
                        break
                    except ConflictError:
                        with lock:
                            conflicts["spec"] += 1

        def second_reconciler() -> None:
            # Another writer of revisions and ConfigMaps (like a second operator).
            reconciler = ProfileReconciler(api, test_settings(namespaces=(namespace,)))
            while not done.is_set():
                try:
                    reconciler.reconcile(api.get(CONFIG_PROFILES, namespace, "hot"))
                except ConflictError:
                    with lock:
                        conflicts["reconciler"] += 1

        racer = threading.Thread(target=second_reconciler)
        racer.start()
        writers = [threading.Thread(target=writer, args=(w,)) for w in range(1, 4)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()

        def settled() -> dict[str, Any] | None:
            body = get(cluster, namespace, PROFILES, "hot")
            status = body.get("status") or {}
            annotations = body["metadata"].get("annotations") or {}
            if status.get("observedGeneration") != body["metadata"]["generation"]:
                return None
            if annotations.get(REVISION_ANNOTATION) != str(status.get("revision")):
                return None
            return body

        try:
            body = wait_for(settled, timeout=90, what="the profile to settle after the race")
        finally:
            done.set()
            racer.join()
        body = wait_for(settled, timeout=60, what="the profile to settle after the race")

    final = int(body["status"]["revision"])
    stored = revisions(cluster, namespace, body)
    # No number repeats or is skipped: the stored numbers run 1..top without a gap.
    assert sorted(stored) == list(range(1, max(stored) + 1)), "missing revision numbers"
    snapshots = {n: snapshot_of(item) for n, item in stored.items()}
    # A writer that stored N+1 and then lost the ConfigMap write to the other
    # one (its body was stale) leaves N+1 unserved: the documented outcome of
    # two concurrent writers (app/revisions.py, "Deterministic names").  Such
    # a number is above the served one, in no index, and never what is served.
    index = decode_history(body["metadata"]["annotations"][HISTORY_ANNOTATION])
    for number in range(final + 1, max(stored) + 1):
        assert number not in {e.number for e in index}, number
        assert snapshots[number].digest != snapshots[final].digest, number
    # Each number is one content change: consecutive revisions always differ.
    for number in range(2, final + 1):
        assert snapshots[number].digest != snapshots[number - 1].digest, number
    # Every write is accounted for: what is served is the last revision.
    assert snapshots[final].rendered == config_map_data(cluster, namespace, "hot")
    assert snapshots[final].spec["base"] == body["spec"]["base"]
    assert index[-1].number == final
    assert {e.number for e in index} <= set(stored)
    # The race really happened (or the test proves nothing about conflicts).
    assert conflicts["spec"] + conflicts["reconciler"] > 0, conflicts


class Killed(Exception):
    """Stands for the operator being killed between two writes."""


def test_an_interrupted_reconcile_is_finished_not_duplicated(
    cluster: TestCluster, namespace: str
) -> None:
    api = KubeApi(cluster.connection)
    settings = test_settings(namespaces=(namespace,))
    reconciler = ProfileReconciler(api, settings)
    change(cluster, namespace, "crash", {"base": {"v": 1}})
    reconciler.reconcile(api.get(CONFIG_PROFILES, namespace, "crash"))

    def update(value: int) -> ConfigProfile:
        body = api.get(CONFIG_PROFILES, namespace, "crash")
        body["spec"]["base"] = {"v": value}
        return api.replace(CONFIG_PROFILES, namespace, body)

    # Killed after the ControllerRevision, before the ConfigMap.
    class DiesBeforeConfigMap(ProfileReconciler):
        def _write_config_map(self, *args: Any, **kwargs: Any) -> tuple[bool, ConfigMap]:
            raise Killed

    with pytest.raises(Killed):
        DiesBeforeConfigMap(api, settings).reconcile(update(2))
    body = api.get(CONFIG_PROFILES, namespace, "crash")
    assert sorted(revisions(cluster, namespace, body)) == [1, 2]
    assert yaml.safe_load(config_map_data(cluster, namespace, "crash")["config.yaml"]) == {"v": 1}
    outcome = reconciler.reconcile(body)
    assert (outcome.revision, outcome.new_revision, outcome.config_map_written) == (2, True, True)
    body = api.get(CONFIG_PROFILES, namespace, "crash")
    assert sorted(revisions(cluster, namespace, body)) == [1, 2]
    assert body["metadata"]["annotations"][REVISION_ANNOTATION] == "2"

    # Killed after the ConfigMap, before the status and the annotations.
    class DiesBeforeStatus(ProfileReconciler):
        def _patch_status(self, *args: Any, **kwargs: Any) -> ConfigProfile | None:
            raise Killed

    with pytest.raises(Killed):
        DiesBeforeStatus(api, settings).reconcile(update(3))
    body = api.get(CONFIG_PROFILES, namespace, "crash")
    assert body["status"]["revision"] == 2
    assert yaml.safe_load(config_map_data(cluster, namespace, "crash")["config.yaml"]) == {"v": 3}
    outcome = reconciler.reconcile(body)
    assert (outcome.revision, outcome.config_map_written) == (3, False)
    body = api.get(CONFIG_PROFILES, namespace, "crash")
    assert body["status"]["revision"] == 3
    assert body["metadata"]["annotations"][REVISION_ANNOTATION] == "3"
    assert [
        e.number for e in decode_history(body["metadata"]["annotations"][HISTORY_ANNOTATION])
    ] == [
        1,
        2,
        3,
    ]

    # Killed after the ControllerRevision, and the spec changed back meanwhile:
    # the orphan keeps its number, the next change takes the next one.
    with pytest.raises(Killed):
        DiesBeforeConfigMap(api, settings).reconcile(update(4))
    assert reconciler.reconcile(update(3)).revision == 3  # content of 3: no change
    assert reconciler.reconcile(update(5)).revision == 5
    body = api.get(CONFIG_PROFILES, namespace, "crash")
    stored = revisions(cluster, namespace, body)
    assert sorted(stored) == [1, 2, 3, 4, 5]
    assert yaml.safe_load(snapshot_of(stored[5]).rendered["config.yaml"]) == {"v": 5}

    # Killed after the status, before the annotations: the index lags, and
    # the next reconcile completes it without another revision.
    class DiesBeforeAnnotations(ProfileReconciler):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)

            def killed(*_: Any, **__: Any) -> bool:
                raise Killed

            self.revisions.publish = killed  # type: ignore[method-assign]

    with pytest.raises(Killed):
        DiesBeforeAnnotations(api, settings).reconcile(update(6))
    body = api.get(CONFIG_PROFILES, namespace, "crash")
    assert body["status"]["revision"] == 6
    assert body["metadata"]["annotations"][REVISION_ANNOTATION] == "5"
    outcome = reconciler.reconcile(body)
    assert (outcome.revision, outcome.new_revision, outcome.config_map_written) == (6, False, False)
    body = api.get(CONFIG_PROFILES, namespace, "crash")
    assert body["metadata"]["annotations"][REVISION_ANNOTATION] == "6"
    index = decode_history(body["metadata"]["annotations"][HISTORY_ANNOTATION])
    assert [e.number for e in index] == [1, 2, 3, 4, 5, 6]
    assert sorted(revisions(cluster, namespace, body)) == [1, 2, 3, 4, 5, 6]

    # A second pass writes nothing.
    again = reconciler.reconcile(api.get(CONFIG_PROFILES, namespace, "crash"))
    assert (again.revision, again.config_map_written, again.status_written) == (6, False, False)


def _big_config(approx_bytes: int, seed: int) -> dict[str, Any]:
    """A realistic large configuration: many services with endpoints and settings."""
    config: dict[str, Any] = {}
    i = 0
    size = 0
    while size < approx_bytes:
        entry = {
            "endpoint": f"https://svc-{seed}-{i}.payments.internal:8443/api/v{i % 4}",
            "timeoutMs": 250 + i % 1000,
            "retries": i % 5,
            "owner": f"team-{i % 37}",
        }
        config[f"service{seed}x{i}"] = entry
        size += len(json.dumps(entry)) + 30
        i += 1
    return config


def test_a_configuration_near_the_configmap_limit_is_recorded(
    cluster: TestCluster, namespace: str
) -> None:
    # kopf copies a spec into an annotation (256 KiB for all of them), so a
    # near-1-MiB configuration comes from several bases, created without
    # kubectl's last-applied copy.
    api = KubeApi(cluster.connection)
    bases = [f"part{k}" for k in range(6)]
    with running_operator(cluster, namespaces=(namespace,)):
        for k, base in enumerate(bases):
            api.create(
                CONFIG_PROFILES, namespace, profile(base, {"base": _big_config(150 * 1024, k)})
            )
        change(
            cluster,
            namespace,
            "large",
            {"extends": bases, "base": {"top": 1}, "output": {"format": "json"}},
        )
        body = wait_ready(cluster, namespace, "large", revision=1)
        data = config_map_data(cluster, namespace, "large")
        size = sum(len(k) + len(v.encode()) for k, v in data.items())
        assert 900 * 1024 < size <= 1024 * 1024
        for base in bases:
            wait_ready(cluster, namespace, base, revision=1)

        change(
            cluster,
            namespace,
            "large",
            {"extends": bases, "base": {"top": 2}, "output": {"format": "json"}},
        )
        body = wait_ready(cluster, namespace, "large", revision=2)
    stored = revisions(cluster, namespace, body)
    assert sorted(stored) == [1, 2]
    assert stored[2].data["encoding"] == "gzip+base64"
    assert snapshot_of(stored[2]).rendered == config_map_data(cluster, namespace, "large")


def test_a_snapshot_at_the_size_limit_is_stored(cluster: TestCluster, namespace: str) -> None:
    """MAX_SNAPSHOT_BYTES really fits in etcd: the limit is not only a number."""
    api = KubeApi(cluster.connection)
    change(cluster, namespace, "edge", {"base": {"x": 1}})  # no operator: a bare owner
    owner = api.get(CONFIG_PROFILES, namespace, "edge")
    noise = base64.b64encode(os.urandom(1_000_000)).decode("ascii")
    snapshot = Snapshot(
        kind="ConfigProfile",
        number=1,
        spec={"base": {"blob": noise[1_000_000:1_320_000]}},
        environment="dev",
        rendered={"config.yaml": noise[:1_000_000]},
        fingerprints={},
        digest="sha256:" + "0" * 64,
        change_cause="",
        created="2026-11-24T00:00:00Z",
    )
    size = encoded_size(encode_snapshot(snapshot))
    assert MAX_SNAPSHOT_BYTES - 100_000 < size <= MAX_SNAPSHOT_BYTES
    store = RevisionStore(api)
    store.record(owner, snapshot)
    assert store.get(owner, 1) == snapshot


def test_a_snapshot_too_large_to_store_is_a_clear_condition(
    cluster: TestCluster, namespace: str
) -> None:
    """Incompressible configuration in a big spec: Ready=False, the last good ConfigMap stays."""
    api = KubeApi(cluster.connection)
    reconciler = ProfileReconciler(api, test_settings(namespaces=(namespace,)))
    change(cluster, namespace, "blob", {"base": {"small": True}})
    reconciler.reconcile(api.get(CONFIG_PROFILES, namespace, "blob"))
    good = config_map_data(cluster, namespace, "blob")

    # Written without the operator (kopf would refuse to copy such a spec into
    # its annotation): 700 KiB of random text, rendered once more into the ConfigMap.
    noise = base64.b64encode(os.urandom(540 * 1024)).decode("ascii")
    body = api.get(CONFIG_PROFILES, namespace, "blob")
    body["spec"]["base"] = {"blob": noise}
    api.replace(CONFIG_PROFILES, namespace, body)
    with pytest.raises(SnapshotTooLargeError):
        reconciler.reconcile(api.get(CONFIG_PROFILES, namespace, "blob"))
    after = api.get(CONFIG_PROFILES, namespace, "blob")
    (ready,) = [c for c in after["status"]["conditions"] if c["type"] == "Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "RevisionTooLarge")
    assert noise[:40] not in json.dumps(after["status"])
    assert config_map_data(cluster, namespace, "blob") == good
    assert after["status"]["revision"] == 1
    assert sorted(revisions(cluster, namespace, after)) == [1]


# --- SealedSecrets -----------------------------------------------------------


def _bundle(cluster: TestCluster, keys_namespace: str) -> PublicKeyBundle:
    def read() -> PublicKeyBundle | None:
        cm = cluster.core.read_namespaced_config_map("kstrata-sealing-public-keys", keys_namespace)
        return PublicKeyBundle.parse(cm.data["keys.json"])

    return wait_for(read, timeout=60, what="the published sealing keys")


def _sealed(name: str, tokens: dict[str, str], cause: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if cause:
        metadata["annotations"] = {CHANGE_CAUSE_ANNOTATION: cause}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SealedSecret",
        "metadata": metadata,
        "spec": {"encryptedData": tokens},
    }


def test_sealed_secret_revisions_and_rollback(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:
    first, second = f"pw-{uuid.uuid4().hex}".encode(), f"pw-{uuid.uuid4().hex}".encode()
    with running_operator(
        cluster, namespaces=(namespace, keys_namespace), operator_namespace=keys_namespace
    ):
        bundle = _bundle(cluster, keys_namespace)

        def token(value: bytes) -> str:
            context = SealingContext.bind(
                Scope.STRICT, item="password", namespace=namespace, name="db"
            )
            return seal(value, bundle.newest, context)

        apply(cluster, namespace, _sealed("db", {"password": token(first)}, "create db"))
        wait_ready(cluster, namespace, "db", revision=1, plural=SEALED)
        apply(cluster, namespace, _sealed("db", {"password": token(second)}, "rotate"))
        wait_ready(cluster, namespace, "db", revision=2, plural=SEALED)
        secret = cluster.core.read_namespaced_secret("db", namespace)
        assert base64.b64decode(secret.data["password"]) == second

        # Re-sealing the same value: new ciphertext, so a new revision, same fingerprint.
        apply(cluster, namespace, _sealed("db", {"password": token(second)}, "re-seal"))
        wait_ready(cluster, namespace, "db", revision=3, plural=SEALED)

        _rollback(cluster, namespace, SEALED, "db", 1)
        body = wait_ready(cluster, namespace, "db", revision=4, plural=SEALED)
        secret = cluster.core.read_namespaced_secret("db", namespace)
        assert base64.b64decode(secret.data["password"]) == first
        assert secret.metadata.labels["kstrata.dev/revision"] == "4"

    stored = revisions(cluster, namespace, body)
    assert sorted(stored) == [1, 2, 3, 4]
    snapshots = {n: snapshot_of(item) for n, item in stored.items()}
    assert snapshots[4].spec == snapshots[1].spec
    assert snapshots[4].change_cause == "rollback to 1"
    assert snapshots[4].fingerprints == snapshots[1].fingerprints
    assert snapshots[3].fingerprints == snapshots[2].fingerprints  # re-sealed, unchanged
    assert snapshots[2].fingerprints != snapshots[1].fingerprints
    assert all(s.rendered == {} for s in snapshots.values())
    index = decode_history(body["metadata"]["annotations"][HISTORY_ANNOTATION])
    assert [e.number for e in index] == [1, 2, 3, 4]
    assert all(e.digest is None for e in index)
    # Never plaintext in a revision or on the resource.
    for value in (first, second):
        for blob in [json.dumps(item.data) for item in stored.values()] + [json.dumps(body)]:
            assert value.decode() not in blob
            assert base64.b64encode(value).decode() not in blob
