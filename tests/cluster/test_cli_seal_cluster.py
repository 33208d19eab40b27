"""`kstrata seal` without --cert: public keys from the operator's ConfigMap on a real API server.

The test publishes the bundle itself, exactly as the operator's contract says
(ConfigMap ``kstrata-sealing-public-keys``, item ``keys.json`` =
``PublicKeyBundle.serialize()``), in a fresh namespace named with
``--operator-namespace``, so it depends on nothing but the API server.  The
sealed manifests are then offered to the API server (server-side dry run), so
the SealedSecret CRD's schema and CEL rules judge what ``seal`` prints.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kstrata.app.sealing_toolkit import PUBLIC_KEYS_CONFIGMAP, PUBLIC_KEYS_ITEM
from kstrata.cli.main import main
from kstrata.crypto import KeyPair, KeyRing, PublicKeyBundle, SealingContext, generate_keypair
from support.cluster import TestCluster

CANARY = "canary 9b2c s3cret!"

pytestmark = pytest.mark.usefixtures("kstrata_crds")


@pytest.fixture(scope="module")
def keypairs() -> tuple[KeyPair, KeyPair]:
    """An older and a newer key: sealing must pick the newer."""
    return (
        generate_keypair(created=datetime(2025, 1, 1, tzinfo=UTC)),
        generate_keypair(created=datetime(2025, 2, 1, tzinfo=UTC)),
    )


def publish(cluster: TestCluster, namespace: str, data: dict[str, str]) -> None:
    cluster.core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name=PUBLIC_KEYS_CONFIGMAP), data=data),
    )


def kstrata(cluster: TestCluster, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--kubeconfig", str(cluster.kubeconfig)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def server_accepts(cluster: TestCluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest)
    )


def test_seal_reads_the_published_bundle(
    cluster: TestCluster, namespace: str, keypairs: tuple[KeyPair, KeyPair]
) -> None:
    old, new = keypairs
    bundle = PublicKeyBundle.of([old, new]).serialize()
    publish(cluster, namespace, {PUBLIC_KEYS_ITEM: bundle})
    code, out, err = kstrata(
        cluster, "seal", "--operator-namespace", namespace, "-n", namespace, "--name", "db",
        "--from-literal", f"password={CANARY}", "--from-literal", "username=admin",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert CANARY not in out
    manifest = yaml.safe_load(out)
    ring = KeyRing([new])  # only the newest key: the old one must not have been used
    opened = {
        item: ring.open(
            token, SealingContext.bind("strict", namespace=namespace, name="db", item=item)
        )
        for item, token in manifest["spec"]["encryptedData"].items()
    }
    assert opened == {"password": CANARY.encode(), "username": b"admin"}
    server_accepts(cluster, namespace, manifest)


def test_a_secret_manifest_seals_into_what_the_crd_accepts(
    cluster: TestCluster, namespace: str, keypairs: tuple[KeyPair, KeyPair], tmp_path: Path
) -> None:
    publish(cluster, namespace, {PUBLIC_KEYS_ITEM: PublicKeyBundle.of(keypairs).serialize()})
    secret = tmp_path / "secret.yaml"
    secret.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "tls",
                    "namespace": namespace,
                    "uid": "3f0e9a8c-0000-4000-8000-000000000001",
                    "labels": {"app": "web"},
                    "annotations": {
                        "kubectl.kubernetes.io/last-applied-configuration": CANARY,
                        "team": "web",
                    },
                },
                "type": "kubernetes.io/tls",
                "stringData": {"tls.crt": CANARY, "tls.key": CANARY},
                "immutable": True,
            }
        )
    )
    code, out, err = kstrata(
        cluster, "seal", "--operator-namespace", namespace, "-f", str(secret),
        "--scope", "namespace", "--env", "prod",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert CANARY not in out
    manifest = yaml.safe_load(out)
    assert manifest["spec"]["template"] == {
        "type": "kubernetes.io/tls",
        "labels": {"app": "web"},
        "annotations": {"team": "web"},
        "immutable": True,
    }
    assert set(manifest["spec"]["environments"]["prod"]["encryptedData"]) == {"tls.crt", "tls.key"}
    server_accepts(cluster, namespace, manifest)


def test_no_published_keys_is_a_cluster_error(cluster: TestCluster, namespace: str) -> None:
    code, out, err = kstrata(
        cluster, "seal", "--operator-namespace", namespace, "-n", namespace, "--name", "db",
        "--from-literal", f"password={CANARY}",
    )  # fmt: skip
    assert (code, out) == (3, "")
    assert f"ConfigMap {namespace}/{PUBLIC_KEYS_CONFIGMAP} not found" in err
    assert CANARY not in err


def test_a_config_map_without_the_bundle_item_is_a_cluster_error(
    cluster: TestCluster, namespace: str
) -> None:
    publish(cluster, namespace, {"other.json": "{}"})
    code, out, err = kstrata(
        cluster, "seal", "--operator-namespace", namespace, "-n", namespace, "--name", "db",
        "--from-literal", f"password={CANARY}",
    )  # fmt: skip
    assert (code, out) == (3, "")
    assert f"has no {PUBLIC_KEYS_ITEM}" in err
    assert CANARY not in err


def test_a_malformed_published_bundle_is_refused_without_echo(
    cluster: TestCluster, namespace: str
) -> None:
    publish(cluster, namespace, {PUBLIC_KEYS_ITEM: f'{{"format": "{CANARY}", "keys": []}}'})
    code, out, err = kstrata(
        cluster, "seal", "--operator-namespace", namespace, "-n", namespace, "--name", "db",
        "--from-literal", f"password={CANARY}",
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert "invalid public key bundle" in err
    assert CANARY not in err


def test_the_namespace_comes_from_the_kubeconfig_context(
    cluster: TestCluster, namespace: str, keypairs: tuple[KeyPair, KeyPair], tmp_path: Path
) -> None:
    # `kubectl create secret ... --dry-run=client -o yaml | kstrata seal -f -` (issue 19):
    # the Secret names no namespace; the context's is used, as every other command does.
    publish(cluster, namespace, {PUBLIC_KEYS_ITEM: PublicKeyBundle.of(keypairs).serialize()})
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    current = config["current-context"]
    for entry in config["contexts"]:
        if entry["name"] == current:
            entry["context"]["namespace"] = namespace
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    secret = tmp_path / "secret.yaml"
    secret.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db", "creationTimestamp": None},
                "stringData": {"password": CANARY},
            }
        )
    )
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["--kubeconfig", str(kubeconfig), "seal", "--operator-namespace", namespace,
         "-f", str(secret)],
        out=out,
        err=err,
    )  # fmt: skip
    assert (code, err.getvalue()) == (0, "")
    manifest = yaml.safe_load(out.getvalue())
    assert manifest["metadata"]["namespace"] == namespace
    token = manifest["spec"]["encryptedData"]["password"]
    context = SealingContext.bind("strict", namespace=namespace, name="db", item="password")
    assert KeyRing([keypairs[1]]).open(token, context) == CANARY.encode()
    server_accepts(cluster, namespace, manifest)


def test_controller_namespace_still_works_and_says_it_is_deprecated(
    cluster: TestCluster,
    namespace: str,
    keypairs: tuple[KeyPair, KeyPair],
    capsys: pytest.CaptureFixture[str],
) -> None:
    publish(cluster, namespace, {PUBLIC_KEYS_ITEM: PublicKeyBundle.of(keypairs).serialize()})
    code, out, err = kstrata(
        cluster, "seal", "--controller-namespace", namespace, "-n", namespace, "--name", "db",
        "--from-literal", "k=v",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert yaml.safe_load(out)["kind"] == "SealedSecret"
    assert "--controller-namespace is deprecated; use --operator-namespace" in (
        capsys.readouterr().err
    )
