"""Act as a ServiceAccount on the test cluster: install RBAC, mint a token, compare rights.

Why: the RBAC in manifests/ is only proven by running the operator with
exactly those rights.  This module renders a kustomization the way
``kubectl apply -k`` would, applies it without the objects that need a node
(the Deployment, the PodDisruptionBudget), mints a token through the
TokenRequest API (``kubectl create token``) and writes a kubeconfig that
authenticates with it.  It also turns ``kubectl auth can-i --list`` into a
comparable set of grants.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from kstrata.kube.connection import connect
from support.cluster import TestCluster

#: Not applied by the RBAC tests: they need nodes (or, for the webhook
#: configuration, a running in-cluster Service) to mean anything.
NOT_APPLIED = frozenset({"Deployment", "PodDisruptionBudget"})


@dataclasses.dataclass(frozen=True, order=True)
class Grant:
    """One verb on one resource (optionally one name), as ``auth can-i --list`` shows it."""

    resource: str
    name: str
    verb: str

    def line(self, view: str) -> str:
        return f"{view} {self.resource} {self.name} {self.verb}"


def render(cluster: TestCluster, kustomization: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl apply -k`` would send, via the cluster's own kubectl/kustomize."""
    output = cluster.kubectl("kustomize", str(kustomization)).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def apply_objects(cluster: TestCluster, objects: Iterable[dict[str, Any]]) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(list(objects)))


def delete_objects(cluster: TestCluster, objects: Iterable[dict[str, Any]]) -> None:
    cluster.kubectl(
        "delete",
        "--ignore-not-found",
        "--wait=false",
        "-f",
        "-",
        input=yaml.safe_dump_all(list(objects)),
    )


def mint_kubeconfig(
    cluster: TestCluster, namespace: str, account: str, path: Path, *, duration: str = "1h"
) -> Path:
    """A kubeconfig for ``namespace/account`` with a token from the TokenRequest API."""
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, f"--duration={duration}"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    entry = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    server = dict(entry["cluster"])
    if "certificate-authority" in server:
        # Relative CA paths are relative to the admin kubeconfig's directory.
        ca = Path(server["certificate-authority"])
        server["certificate-authority"] = str(
            ca if ca.is_absolute() else cluster.kubeconfig.parent / ca
        )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": server}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": account,
                "context": {"cluster": "test", "user": account, "namespace": namespace},
            }
        ],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def as_service_account(cluster: TestCluster, kubeconfig: Path) -> TestCluster:
    """The same cluster handle, but authenticated by ``kubeconfig`` (kubectl stays admin)."""
    return dataclasses.replace(cluster, connection=connect(kubeconfig))


_ROW = re.compile(
    r"^(?P<resource>\S+)\s+\[(?P<urls>[^]]*)\]\s+\[(?P<names>[^]]*)\]\s+\[(?P<verbs>[^]]*)\]$"
)


def grants(cluster: TestCluster, user: str, namespace: str) -> set[Grant]:
    """``kubectl auth can-i --list`` for ``user`` in ``namespace``, one Grant per verb.

    Non-resource URLs (discovery, health) are left out: every authenticated
    user has them and they differ between distributions.
    """
    output = cluster.kubectl("auth", "can-i", "--list", f"--as={user}", "-n", namespace).stdout
    found: set[Grant] = set()
    for raw in output.splitlines()[1:]:
        match = _ROW.match(raw.strip())
        if match is None:
            continue  # a non-resource URL row has no resource column
        names = match["names"].split() or ["*"]
        for name in names:
            for verb in match["verbs"].split():
                found.add(Grant(match["resource"], name, verb))
    return found


def granted_by_manifests(
    cluster: TestCluster, user: str, baseline_user: str, namespace: str
) -> set[Grant]:
    """What ``user`` may do in ``namespace`` beyond an account with no bindings at all."""
    return grants(cluster, user, namespace) - grants(cluster, baseline_user, namespace)


def read_allowlist(path: Path) -> list[str]:
    """Allowlist lines, normalized: comments and blank lines dropped, spaces collapsed, sorted."""
    lines = []
    for raw in path.read_text().splitlines():
        text = raw.split("#", 1)[0].strip()
        if text:
            lines.append(" ".join(text.split()))
    return sorted(lines)


@contextlib.contextmanager
def installed(cluster: TestCluster, objects: list[dict[str, Any]]) -> Iterator[None]:
    """Apply ``objects``; afterwards delete the cluster-scoped RBAC and webhook ones.

    The namespace, CRDs and ServiceAccount stay: other tests may share them,
    and deleting a CRD or namespace takes long.  RBAC objects go so that the
    next install (another mode) starts from no grants at all; the webhook
    configuration goes because it would send every later ConfigProfile write
    to an operator that is no longer there.
    """
    apply_objects(cluster, objects)
    try:
        yield
    finally:
        kinds = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
        kinds.add("ValidatingWebhookConfiguration")
        delete_objects(cluster, [o for o in objects if o["kind"] in kinds])
