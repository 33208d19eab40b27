"""One ``kubectl apply -f dir/`` of a profile and a SealedSecret: every pod replaced once.

The Deployment follows both; its pods print the config file and a digest of
the sealed value they started with.  After one apply that changes both,
exactly one new ReplicaSet must exist, and every serving pod must carry
both new values.  The same must hold with both cores busy (a CPU burner per
core for the length of the change), because kubectl writes the two objects
tens of milliseconds apart and a loaded operator sees them further apart.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.e2e import (
    Installed,
    apply,
    config_profile,
    deployment,
    logs,
    pods_of,
    restricted_container,
    sealed_secret,
    wait_rolled_out,
)
from support.waiting import wait_for

PRINT_BOTH_THEN_IDLE = [
    "sh",
    "-c",
    'printf "secret %s\\n" "$(printf %s "$PASSWORD" | sha256sum | cut -d" " -f1)";'
    " cat /etc/app/config.yaml; exec sleep 100000",
]


def profile(version: int) -> dict[str, Any]:
    return config_profile("app", "app-config", {"version": version})


def workload() -> dict[str, Any]:
    return deployment(
        "app",
        [
            restricted_container(
                "app",
                PRINT_BOTH_THEN_IDLE,
                env=[
                    {
                        "name": "PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
                    }
                ],
                volumeMounts=[{"name": "config", "mountPath": "/etc/app"}],
            )
        ],
        [{"name": "config", "configMap": {"name": "app-config"}}],
        annotations={"kstrata.dev/reload": "app,db"},
    )


def expected_log(value: str, version: int) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()
    return f"secret {digest}\n" + yaml.safe_dump({"version": version})


@contextlib.contextmanager
def cpu_burners(loaded: bool) -> Iterator[None]:
    """One busy process per core for the duration; killed on the way out."""
    burners = []
    if loaded:
        for _ in range(os.cpu_count() or 2):
            burners.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait(timeout=10)


@pytest.mark.parametrize("loaded", [False, True], ids=["quiet", "both-cores-busy"])
def test_profile_and_sealed_secret_applied_together_roll_once(
    kstrata: Installed, e2e_namespace: str, tmp_path: Path, loaded: bool
) -> None:
    cluster, ns = kstrata.cluster, e2e_namespace
    first, second = secrets.token_hex(12), secrets.token_hex(12)
    apply(cluster, ns, profile(1), sealed_secret(cluster, ns, "db", password=first), workload())
    wait_rolled_out(cluster, ns, "app")
    wait_for(
        lambda: (
            {logs(cluster, ns, p.metadata.name) for p in pods_of(cluster, ns, "app")}
            == {expected_log(first, 1)}
        ),
        timeout=30,
        what="the first pods",
    )
    old = {p.metadata.name for p in pods_of(cluster, ns, "app")}

    # As a user would: both changed files in one directory, one kubectl apply.
    (tmp_path / "app.yaml").write_text(yaml.safe_dump(profile(2)))
    (tmp_path / "db.yaml").write_text(
        yaml.safe_dump(sealed_secret(cluster, ns, "db", password=second))
    )
    with cpu_burners(loaded):
        cluster.kubectl("apply", "-n", ns, "-f", str(tmp_path))
        wait_for(
            lambda: not old & {p.metadata.name for p in pods_of(cluster, ns, "app")},
            timeout=180,
            interval=0.5,
            what="the old pods replaced",
        )
        wait_rolled_out(cluster, ns, "app", timeout=180)

    for pod in pods_of(cluster, ns, "app"):
        assert logs(cluster, ns, pod.metadata.name) == expected_log(second, 2)
    sets = cluster.apps.list_namespaced_replica_set(ns, label_selector="app=app").items
    assert len(sets) == 2, "a change set rolled the Deployment more than once"
