"""A sealed value reaches a running container, as a file and as an environment variable.

Containers print only a SHA-256 of what they received (the test's canary
values are not secrets, but pod logs are no place for secret values even
in a test).  A change of the sealed value reaches new pods through the
rollout; a SealedSecret replayed into another namespace opens nowhere, so a
pod there that needs it never starts.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from support.e2e import (
    Installed,
    apply,
    deployment,
    logs,
    pods_of,
    restricted_container,
    sealed_secret,
    wait_rolled_out,
)
from support.waiting import wait_for

PRINT_DIGESTS_THEN_IDLE = [
    "sh",
    "-c",
    'printf "env %s\\n" "$(printf %s "$PASSWORD" | sha256sum | cut -d" " -f1)";'
    ' printf "file %s\\n" "$(sha256sum < /etc/db/password | cut -d" " -f1)";'
    " exec sleep 100000",
]


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def sealed(cluster: Any, namespace: str, value: str) -> dict[str, Any]:
    return sealed_secret(cluster, namespace, "db", password=value)


def app(namespace_secret: str = "db") -> dict[str, Any]:
    return deployment(
        "db-client",
        [
            restricted_container(
                "app",
                PRINT_DIGESTS_THEN_IDLE,
                env=[
                    {
                        "name": "PASSWORD",
                        "valueFrom": {
                            "secretKeyRef": {"name": namespace_secret, "key": "password"}
                        },
                    }
                ],
                volumeMounts=[{"name": "db", "mountPath": "/etc/db", "readOnly": True}],
            )
        ],
        [{"name": "db", "secret": {"secretName": namespace_secret}}],
        annotations={"kstrata.dev/reload": "db"},
    )


def digests_printed(cluster: Any, namespace: str) -> set[str]:
    return {
        logs(cluster, namespace, p.metadata.name) for p in pods_of(cluster, namespace, "db-client")
    }


def test_sealed_value_reaches_containers_as_file_and_env(
    kstrata: Installed, e2e_namespace: str
) -> None:
    cluster, ns = kstrata.cluster, e2e_namespace
    first, second = secrets.token_hex(12), secrets.token_hex(12)
    apply(cluster, ns, sealed(cluster, ns, first), app())
    wait_rolled_out(cluster, ns, "db-client")
    expected = f"env {digest(first)}\nfile {digest(first)}\n"
    wait_for(lambda: digests_printed(cluster, ns) == {expected}, timeout=30, what="first value")

    apply(cluster, ns, sealed(cluster, ns, second))
    expected = f"env {digest(second)}\nfile {digest(second)}\n"
    wait_for(
        lambda: digests_printed(cluster, ns) == {expected},
        timeout=120,
        interval=0.5,
        what="every pod started with the new value",
    )
    wait_rolled_out(cluster, ns, "db-client")


def test_replayed_sealed_secret_opens_nowhere(kstrata: Installed, e2e_namespace: str) -> None:
    cluster = kstrata.cluster
    manifest = sealed(cluster, e2e_namespace, secrets.token_hex(12))
    with cluster.temporary_namespace(
        "e2e-replay", labels={"kstrata.dev/environment": "prod"}
    ) as other:
        manifest["metadata"]["namespace"] = other
        apply(cluster, other, manifest, app())

        def refused() -> bool:
            body: Any = cluster.custom.get_namespaced_custom_object(
                "kstrata.dev", "v1alpha1", other, "sealedsecrets", "db"
            )
            ready = [
                c for c in body.get("status", {}).get("conditions", []) if c["type"] == "Ready"
            ]
            return bool(ready) and ready[0]["status"] == "False"

        wait_for(refused, timeout=30, what="the replayed SealedSecret refused")

        def kubelet_found_no_secret() -> bool:
            events = cluster.core.list_namespaced_event(other).items
            return any(
                event.reason == "FailedMount" and 'secret "db" not found' in (event.message or "")
                for event in events
            )

        # The kubelet tried to start the pods and could not: no Secret to mount.
        wait_for(kubelet_found_no_secret, timeout=60, what="the kubelet to find no Secret")
        assert not cluster.exists(cluster.core.read_namespaced_secret, "db", other)
        for pod in pods_of(cluster, other, "db-client"):
            assert all(not s.state.running for s in pod.status.container_statuses or [])
