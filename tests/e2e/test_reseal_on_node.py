"""`kstrata reseal` through the real API server's service proxy to the operator's pods.

The API server refuses to proxy to loopback endpoints, so only a node with
real pods can prove the path: install, seal, rotate, reseal as a user bound
to the shipped ``kstrata-resealer`` Role (the Role's resource name must be
exactly what the proxy checks), apply, and the produced Secret keeps its
value under the new key.  A user without the Role is refused by the API
server (403), and says so; nothing prints the value, and the operator's logs
do not hold it either.  Also measures a bulk reseal of 1,000 manifests.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.crypto import parse_token
from support.e2e import OPERATOR_NAMESPACE, OPERATOR_SELECTOR, Installed, kstrata_cli
from support.leaks import Canary, scan
from support.serviceaccount import mint_kubeconfig
from support.waiting import wait_for

KSTRATA = str(Path(sys.executable).parent / "kstrata")


def run_as(kubeconfig: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    return subprocess.run(
        [KSTRATA, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


@pytest.fixture
def accounts(kstrata: Installed, tmp_path: Path) -> Iterator[Callable[[str, bool], Path]]:
    """ServiceAccounts (with or without the kstrata-resealer Role) as kubeconfigs; removed after."""
    cluster, made = kstrata.cluster, []

    def account(name: str, resealer: bool) -> Path:
        cluster.kubectl("create", "serviceaccount", name, "-n", OPERATOR_NAMESPACE)
        made.append(name)
        if resealer:
            cluster.kubectl(
                "create", "rolebinding", name, "-n", OPERATOR_NAMESPACE,
                "--role=kstrata-resealer", f"--serviceaccount={OPERATOR_NAMESPACE}:{name}",
            )  # fmt: skip
        return mint_kubeconfig(cluster, OPERATOR_NAMESPACE, name, tmp_path / f"{name}.kubeconfig")

    yield account
    for name in made:
        cluster.kubectl(
            "delete", "rolebinding,serviceaccount", name, "-n", OPERATOR_NAMESPACE,
            "--ignore-not-found",
        )  # fmt: skip


def secret_value(installed: Installed, namespace: str) -> bytes | None:
    result = installed.cluster.kubectl(
        "get", "secret", "db", "-n", namespace, "-o", "jsonpath={.data.password}", check=False
    )
    return base64.b64decode(result.stdout) if result.returncode == 0 and result.stdout else None


def status_key_ids(installed: Installed, namespace: str) -> set[str]:
    result = installed.cluster.kubectl(
        "get", "sealedsecret.kstrata.dev", "db", "-n", namespace, "-o", "json", check=False
    )
    if result.returncode != 0:
        return set()
    status: dict[str, Any] = yaml.safe_load(result.stdout).get("status") or {}
    return {str(item.get("keyId")) for item in status.get("items") or []}


def test_reseal_through_the_service_proxy_keeps_the_value_and_needs_the_role(
    kstrata: Installed,
    e2e_namespace: str,
    tmp_path: Path,
    accounts: Callable[[str, bool], Path],
) -> None:
    cluster, ns = kstrata.cluster, e2e_namespace
    canary = Canary.new("reseal-e2e")
    outputs: dict[str, str] = {}
    sealed, value_file = tmp_path / "db.yaml", tmp_path / "password"
    value_file.write_bytes(canary.value)
    value_file.chmod(0o600)
    manifest = kstrata_cli(
        cluster, "seal", "-n", ns, "--name", "db", "--from-file", f"password={value_file}"
    )
    value_file.unlink()
    sealed.write_text("# the database password, rotated yearly\n" + manifest)
    old_token = yaml.safe_load(manifest)["spec"]["encryptedData"]["password"]
    cluster.kubectl("apply", "-n", ns, "-f", str(sealed))
    wait_for(lambda: secret_value(kstrata, ns) == canary.value, timeout=60, what="the Secret")

    rotated = kstrata_cli(cluster, "keys", "rotate", "-o", "json")
    new_key = yaml.safe_load(rotated)["keyId"]
    assert parse_token(old_token).key_ids != (new_key,)

    # Without the Role: the API server refuses the proxy call; the file is untouched.
    outsider = accounts("not-a-resealer", False)
    refused = run_as(outsider, "reseal", "-f", str(sealed), "--in-place")
    outputs["outsider stdout"], outputs["outsider stderr"] = refused.stdout, refused.stderr
    assert refused.returncode == 3, refused.stderr
    assert "kstrata-resealer" in refused.stderr
    assert old_token in sealed.read_text()

    # With the shipped Role: resealed in place, only the token changed.
    resealer = accounts("resealer", True)
    before = sealed.read_text()
    done = run_as(resealer, "reseal", "-f", str(sealed), "--in-place")
    outputs["reseal stdout"], outputs["reseal stderr"] = done.stdout, done.stderr
    assert done.returncode == 0, done.stderr
    assert f"1 of 1 item(s) resealed to key {new_key}" in done.stderr
    after = sealed.read_text()
    new_token = yaml.safe_load(after)["spec"]["encryptedData"]["password"]
    assert parse_token(new_token).key_ids == (new_key,)
    assert after == before.replace(old_token, new_token)
    again = run_as(resealer, "reseal", "-f", str(sealed), "--in-place")
    outputs["again stdout"], outputs["again stderr"] = again.stdout, again.stderr
    assert again.returncode == 0, again.stderr
    assert sealed.read_text() == after

    cluster.kubectl("apply", "-n", ns, "-f", str(sealed))
    wait_for(
        lambda: status_key_ids(kstrata, ns) == {new_key}, timeout=60, what="opened by the new key"
    )
    assert secret_value(kstrata, ns) == canary.value

    logs = {
        f"operator log {pod}": cluster.kubectl(
            "logs", "-n", OPERATOR_NAMESPACE, pod, "--all-containers"
        ).stdout
        for pod in cluster.kubectl(
            "get", "pods", "-n", OPERATOR_NAMESPACE, "-l", OPERATOR_SELECTOR, "-o", "name"
        ).stdout.split()
    }
    assert not scan({**outputs, **logs}, [canary])
    assert any("resealed 1 item(s) to key" in text for text in logs.values())


def test_bulk_reseal_of_a_thousand_manifests(
    kstrata: Installed, e2e_namespace: str, tmp_path: Path
) -> None:
    """One process, one request: 1,000 SealedSecrets resealed after a rotation (measured)."""
    cluster, ns = kstrata.cluster, e2e_namespace
    secrets_dir, sealed_dir = tmp_path / "secrets", tmp_path / "sealed"
    secrets_dir.mkdir()
    for index in range(1000):
        (secrets_dir / f"s{index:04}.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": f"s{index:04}", "namespace": ns},
                    "stringData": {"password": f"value-{index}"},
                }
            )
        )
    kstrata_cli(cluster, "seal", "-f", str(secrets_dir), "--output-dir", str(sealed_dir))
    new_key = yaml.safe_load(kstrata_cli(cluster, "keys", "rotate", "-o", "json"))["keyId"]
    started = time.monotonic()
    done = run_as(cluster.kubeconfig, "reseal", "-f", str(sealed_dir), "--in-place")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert f"1000 of 1000 item(s) resealed to key {new_key}; 1000 file(s)" in done.stderr
    print(f"\nreseal of 1,000 manifests through the service proxy: {elapsed:.2f} s wall")
