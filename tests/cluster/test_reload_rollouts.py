"""Argo Rollouts as reload targets on the real control plane (issue 15).

The Rollout CRD comes from the pinned Argo Rollouts module
(``tools/gotools/install.py argo-rollouts``: its ``manifests/crds/rollout-crd.yaml``
in the Go module cache), never a copy.  No Rollouts controller runs: kstrata's
part ends with the patch of a Rollout's pod template (or ``spec.restartAt``),
and Argo Rollouts acts on exactly those spec fields.  The ground truth for
"rolled" is the Rollout's ``metadata.generation``: the CRD has a status
subresource, so only spec writes move it (kstrata's record is metadata), and
nothing but kstrata writes to these Rollouts (kopf only watches them).
"Nothing rolled" is asserted only after a positive signal from the same pass.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from kstrata.app.reloader_migration import migrate_reloader
from kstrata.kube.api import KubeApi
from support.cluster import TestCluster
from support.operator import running_operator
from support.reloads import (
    apply,
    apply_profile_and_sealed,
    config_map,
    deployment_manifest,
    pod_spec,
    sealed_manifest,
)
from support.sealed_secrets import operator_for, published_bundle
from support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kstrata.dev", "v1alpha1"
ARGO, ARGO_VERSION, ROLLOUTS = "argoproj.io", "v1alpha1", "rollouts"
CRD = "rollouts.argoproj.io"
RECORD = "kstrata.dev/revisions"

pytestmark = pytest.mark.usefixtures("kstrata_crds")


def rollout_crd_file() -> Path:
    """The CRD in the pinned module, fetched by the project's installer if missing."""
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gotools" / "install.py"), "argo-rollouts"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1]) / "manifests" / "crds" / "rollout-crd.yaml"


def crd_installed(cluster: TestCluster) -> bool:
    found = cluster.kubectl("get", "crd", "--ignore-not-found", "-o", "name", CRD)
    return bool(found.stdout.strip())


def install_rollout_crd(cluster: TestCluster) -> None:
    # Server-side: the CRD (570 kB) is larger than client-side apply's annotation.
    cluster.kubectl("apply", "--server-side", "-f", str(rollout_crd_file()))
    # Not `kubectl wait`: it fails on a CRD that has no status.conditions yet.
    wait_for(
        lambda: (
            "True"
            in cluster.kubectl(
                "get",
                "crd",
                CRD,
                "-o",
                'jsonpath={.status.conditions[?(@.type=="Established")].status}',
            ).stdout
        ),
        timeout=60,
        what="the Rollout CRD to be established",
    )


def remove_rollout_crd(cluster: TestCluster) -> None:
    cluster.kubectl("delete", "crd", CRD, "--ignore-not-found", "--wait=true")
    wait_for(lambda: not crd_installed(cluster), timeout=60, what="the Rollout CRD to be gone")


@pytest.fixture
def rollout_crd(cluster: TestCluster) -> None:
    if not crd_installed(cluster):
        install_rollout_crd(cluster)


def rollout(
    name: str,
    annotations: dict[str, str],
    *,
    config_maps: tuple[str, ...] = (),
    secrets: tuple[str, ...] = (),
    workload_ref: str | None = None,
) -> Any:
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": name}},
        "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
    }
    if workload_ref is None:
        spec["template"] = {
            "metadata": {"labels": {"app": name}},
            "spec": pod_spec(config_maps, secrets),
        }
    else:
        spec["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload_ref}
    return {
        "apiVersion": f"{ARGO}/{ARGO_VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }


def profile(name: str, port: int, targets: list[dict[str, Any]] | None = None) -> Any:
    spec: dict[str, Any] = {"base": {"port": port}}
    if targets:
        spec["reload"] = {"targets": targets}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigProfile",
        "metadata": {"name": name},
        "spec": spec,
    }


def get_rollout(cluster: TestCluster, namespace: str, name: str) -> Any:
    return cluster.custom.get_namespaced_custom_object(
        ARGO, ARGO_VERSION, namespace, ROLLOUTS, name
    )


def record(obj: Any) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(RECORD)


def template_record(obj: Any) -> str | None:
    template = (obj.get("spec") or {}).get("template") or {}
    return ((template.get("metadata") or {}).get("annotations") or {}).get(RECORD)


def generation(cluster: TestCluster, namespace: str, name: str) -> int:
    return int(get_rollout(cluster, namespace, name)["metadata"]["generation"])


def wait_recorded(cluster: TestCluster, namespace: str, name: str, value: str) -> None:
    wait_for(
        lambda: record(get_rollout(cluster, namespace, name)) == value,
        timeout=30,
        what=f"Rollout {name} to record {value}",
    )


def wait_rolled(cluster: TestCluster, namespace: str, name: str, value: str) -> None:
    wait_for(
        lambda: template_record(get_rollout(cluster, namespace, name)) == value,
        timeout=30,
        what=f"Rollout {name}'s template to carry {value}",
    )


def status(cluster: TestCluster, namespace: str, plural: str, name: str) -> Any:
    return cluster.kstrata_object(plural, namespace, name).get("status") or {}


def wait_revision(cluster: TestCluster, namespace: str, plural: str, name: str, rev: int) -> None:
    wait_for(
        lambda: status(cluster, namespace, plural, name).get("revision") == rev,
        timeout=30,
        what=f"{plural}/{name} at revision {rev}",
    )


def rollout_events(cluster: TestCluster, namespace: str, name: str) -> list[Any]:
    events = cluster.core.list_namespaced_event(namespace).items
    return [
        e
        for e in events
        if e.involved_object.name == name
        and e.involved_object.kind == "Rollout"
        and e.reason == "RollingRestart"
    ]


def at_generation(cluster: TestCluster, namespace: str, names: list[str], generation_: int) -> bool:
    return all(generation(cluster, namespace, n) == generation_ for n in names)


def test_without_the_rollout_crd_the_operator_works_and_a_restart_takes_the_crd_up(
    cluster: TestCluster, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No CRD: one warning from kopf, nothing else.  A CRD that arrives while the
    operator runs breaks nothing; kopf may start the Rollout watch then (it re-reads
    the API group's discovery on each of the group's CRD events, which can come
    before discovery serves the new resource: seen both ways), and a restarted
    operator always follows Rollouts."""
    for name in ("kopf", "kstrata"):
        caplog.set_level(logging.DEBUG, logger=name)
    if crd_installed(cluster):
        remove_rollout_crd(cluster)
    ns = namespace

    def deployment_records() -> tuple[str | None, str | None]:
        found = cluster.apps.read_namespaced_deployment("web", ns)
        template = (found.spec.template.metadata.annotations or {}).get(RECORD)
        return (found.metadata.annotations or {}).get(RECORD), template

    def wait_web_rolled(port: int) -> None:
        wait_for(
            lambda: deployment_records()[1] == f"payments={port}",
            timeout=30,
            what=f"web to roll to payments={port}",
        )

    apply(cluster, ns, profile("payments", 1))
    apply(cluster, ns, deployment_manifest("web", {"kstrata.dev/reload": "payments"}))
    with running_operator(cluster, namespaces=(ns,)) as operator:
        wait_revision(cluster, ns, "configprofiles", "payments", 1)
        wait_for(lambda: deployment_records()[0] == "payments=1", timeout=30, what="web's record")
        apply(cluster, ns, profile("payments", 2))
        wait_web_rolled(2)
        unresolved = [
            r.getMessage() for r in caplog.records if "Unresolved resources" in r.getMessage()
        ]

        # The CRD arrives while the operator runs; reloads go on.
        install_rollout_crd(cluster)
        apply(cluster, ns, rollout("canary", {"kstrata.dev/reload": "payments"}))
        apply(cluster, ns, profile("payments", 3))
        wait_web_rolled(3)
    # The runner's output is complete (and readable) once it has stopped.
    logs = caplog.text + (operator.runner.output or "")

    # Before the CRD: kopf's one warning at start-up, no error, no retry loop.
    assert len(unresolved) == 1, unresolved
    assert "rollouts" in unresolved[0]
    # When the CRD appears, kopf's first list of it may meet the API server
    # still setting up its storage (429) and retry, logged at ERROR level by
    # kopf; nothing else may fail.
    failures = [
        line
        for line in logs.splitlines()
        if ("ERROR" in line or "Traceback" in line or "failed" in line.lower())
        and "rollouts" in line.lower()
        and not ("will retry" in line and "(re)initializing" in line)
    ]
    assert failures == []

    with running_operator(cluster, namespaces=(ns,)):
        wait_recorded(cluster, ns, "canary", "payments=3")
        # Rolled at most once, by a live pickup at payments=3; never by the restart.
        rolled_before = generation(cluster, ns, "canary") - 1
        assert rolled_before in (0, 1)
        apply(cluster, ns, profile("payments", 4))
        wait_rolled(cluster, ns, "canary", "payments=4")
        wait_web_rolled(4)
        assert generation(cluster, ns, "canary") == 2 + rolled_before


def test_rollouts_roll_once_per_change_set_named_auto_targeted_and_by_workload_ref(
    cluster: TestCluster, namespace: str, rollout_crd: None, tmp_path: Path
) -> None:
    ns = namespace
    with (
        cluster.temporary_namespace("keys") as keys,
        operator_for(cluster, ns, keys),
    ):
        bundle = published_bundle(cluster, keys)
        targets = [{"kind": "Rollout", "name": "targeted"}]

        def apply_together(port: int, value: bytes) -> None:
            """A profile and a SealedSecret in one ``kubectl apply -f dir/``."""
            sealed = sealed_manifest(bundle, ns, value)
            body = profile("payments", port, targets)
            apply_profile_and_sealed(cluster, ns, tmp_path, body, sealed)
            wait_revision(cluster, ns, "configprofiles", "payments", port)
            wait_revision(cluster, ns, "sealedsecrets", "db", port)

        apply_together(1, b"rollout-canary-1")
        config_map_name = status(cluster, ns, "configprofiles", "payments")["configMapName"]
        secret_name = status(cluster, ns, "sealedsecrets", "db")["secretName"]
        apply(
            cluster,
            ns,
            rollout("both", {"kstrata.dev/reload": "payments,db"}),
            rollout(
                "auto",
                {"kstrata.dev/reload": "auto"},
                config_maps=(config_map_name,),
                secrets=(secret_name,),
            ),
            rollout("single", {"kstrata.dev/reload": "payments"}),
            rollout("targeted", {}),
            rollout("by-ref", {"kstrata.dev/reload": "db"}, workload_ref="web"),
            rollout("bystander", {}),
        )
        wait_recorded(cluster, ns, "both", "db=1,payments=1")
        wait_recorded(cluster, ns, "auto", "db=1,payments=1")
        wait_recorded(cluster, ns, "single", "payments=1")
        wait_recorded(cluster, ns, "targeted", "payments=1")
        wait_recorded(cluster, ns, "by-ref", "db=1")
        names = ("both", "auto", "single", "targeted", "by-ref", "bystander")
        # First sight records, and rolls nothing.
        assert {n: generation(cluster, ns, n) for n in names} == dict.fromkeys(names, 1)

        rounds = (2, 3)
        for round_ in rounds:
            apply_together(round_, f"rollout-canary-{round_}".encode())
            both = f"db={round_},payments={round_}"
            wait_rolled(cluster, ns, "both", both)
            wait_rolled(cluster, ns, "auto", both)
            wait_rolled(cluster, ns, "single", f"payments={round_}")
            wait_rolled(cluster, ns, "targeted", f"payments={round_}")
            wait_recorded(cluster, ns, "by-ref", f"db={round_}")
            # Once per change set: one spec write each, whatever the number of sources.
            followers = [n for n in names if n != "bystander"]
            wait_for(
                partial(at_generation, cluster, ns, followers, round_),
                timeout=30,
                what=f"every follower at generation {round_}",
            )
            by_ref = get_rollout(cluster, ns, "by-ref")
            # No template next to workloadRef: Argo's restartAt instead.
            assert "template" not in by_ref["spec"]
            assert by_ref["spec"]["restartAt"].endswith("Z")
        changes = len(rounds)
        wait_for(
            lambda: len(rollout_events(cluster, ns, "both")) >= changes,
            timeout=30,
            what="the RollingRestart events",
        )
        events = rollout_events(cluster, ns, "both")
        assert len(events) == changes
        assert all("db " in e.message and "payments " in e.message for e in events)
        # Same passes: the Rollout nobody names was left alone.
        bystander = get_rollout(cluster, ns, "bystander")
        assert bystander["metadata"]["generation"] == 1
        assert record(bystander) is None
        # status.workloads lists Rollouts (the CRDs' enum takes the kind).
        listed = status(cluster, ns, "configprofiles", "payments").get("workloads") or []
        assert {(w["kind"], w["name"], w.get("revision")) for w in listed} == {
            ("Rollout", n, 3) for n in ("auto", "both", "single", "targeted")
        }
        # Nothing of a value reached a Rollout.
        for name in names:
            assert "rollout-canary" not in str(get_rollout(cluster, ns, name))
        for name in names:
            assert generation(cluster, ns, name) == (1 if name == "bystander" else 3)


def test_reloader_annotations_on_a_rollout_are_honoured_and_migrated(
    cluster: TestCluster, namespace: str, rollout_crd: None
) -> None:
    ns = namespace
    apply(cluster, ns, config_map("settings", {"level": "1"}), config_map("other", {"x": "1"}))
    apply(
        cluster,
        ns,
        rollout("reloaded", {"reloader.stakater.com/auto": "true"}, config_maps=("settings",)),
        rollout(
            "named",
            {"configmap.reloader.stakater.com/reload": "other"},
            config_maps=("settings", "other"),
        ),
    )
    with cluster.temporary_namespace("keys") as keys:
        settings = {"namespaces": (ns, keys), "operator_namespace": keys}
        with running_operator(cluster, reloader_compatible=True, **settings):
            wait_for(
                lambda: (record(get_rollout(cluster, ns, "reloaded")) or "").startswith(
                    "configmap/settings="
                ),
                timeout=30,
                what="the Reloader-annotated Rollout's record",
            )
            wait_for(
                lambda: (record(get_rollout(cluster, ns, "named")) or "").startswith(
                    "configmap/other="
                ),
                timeout=30,
                what="the named Rollout's record",
            )
            apply(cluster, ns, config_map("settings", {"level": "2"}))
            wait_for(lambda: generation(cluster, ns, "reloaded") == 2, timeout=30, what="a rollout")
            reloaded = get_rollout(cluster, ns, "reloaded")
            assert template_record(reloaded) == record(reloaded)
            apply(cluster, ns, config_map("other", {"x": "2"}))
            wait_for(lambda: generation(cluster, ns, "named") == 2, timeout=30, what="a rollout")
            # Positive signal above; "settings" did not roll the named one, "other" not auto.
            assert generation(cluster, ns, "reloaded") == 2

        report = migrate_reloader(KubeApi(cluster.connection), ns, apply=True)
        assert {(m.kind, m.name, m.reload) for m in report.workloads} == {
            ("Rollout", "reloaded", "auto"),
            ("Rollout", "named", "configmap/other"),
        }
        for name in ("reloaded", "named"):
            annotations = get_rollout(cluster, ns, name)["metadata"]["annotations"]
            assert not any("reloader.stakater.com" in key for key in annotations)
        assert get_rollout(cluster, ns, "reloaded")["metadata"]["annotations"][
            "kstrata.dev/reload"
        ] == ("auto")

        # Without Reloader compatibility the migrated Rollout behaves the same.
        with running_operator(cluster, **settings):
            apply(cluster, ns, config_map("settings", {"level": "3"}))
            wait_for(lambda: generation(cluster, ns, "reloaded") == 3, timeout=30, what="a rollout")
            assert generation(cluster, ns, "named") == 2
