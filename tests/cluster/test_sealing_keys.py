"""The operator's sealing keys on the real control plane: creation, rotation, loss and restore.

The key Secret and the public key ConfigMap live in a per-test operator
namespace; SealedSecrets are sealed with the bundle the operator publishes,
as ``kstrata seal`` would, and the ``kstrata keys`` commands run in-process
against the session's kubeconfig.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kstrata.app.sealing_keys import PUBLISH_ATTEMPTS, KeyStore, rotate_keys
from kstrata.cli.main import main
from kstrata.crypto import (
    FingerprintKey,
    PublicKeyBundle,
    Scope,
    SealingContext,
    generate_keypair,
    seal,
)
from kstrata.errors import ConflictError
from kstrata.kube.api import CONFIG_MAPS, KubeApi, P, Resource
from kstrata.settings import Settings
from support.cluster import TestCluster
from support.operator import running_operator
from support.sealed_secrets import (
    KEY_SECRET,
    bundle_text,
    metric,
    wait_bundle,
)
from support.waiting import wait_for

GROUP, VERSION, PLURAL = "kstrata.dev", "v1alpha1", "sealedsecrets"
PUBLIC_KEYS = "kstrata-sealing-public-keys"
FINGERPRINT_ENTRY = "fingerprint-key.json"

pytestmark = pytest.mark.usefixtures("kstrata_crds")


def operator_for(
    cluster: TestCluster, namespace: str, keys_namespace: str, **overrides: Any
) -> Any:
    return running_operator(
        cluster,
        namespaces=(namespace, keys_namespace),
        operator_namespace=keys_namespace,
        **overrides,
    )


def kstrata(cluster: TestCluster, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--kubeconfig", str(cluster.kubeconfig)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def key_secret(cluster: TestCluster, keys_namespace: str) -> Any:
    return cluster.core.read_namespaced_secret(KEY_SECRET, keys_namespace)


def seal_item(
    bundle: PublicKeyBundle, value: bytes, *, namespace: str, name: str, item: str
) -> str:
    context = SealingContext.bind(Scope.STRICT, item=item, namespace=namespace, name=name)
    return seal(value, bundle.newest, context)


def apply_sealed(cluster: TestCluster, namespace: str, name: str, tokens: dict[str, str]) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SealedSecret",
        "metadata": {"name": name},
        "spec": {"encryptedData": tokens},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))


def ready_condition(cluster: TestCluster, namespace: str, name: str) -> tuple[Any, Any]:
    body = cluster.kstrata_object(PLURAL, namespace, name)
    for item in (body.get("status") or {}).get("conditions") or []:
        if (
            item["type"] == "Ready"
            and item.get("observedGeneration") == body["metadata"]["generation"]
        ):
            return body, item
    return body, None


def wait_state(
    cluster: TestCluster, namespace: str, name: str, status: str, reason: str
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        body, condition = ready_condition(cluster, namespace, name)
        if condition and (condition["status"], condition["reason"]) == (status, reason):
            return dict(body)
        return None

    return wait_for(probe, timeout=30, what=f"{name} Ready={status} ({reason})")


def secret_data(cluster: TestCluster, namespace: str, name: str) -> dict[str, bytes]:
    secret = cluster.core.read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def test_first_start_creates_keys_and_publishes_them_once(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:
    with operator_for(cluster, namespace, keys_namespace):
        bundle = wait_bundle(cluster, keys_namespace, keys=1)
        secret = key_secret(cluster, keys_namespace)
        assert set(secret.data) == {f"{bundle.newest.key_id}.json", FINGERPRINT_ENTRY}
        assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "kstrata"
        # Followed with kopf.on.event only: no finalizer, no kopf annotations.
        assert not secret.metadata.finalizers
        assert not secret.metadata.annotations
        entry = json.loads(base64.b64decode(secret.data[f"{bundle.newest.key_id}.json"]))
        assert (entry["keyId"], entry["suite"]) == (bundle.newest.key_id, "x25519")
        config_map = cluster.core.read_namespaced_config_map(PUBLIC_KEYS, keys_namespace)
        # The public ConfigMap holds public keys only.
        assert entry["privateKey"] not in json.dumps(config_map.data)

    versions = (
        key_secret(cluster, keys_namespace).metadata.resource_version,
        cluster.core.read_namespaced_config_map(
            PUBLIC_KEYS, keys_namespace
        ).metadata.resource_version,
    )
    with operator_for(cluster, namespace, keys_namespace) as again:
        wait_for(lambda: metric(again, "kstrata_sealing_keys") == 1, what="the keys to be loaded")
    assert versions == (
        key_secret(cluster, keys_namespace).metadata.resource_version,
        cluster.core.read_namespaced_config_map(
            PUBLIC_KEYS, keys_namespace
        ).metadata.resource_version,
    )


def test_rotation_keeps_old_tokens_opening_and_new_seals_use_the_newest_key(
    cluster: TestCluster, namespace: str, keys_namespace: str, tmp_path: Path
) -> None:
    with operator_for(cluster, namespace, keys_namespace) as running:
        old_bundle = wait_bundle(cluster, keys_namespace, keys=1)
        old_key = old_bundle.newest.key_id
        newest_created = "kstrata_sealing_key_newest_created_timestamp_seconds"
        wait_for(
            lambda: metric(running, newest_created) == old_bundle.newest.created.timestamp(),
            what="the newest key's age to be exported",
        )
        old_token = seal_item(
            old_bundle, b"old-value", namespace=namespace, name="mixed", item="old"
        )
        apply_sealed(cluster, namespace, "mixed", {"old": old_token})
        wait_state(cluster, namespace, "mixed", "True", "Unsealed")

        code, out, err = kstrata(cluster, "keys", "rotate", "--operator-namespace", keys_namespace)
        assert code == 0, err
        new_bundle = wait_bundle(cluster, keys_namespace, keys=2)
        new_key = new_bundle.newest.key_id
        assert new_key != old_key
        # The operator saw the rotation (made by the CLI) through its watch.
        wait_for(
            lambda: metric(running, newest_created) == new_bundle.newest.created.timestamp(),
            what="the rotated key's creation time to be exported",
        )
        assert metric(running, "kstrata_sealing_key_rotation_period_seconds") > 0
        assert new_key in out
        assert {k.key_id for k in new_bundle} == {old_key, new_key}
        assert set(key_secret(cluster, keys_namespace).data) == {
            f"{old_key}.json",
            f"{new_key}.json",
            FINGERPRINT_ENTRY,
        }

        new_token = seal_item(
            new_bundle, b"new-value", namespace=namespace, name="mixed", item="new"
        )
        apply_sealed(cluster, namespace, "mixed", {"old": old_token, "new": new_token})

        def both_open() -> dict[str, Any] | None:
            body = wait_state(cluster, namespace, "mixed", "True", "Unsealed")
            return body if body["status"]["revision"] == 2 else None

        body = wait_for(both_open, timeout=30, what="revision 2 with both keys")
        assert secret_data(cluster, namespace, "mixed") == {
            "old": b"old-value",
            "new": b"new-value",
        }
        assert body["status"]["keyIds"] == sorted([old_key, new_key])
        assert {i["key"]: i["keyId"] for i in body["status"]["items"]} == {
            "old": old_key,
            "new": new_key,
        }

    code, out, err = kstrata(cluster, "keys", "list", "--operator-namespace", keys_namespace)
    assert code == 0, err
    rows = out.splitlines()
    assert rows[0].split() == ["KEY", "ID", "SUITE", "CREATED", "NEWEST"]
    assert rows[1].split()[0] == old_key
    assert rows[1].split()[-1] != "yes"
    assert rows[2].split()[0] == new_key
    assert rows[2].split()[-1] == "yes"
    code, out, _ = kstrata(
        cluster, "keys", "list", "-o", "json", "--operator-namespace", keys_namespace
    )
    assert [(k["keyId"], k["newest"]) for k in json.loads(out)["items"]] == [
        (old_key, False),
        (new_key, True),
    ]

    target = tmp_path / "cert.json"
    target.write_text("stale")
    target.chmod(0o644)
    code, _, err = kstrata(
        cluster, "keys", "export", "--out", str(target), "--operator-namespace", keys_namespace
    )
    assert code == 0, err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == bundle_text(cluster, keys_namespace)
    assert PublicKeyBundle.parse(target.read_text()).newest.key_id == new_key
    code, out, _ = kstrata(cluster, "keys", "export", "--operator-namespace", keys_namespace)
    assert out == target.read_text()


def test_the_timer_rotates_when_the_newest_key_is_old(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    old = generate_keypair(created=now - dt.timedelta(days=2))
    fingerprint_key = FingerprintKey.generate(created=now - dt.timedelta(days=2))
    cluster.core.create_namespaced_secret(
        keys_namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=KEY_SECRET),
            data={
                old.secret_entry_name: base64.b64encode(old.to_secret_entry()).decode(),
                FINGERPRINT_ENTRY: base64.b64encode(fingerprint_key.to_secret_entry()).decode(),
            },
        ),
    )
    with operator_for(
        cluster, namespace, keys_namespace, key_rotation_days=1.0, key_rotation_check_seconds=0.2
    ):
        bundle = wait_bundle(cluster, keys_namespace, keys=2)
    assert bundle.keys[0].key_id == old.key_id
    assert bundle.newest.key_id != old.key_id
    assert bundle.newest.created >= now - dt.timedelta(seconds=1)
    assert len(key_secret(cluster, keys_namespace).data) == 3


def test_a_deleted_key_secret_restored_from_a_backup_is_used_without_a_restart(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> None:
    # The safety-net retry is an hour away: recovery below comes from the watch.
    with operator_for(cluster, namespace, keys_namespace, blocked_retry_seconds=3600) as operator:
        bundle = wait_bundle(cluster, keys_namespace, keys=1)
        first = seal_item(bundle, b"v1", namespace=namespace, name="kept", item="v")
        apply_sealed(cluster, namespace, "kept", {"v": first})
        wait_state(cluster, namespace, "kept", "True", "Unsealed")
        kept_before = cluster.core.read_namespaced_secret("kept", namespace)
        backup = key_secret(cluster, keys_namespace)
        published_before = bundle_text(cluster, keys_namespace)

        cluster.core.delete_namespaced_secret(KEY_SECRET, keys_namespace)
        wait_for(lambda: metric(operator, "kstrata_sealing_keys") == 0, what="the loss noticed")

        # While the keys are gone: a new SealedSecret gets no Secret, a changed one
        # keeps its Secret as it was, and nothing regenerates keys.
        apply_sealed(
            cluster,
            namespace,
            "later",
            {"v": seal_item(bundle, b"later", namespace=namespace, name="later", item="v")},
        )
        apply_sealed(
            cluster,
            namespace,
            "kept",
            {"v": seal_item(bundle, b"v2", namespace=namespace, name="kept", item="v")},
        )
        body = wait_state(cluster, namespace, "later", "False", "SealingKeyMissing")
        message = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")["message"]
        assert bundle.newest.key_id in message
        wait_state(cluster, namespace, "kept", "False", "SealingKeyMissing")
        assert not cluster.exists(cluster.core.read_namespaced_secret, "later", namespace)
        kept_now = cluster.core.read_namespaced_secret("kept", namespace)
        assert kept_now.metadata.resource_version == kept_before.metadata.resource_version
        assert not cluster.exists(cluster.core.read_namespaced_secret, KEY_SECRET, keys_namespace)
        assert bundle_text(cluster, keys_namespace) == published_before
        assert metric(operator, "kstrata_sealed_secrets_waiting_for_keys") == 2
        assert metric(operator, "kstrata_sealing_key_missing_total") >= 2

        restored = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=KEY_SECRET,
                labels=backup.metadata.labels,
                annotations=backup.metadata.annotations,
            ),
            type=backup.type,
            data=backup.data,
        )
        cluster.core.create_namespaced_secret(keys_namespace, restored)

        wait_state(cluster, namespace, "later", "True", "Unsealed")
        wait_state(cluster, namespace, "kept", "True", "Unsealed")
        assert secret_data(cluster, namespace, "later") == {"v": b"later"}
        assert secret_data(cluster, namespace, "kept") == {"v": b"v2"}
        assert metric(operator, "kstrata_sealed_secrets_waiting_for_keys") == 0
        assert key_secret(cluster, keys_namespace).data == backup.data
        assert bundle_text(cluster, keys_namespace) == published_before


def test_a_sealed_secret_cannot_target_the_key_secret(
    cluster: TestCluster, keys_namespace: str
) -> None:
    with running_operator(cluster, namespaces=(keys_namespace,), operator_namespace=keys_namespace):
        bundle = wait_bundle(cluster, keys_namespace, keys=1)
        before = key_secret(cluster, keys_namespace)
        token = seal_item(
            bundle,
            uuid.uuid4().bytes.hex().encode(),
            namespace=keys_namespace,
            name=KEY_SECRET,
            item="x",
        )
        apply_sealed(cluster, keys_namespace, KEY_SECRET, {"x": token})
        wait_state(cluster, keys_namespace, KEY_SECRET, "False", "ReservedName")
        after = key_secret(cluster, keys_namespace)
        assert after.metadata.resource_version == before.metadata.resource_version


# --- keys rotate publishes through conflicts (issue 19) ------------------------


class _RacingApi(KubeApi):
    """The real API, with another writer touching the public key ConfigMap just before each
    of our first ``races`` PUTs to it: the API server answers a real 409 Conflict."""

    def __init__(self, cluster: TestCluster, races: int) -> None:
        super().__init__(cluster.connection)
        self.cluster = cluster
        self.races = races
        self.conflicts = 0

    def replace(
        self, resource: Resource[P], namespace: str | None, body: P, *, dry_run: bool = False
    ) -> P:
        if resource is CONFIG_MAPS and self.races > 0 and namespace is not None:
            self.races -= 1
            self.cluster.core.patch_namespaced_config_map(
                body["metadata"]["name"],
                namespace,
                {"metadata": {"annotations": {"test/racer": uuid.uuid4().hex}}},
            )
            try:
                return super().replace(resource, namespace, body, dry_run=dry_run)
            except ConflictError:
                self.conflicts += 1
                raise
        return super().replace(resource, namespace, body, dry_run=dry_run)


def _stored_and_published(cluster: TestCluster, keys_namespace: str) -> KeyStore:
    store = KeyStore(KubeApi(cluster.connection), Settings(operator_namespace=keys_namespace))
    store.ensure_keys(dt.datetime.now(dt.UTC))
    assert store.publish_public_keys()
    return store


def test_keys_rotate_retries_its_publish_on_a_conflict(
    cluster: TestCluster, keys_namespace: str
) -> None:
    _stored_and_published(cluster, keys_namespace)
    api = _RacingApi(cluster, races=2)
    info = rotate_keys(api, keys_namespace, dt.datetime.now(dt.UTC))
    assert api.conflicts == 2  # two real 409s, then the third PUT went through
    bundle = PublicKeyBundle.parse(bundle_text(cluster, keys_namespace))
    assert bundle.newest.key_id == info.key_id
    assert len(bundle) == 2


def test_keys_rotate_fails_loudly_when_publishing_keeps_conflicting(
    cluster: TestCluster, keys_namespace: str
) -> None:
    _stored_and_published(cluster, keys_namespace)
    api = _RacingApi(cluster, races=PUBLISH_ATTEMPTS)
    with pytest.raises(ConflictError) as caught:
        rotate_keys(api, keys_namespace, dt.datetime.now(dt.UTC))
    assert api.conflicts == PUBLISH_ATTEMPTS  # bounded: no attempt beyond the limit
    assert "is stored" in caught.value.message
    # The key is in the key Secret, and the message says so; the bundle still has the old one.
    stored = [n for n in (key_secret(cluster, keys_namespace).data or {}) if n.endswith(".json")]
    assert len(stored) == 3  # two key pairs and the fingerprint key
    assert len(PublicKeyBundle.parse(bundle_text(cluster, keys_namespace))) == 1


# --- several recipients and the break-glass path (issue 15) -----------------------


def test_multi_recipient_tokens_open_here_and_a_foreign_one_is_reported_cleanly(
    cluster: TestCluster, namespace: str, keys_namespace: str, tmp_path: Path
) -> None:
    canary = "canary-multi-operator-6a1d"
    other = generate_keypair(created=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    other_cert = tmp_path / "other.json"
    other_cert.write_text(PublicKeyBundle.of([other]).serialize())
    with operator_for(cluster, namespace, keys_namespace):
        ours = wait_bundle(cluster, keys_namespace, keys=1).newest
        cert = tmp_path / "ours.json"
        code, _, err = kstrata(
            cluster, "keys", "export", "--out", str(cert), "--operator-namespace", keys_namespace
        )
        assert code == 0, err
        # Both clusters' keys, the other one first: this cluster skips it and opens its own.
        code, out, err = kstrata(
            cluster, "seal", "--cert", str(other_cert), "--cert", str(cert), "-n", namespace,
            "--name", "multi", "--from-literal", f"password={canary}",
        )  # fmt: skip
        assert (code, err) == (0, "")
        cluster.kubectl("apply", "-f", "-", input=out)
        body = wait_state(cluster, namespace, "multi", "True", "Unsealed")
        assert secret_data(cluster, namespace, "multi") == {"password": canary.encode()}
        assert [i["keyId"] for i in body["status"]["items"]] == [ours.key_id]
        assert body["status"]["keyIds"] == [ours.key_id]

        # Sealed for the other cluster only: reported by key id, nothing else.
        code, out, err = kstrata(
            cluster, "seal", "--cert", str(other_cert), "-n", namespace, "--name", "foreign",
            "--from-literal", f"password={canary}",
        )  # fmt: skip
        assert code == 0, err
        cluster.kubectl("apply", "-f", "-", input=out)
        body = wait_state(cluster, namespace, "foreign", "False", "SealingKeyMissing")
        _, condition = ready_condition(cluster, namespace, "foreign")
        assert other.key_id in condition["message"]
        assert canary not in json.dumps(body)
        events = cluster.core.list_namespaced_event(namespace).items
        assert all(canary not in (e.message or "") for e in events)
        assert (
            cluster.core.list_namespaced_secret(
                namespace, field_selector="metadata.name=foreign"
            ).items
            == []
        )


def test_keys_backup_restores_the_key_secret_and_opens_sealed_secrets_offline(
    cluster: TestCluster,
    namespace: str,
    keys_namespace: str,
    tmp_path: Path,
) -> None:
    canary = "canary-break-glass-0c7e"
    backup = tmp_path / "keys-backup.yaml"
    with operator_for(cluster, namespace, keys_namespace):
        bundle = wait_bundle(cluster, keys_namespace, keys=1)
        cert = tmp_path / "cert.json"
        cert.write_text(bundle.serialize())
        code, out, _ = kstrata(
            cluster, "seal", "--cert", str(cert), "-n", namespace, "--name", "db",
            "--from-literal", f"password={canary}",
        )  # fmt: skip
        assert code == 0
        sealed = tmp_path / "sealed.yaml"
        sealed.write_text(out)
        notes = io.StringIO()
        with contextlib.redirect_stderr(notes):  # the handler warns on the process's stderr
            code, out, err = kstrata(
                cluster, "keys", "backup", "-o", str(backup), "--operator-namespace", keys_namespace
            )
        warning = notes.getvalue()
        assert code == 0, err
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert "PRIVATE sealing keys" in warning
    private = json.loads(
        base64.b64decode(key_secret(cluster, keys_namespace).data[f"{bundle.newest.key_id}.json"])
    )["privateKey"]
    assert private not in out + err + warning  # the keys are in the file only
    assert str(backup) in out

    # Offline (no kubeconfig): the values come back only with the explicit flag.
    unseal = ["unseal", "--recovery-keys", str(backup), "-f", str(sealed)]
    out_io = io.StringIO()
    assert main(unseal, out=out_io, err=io.StringIO()) == 0
    assert canary not in out_io.getvalue()
    out_io = io.StringIO()
    assert main([*unseal, "--i-know-this-prints-secrets"], out=out_io, err=io.StringIO()) == 0
    secret = yaml.safe_load(out_io.getvalue())
    assert base64.b64decode(secret["data"]["password"]).decode() == canary

    # The same file restores the key Secret: same keys, same entries.
    before = key_secret(cluster, keys_namespace).data
    cluster.core.delete_namespaced_secret(KEY_SECRET, keys_namespace)
    wait_for(
        lambda: (
            not cluster.core.list_namespaced_secret(
                keys_namespace, field_selector=f"metadata.name={KEY_SECRET}"
            ).items
        ),
        what="the key Secret to be gone",
    )
    cluster.kubectl("create", "-f", str(backup))
    assert key_secret(cluster, keys_namespace).data == before
