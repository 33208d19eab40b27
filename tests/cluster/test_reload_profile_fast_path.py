"""A ConfigProfile's or SealedSecret's new revision rolls its followers before any LIST.

When only kstrata sources' revisions changed since a pass covered the whole
namespace, the pass decides on the watches' copies and the reconcilers'
reports (``ReloadTriggers.source_followers``) and PATCHes the templates
first; the sources' ``status.workloads`` is then decided on lists, after the
rollouts.  Before, the pass listed Deployments, ConfigProfiles and
SealedSecrets first (6-50 ms under load on the way to every rollout).

The order is read from the operator's own requests to the real control
plane: every request ``KubeApi`` sends is recorded on its way through (and
sent as usual).  Rollouts are counted by kube-controller-manager's
ReplicaSets; ``status.workloads`` is read from the apiserver.
"""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.crypto import PublicKeyBundle, Scope, SealingContext, seal
from kstrata.kube.api import KubeApi
from support.cluster import TestCluster
from support.operator import running_operator
from support.reloads import (
    apply_profile,
    core,
    cpu_burners,
    create_deployment,
    custom,
    replica_sets,
    rollout_events,
    status_workloads,
    wait_count,
    wait_recorded,
    wait_revision,
    wait_template,
)
from support.waiting import wait_for

GROUP, VERSION = "kstrata.dev", "v1alpha1"
#: What a reload pass lists: its workloads and sources.
PASS_LISTS = ("/deployments", "/configprofiles", "/sealedsecrets")

pytestmark = pytest.mark.usefixtures("kstrata_crds")


class Requests:
    """The operator's requests in order: (method, path, a template PATCH?)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, bool]] = []

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()

    def since(self) -> list[tuple[str, str, bool]]:
        with self.lock:
            return list(self.seen)

    def rollouts_before_lists(self, namespace: str, workload: str) -> tuple[int, int]:
        """Template PATCHes of ``workload``, and pass LISTs in ``namespace`` before the first."""
        found = self.since()
        patches = [
            i
            for i, (method, path, template) in enumerate(found)
            if method == "PATCH" and template and path.endswith(f"/deployments/{workload}")
        ]
        first = patches[0] if patches else len(found)
        lists = [
            path
            for method, path, _ in found[:first]
            if method == "GET" and f"/namespaces/{namespace}/" in path and path.endswith(PASS_LISTS)
        ]
        return len(patches), len(lists)


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> Requests:
    recorded = Requests()
    send = KubeApi._call

    def call(self: KubeApi, method: str, path: str, what: str, **kwargs: Any) -> Any:
        body = kwargs.get("body")
        template = isinstance(body, dict) and "template" in (body.get("spec") or {})
        with recorded.lock:
            recorded.seen.append((method, path, template))
        return send(self, method, path, what, **kwargs)

    monkeypatch.setattr(KubeApi, "_call", call)
    return recorded


def profile_done(
    cluster: TestCluster, namespace: str, name: str, workload: str, revision: int
) -> bool:
    entry = {"kind": "Deployment", "name": workload, "revision": revision}
    return any(
        {k: e.get(k) for k in entry} == entry for e in status_workloads(cluster, namespace, name)
    )


def test_profile_change_rolls_before_any_list_and_keeps_its_status(
    cluster: TestCluster, namespace: str, keys_namespace: str, requests: Requests
) -> None:
    ns = namespace
    settings = {"namespaces": (ns, keys_namespace), "operator_namespace": keys_namespace}
    changes = 3
    with running_operator(cluster, **settings):
        apply_profile(cluster, ns, "p", {"base": {"v": 0}})
        wait_revision(cluster, ns, "p", 1)
        create_deployment(cluster, ns, "web", {"kstrata.dev/reload": "p"})
        wait_recorded(cluster, ns, "web", "p=1")
        wait_for(partial(profile_done, cluster, ns, "p", "web", 1), timeout=30, what="p's status")
        for i in range(1, changes + 1):
            requests.clear()
            apply_profile(cluster, ns, "p", {"base": {"v": i}})
            wait_template(cluster, ns, "web", f"p={i + 1}")
            # The bookkeeping still follows: status.workloads shows the new record.
            wait_for(
                partial(profile_done, cluster, ns, "p", "web", i + 1),
                timeout=30,
                what=f"p's status.workloads at revision {i + 1}",
            )
            patches, lists = requests.rollouts_before_lists(ns, "web")
            assert (patches, lists) == (1, 0), requests.since()
        wait_count(lambda: replica_sets(cluster, ns, "web"), 1 + changes, "web ReplicaSets")
        assert len(rollout_events(cluster, ns, "web")) == changes


@pytest.mark.parametrize("burning", [False, True], ids=["quiet", "both-cores-burning"])
def test_change_set_rolls_once_on_the_fast_path(
    cluster: TestCluster,
    namespace: str,
    other_namespace: str,
    tmp_path: Path,
    burning: bool,
    requests: Requests,
) -> None:
    """A profile and a SealedSecret in one ``kubectl apply -f dir/``: one rollout, no LIST first.

    The workload follows both: eager passes hold it, and the settled pass
    rolls it once, deciding on the watches' copies.  Also with a busy loop
    on every core.
    """
    keys = other_namespace

    def sealed(value: bytes, bundle: PublicKeyBundle) -> dict[str, Any]:
        context = SealingContext.bind(
            Scope("strict"), item="password", namespace=namespace, name="db"
        )
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": namespace},
            "spec": {"encryptedData": {"password": seal(value, bundle.newest, context)}},
        }

    def apply_together(port: int, value: bytes, bundle: PublicKeyBundle) -> None:
        profile = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ConfigProfile",
            "metadata": {"name": "payments", "namespace": namespace},
            "spec": {"base": {"port": port}},
        }
        (tmp_path / "a-payments.yaml").write_text(yaml.safe_dump(profile))
        (tmp_path / "b-db.yaml").write_text(yaml.safe_dump(sealed(value, bundle)))
        cluster.kubectl("apply", "-f", str(tmp_path))

    def sealed_revision() -> Any:
        body = custom(cluster).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "sealedsecrets", "db"
        )
        return (body.get("status") or {}).get("revision")

    rounds = (2, 3, 4)
    with (
        cpu_burners(burning),
        running_operator(cluster, namespaces=(namespace, keys), operator_namespace=keys),
    ):
        bundle = wait_for(
            lambda: PublicKeyBundle.parse(
                core(cluster)
                .read_namespaced_config_map("kstrata-sealing-public-keys", keys)
                .data["keys.json"]
            ),
            timeout=30,
            what="the published public keys",
        )
        apply_together(1, b"one", bundle)
        wait_revision(cluster, namespace, "payments", 1)
        wait_for(lambda: sealed_revision() == 1, timeout=30, what="db at revision 1")
        create_deployment(cluster, namespace, "web", {"kstrata.dev/reload": "payments,db"})
        wait_recorded(cluster, namespace, "web", "db=1,payments=1")
        wait_for(
            partial(profile_done, cluster, namespace, "payments", "web", 1),
            timeout=30,
            what="payments' status",
        )
        wait_count(lambda: replica_sets(cluster, namespace, "web"), 1, "web ReplicaSets")

        for round_ in rounds:
            requests.clear()
            apply_together(round_, f"value {round_}".encode(), bundle)
            wait_template(cluster, namespace, "web", f"db={round_},payments={round_}")
            wait_count(lambda: replica_sets(cluster, namespace, "web"), round_, "web ReplicaSets")
            wait_for(
                partial(profile_done, cluster, namespace, "payments", "web", round_),
                timeout=30,
                what=f"payments' status.workloads at revision {round_}",
            )
            patches, lists = requests.rollouts_before_lists(namespace, "web")
            assert (patches, lists) == (1, 0), requests.since()
        changes = len(rounds)
        wait_for(
            lambda: len(rollout_events(cluster, namespace, "web")) >= changes,
            timeout=30,
            what="the events",
        )
        events = rollout_events(cluster, namespace, "web")
        assert len(events) == changes
        assert all("db " in e.message and "payments " in e.message for e in events)
        assert replica_sets(cluster, namespace, "web") == changes + 1
