"""From Bitnami sealed-secrets to kstrata on one cluster, with the real Bitnami controller.

The pinned sealed-secrets controller (tools/gotools/tools.toml) runs as a
local process against the embedded control plane with a ServiceAccount's
in-cluster credentials (as benchmarks/bench_peers.py runs it), makes its own
key pair, and unseals SealedSecrets made by the real ``kubeseal``.  The key
backup is taken as Bitnami's docs say (``kubectl get secret -l
sealedsecrets.bitnami.com/sealed-secrets-key -o yaml``).  Then the migration
the guide documents ("Coming from sealed-secrets") is done step by step:
``kstrata import sealedsecret`` against the cluster's kstrata keys, the
Bitnami-made Secrets labelled for adoption, the kstrata SealedSecrets
applied, the Bitnami ones deleted with ``--cascade=orphan``.  The Secrets
must keep exactly the bytes Bitnami's controller wrote, end up owned by
kstrata, and no canary may appear anywhere but in their data.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.cli.main import main
from support.cluster import TestCluster
from support.leaks import Canary, cluster_texts, report, scan
from support.sealed_secrets import (
    operator_for,
)
from support.secret_tools import KEY_LABEL, install, kubeseal, secret_manifest
from support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("kstrata_crds")]

# In a private mount namespace a tmpfs covers /run, so the ServiceAccount files
# appear where client-go's in-cluster configuration reads them, for this
# process only.  exec keeps the pid Popen returns the controller's.
_IN_CLUSTER = (
    'mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && cp "$0"/* '
    '/run/secrets/kubernetes.io/serviceaccount/ && exec "$@"'
)


def module_dir(version: str) -> Path:
    found = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/bitnami-labs/sealed-secrets@{version}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Path(json.loads(found.stdout)["Dir"])


def version_of(binary: Path) -> str:
    return binary.parent.name.rsplit("-", 1)[-1]


@contextlib.contextmanager
def bitnami_controller(cluster: TestCluster, tmp: Path) -> Iterator[str]:
    """The real controller, running until the end of the block; yields its namespace."""
    if cluster.plane is None:
        pytest.fail("this test runs the controller against the embedded control plane")
    binary = install("sealed-secrets-controller")
    crd = module_dir(version_of(binary)) / "helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml"
    cluster.kubectl("apply", "-f", str(crd))
    account = tmp / "serviceaccount"
    account.mkdir()
    binding = f"sealed-secrets-{tmp.name[-8:]}".lower()
    with cluster.temporary_namespace(prefix="bitnami") as namespace:
        cluster.kubectl("create", "serviceaccount", "sealed-secrets", "-n", namespace)
        cluster.kubectl(
            "create", "clusterrolebinding", binding, "--clusterrole=cluster-admin",
            f"--serviceaccount={namespace}:sealed-secrets",
        )  # fmt: skip
        token = cluster.kubectl("create", "token", "sealed-secrets", "-n", namespace).stdout
        (account / "token").write_text(token.strip())
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        ca = Path(config["clusters"][0]["cluster"]["certificate-authority"])
        (account / "ca.crt").write_bytes(ca.read_bytes())
        (account / "namespace").write_text(namespace)
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            unshare[1:1] = ["--user", "--map-root-user"]
        import controlplane

        port, metrics = controlplane.free_port(), controlplane.free_port()
        argv = [
            *unshare, "--", "sh", "-c", _IN_CLUSTER, str(account), str(binary),
            f"--listen-addr=127.0.0.1:{port}", f"--listen-metrics-addr=127.0.0.1:{metrics}",
        ]  # fmt: skip
        env = dict(
            os.environ,
            KUBERNETES_SERVICE_HOST=cluster.plane.address,
            KUBERNETES_SERVICE_PORT=str(cluster.plane.apiserver_port),
            POD_NAMESPACE=namespace,
        )
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                yield namespace
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                cluster.kubectl("delete", "clusterrolebinding", binding, check=False)
                cluster.kubectl("delete", "-f", str(crd), "--wait=true", check=False)


def secret_or_none(cluster: TestCluster, namespace: str, name: str) -> dict[str, Any] | None:
    got = cluster.kubectl("get", "secret", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(got.stdout) if got.returncode == 0 else None


def test_bitnami_secrets_move_to_kstrata_without_a_gap_or_a_leak(
    cluster: TestCluster, namespace: str, keys_namespace: str, tmp_path: Path
) -> None:
    canaries = [Canary.new("bitnami-db"), Canary.new("bitnami-api")]
    with (
        bitnami_controller(cluster, tmp_path) as controller_ns,
        operator_for(cluster, namespace, keys_namespace),
    ):
        key_secret = wait_for(
            lambda: (
                json.loads(
                    cluster.kubectl(
                        "get", "secret", "-n", controller_ns, "-l", KEY_LABEL, "-o", "json"
                    ).stdout
                )["items"]
                or None
            ),
            timeout=120,
            what="the Bitnami controller's key",
        )[0]
        cert = tmp_path / "bitnami-cert.pem"
        cert.write_bytes(base64.b64decode(key_secret["data"]["tls.crt"]))
        # The backup, exactly as Bitnami's docs take it.
        backup = tmp_path / "bitnami-keys.yaml"
        backup.write_text(
            cluster.kubectl(
                "get", "secret", "-n", controller_ns, "-l", KEY_LABEL, "-o", "yaml"
            ).stdout
        )
        kubeseal_binary = install("kubeseal")
        sealed_dir = tmp_path / "sealed"
        sealed_dir.mkdir()
        db = secret_manifest(
            "db",
            namespace,
            {"password": canaries[0].text},
            type="kubernetes.io/basic-auth",
            metadata={"labels": {"app": "shop"}},
        )
        api = secret_manifest("api", namespace, {"token": canaries[1].text})
        bitnami_objects = {
            "db": kubeseal(kubeseal_binary, cert, db),
            "api": kubeseal(kubeseal_binary, cert, api, "namespace-wide"),
        }
        for name, body in bitnami_objects.items():
            (sealed_dir / f"{name}.yaml").write_text(yaml.safe_dump(body))
            cluster.kubectl("apply", "-f", str(sealed_dir / f"{name}.yaml"))

        # What Bitnami's controller wrote: the bytes the migration must keep.
        def data_of(name: str) -> dict[str, str] | None:
            data: dict[str, str] | None = (secret_or_none(cluster, namespace, name) or {}).get(
                "data"
            )
            return data

        before = {
            name: wait_for(
                functools.partial(data_of, name),
                timeout=60,
                what=f"Bitnami's controller to write Secret {name}",
            )
            for name in bitnami_objects
        }
        uids = {
            name: (secret_or_none(cluster, namespace, name) or {}).get("metadata", {}).get("uid")
            for name in before
        }
        assert all(uids.values()), uids

        # 1. Import against the cluster's kstrata keys (no --cert).
        out, err = io.StringIO(), io.StringIO()
        code = main(
            [
                "--kubeconfig", str(cluster.kubeconfig), "import", "sealedsecret",
                "-f", str(sealed_dir), "--bitnami-keys", str(backup),
                "--operator-namespace", keys_namespace,
            ],
            out=out,
            err=err,
        )  # fmt: skip
        assert code == 0, err.getvalue()
        imported = [d for d in yaml.safe_load_all(out.getvalue()) if d]
        assert {d["spec"]["scope"] for d in imported} == {"strict", "namespace"}
        # 2. Label for adoption, 3. apply, 4. delete Bitnami's objects leaving their Secrets.
        for name in bitnami_objects:
            cluster.kubectl(
                "label", "secret", name, "-n", namespace, "app.kubernetes.io/managed-by=kstrata"
            )
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=out.getvalue())
        for name in bitnami_objects:
            cluster.kubectl(
                "delete", "sealedsecrets.bitnami.com", name, "-n", namespace, "--cascade=orphan"
            )

        def moved(name: str) -> dict[str, Any] | None:
            secret = secret_or_none(cluster, namespace, name)
            owners = (secret or {}).get("metadata", {}).get("ownerReferences") or []
            kinds = {(o["apiVersion"].split("/")[0], o["kind"]) for o in owners}
            return secret if kinds == {("kstrata.dev", "SealedSecret")} else None

        for name, data in before.items():
            secret = wait_for(
                functools.partial(moved, name), timeout=60, what=f"kstrata to own Secret {name}"
            )
            assert secret["data"] == data, name
            # The same object all along: never deleted and created again (no gap).
            assert secret["metadata"]["uid"] == uids[name], name
        assert (secret_or_none(cluster, namespace, "db") or {}).get("type") == (
            "kubernetes.io/basic-auth"
        )
        assert before["db"]["password"] == base64.b64encode(canaries[0].value).decode()

        dump = cluster_texts(cluster, [namespace])
        texts = {**dump.texts, "import stdout": out.getvalue(), "import stderr": err.getvalue()}
        hits = scan(texts, canaries)
        assert not hits, report(hits)
        # Positive control: the scan finds the values where they belong.
        assert scan(dump.produced_data, canaries)
