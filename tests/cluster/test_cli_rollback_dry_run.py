"""``kstrata rollback --dry-run=server``: the API server and the admission webhook judge it.

As kubectl's ``--dry-run=server``: the rollback's write is sent with
``dryRun=All``, so what would refuse the real write (the webhook, RBAC, the
CRD's schema) refuses this one with its own message, and nothing is stored.
The refused case is one kstrata cannot see on its own: revision 1 was valid
when it was recorded, but the base profile it extends has changed since, so
the merged configuration no longer passes the profile's schema.  The client
dry run only warns; the server's says no.

The operator runs in-process with its webhook (as the README's foreground
operator does), scoped to the test's namespace.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
from typing import Any

import pytest
import yaml

from kstrata.cli.main import main
from support.cluster import TestCluster
from support.operator import operator_with_webhook
from support.waiting import wait_for

GROUP, VERSION = "kstrata.dev", "v1alpha1"
SCHEMA = {
    "type": "object",
    "properties": {"tier": {"enum": ["gold", "silver"]}, "replicas": {"type": "integer"}},
}

pytestmark = pytest.mark.usefixtures("kstrata_crds")


def kstrata(cluster: TestCluster, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([*argv, "--kubeconfig", str(cluster.kubeconfig)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def profile(name: str, spec: dict[str, Any]) -> str:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ConfigProfile", "metadata": {"name": name}}
    return yaml.safe_dump(body | {"spec": spec})


def apply(cluster: TestCluster, namespace: str, text: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text, check=False)


def payments(cluster: TestCluster, namespace: str) -> dict[str, Any]:
    return cluster.kstrata_object("configprofiles", namespace, "payments")


def serving(cluster: TestCluster, namespace: str, revision: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = payments(cluster, namespace)
        status = body.get("status") or {}
        handled = status.get("observedGeneration") == body["metadata"]["generation"]
        return body if handled and status.get("revision") == revision else None

    return wait_for(check, timeout=60, what=f"payments serving revision {revision}")


def test_rollback_dry_run_server_is_judged_by_the_webhook_and_stores_nothing(
    cluster: TestCluster, namespace: str
) -> None:
    with operator_with_webhook(cluster, namespace):
        # Until the API server calls the running webhook, a refused write is
        # "connection refused" or not reviewed at all: wait for a real denial.
        bad = profile("probe", {"schema": SCHEMA, "base": {"tier": "copper"}})
        dry_run = ("apply", "--dry-run=server", "-n", namespace, "-f", "-")
        wait_for(
            lambda: (
                "denied the request" in cluster.kubectl(*dry_run, input=bad, check=False).stderr
            ),
            timeout=60,
            what="the webhook to deny a bad profile",
        )
        platform = {"base": {"tier": "gold"}}
        assert apply(cluster, namespace, profile("platform", platform)).returncode == 0
        revision_1 = {"extends": ["platform"], "schema": SCHEMA, "base": {"replicas": 8}}
        assert apply(cluster, namespace, profile("payments", revision_1)).returncode == 0
        serving(cluster, namespace, 1)
        # Revision 2 also accepts bronze; then the base moves to bronze, which
        # revision 1's schema refuses.
        wider = {"properties": {"tier": {"enum": ["gold", "silver", "bronze"]}}}
        revision_2 = revision_1 | {"schema": {**SCHEMA, **wider}, "base": {"replicas": 9}}
        assert apply(cluster, namespace, profile("payments", revision_2)).returncode == 0
        serving(cluster, namespace, 2)
        bronze = profile("platform", {"base": {"tier": "bronze"}})
        assert apply(cluster, namespace, bronze).returncode == 0
        # The base's change is revision 3; ``set`` writes only once it is
        # recorded, or the two writes race and ``set`` rightly gives up.
        serving(cluster, namespace, 3)
        code, _, err = kstrata(cluster, "set", "payments", "-n", namespace, "replicas=10")
        assert code == 0, err
        before = serving(cluster, namespace, 4)  # 3: the base's change, 4: replicas=10

        args = ("rollback", "payments", "-n", namespace, "--to-revision")
        # kstrata's own (client) dry run can only warn: it does not run admission.
        code, out, err = kstrata(cluster, *args, "1", "--dry-run")
        assert code == 0, err
        assert "revision 1 no longer renders" in err
        assert out.endswith("rolled back to revision 1 (dry run)\n")

        code, out, err = kstrata(cluster, *args, "1", "--dry-run=server")
        assert code == 1, err
        assert "denied the request" in err  # the webhook's own words, passed through
        assert "$.tier" in err
        assert "bronze" not in err  # a value, never quoted
        assert out == ""

        code, out, err = kstrata(cluster, *args, "2", "--dry-run=server")
        assert code == 0, err
        assert "-replicas: 10\n+replicas: 9\n" in out
        assert out.endswith(
            "configprofile.kstrata.dev/payments rolled back to revision 2 (server dry run)\n"
        )

        after = payments(cluster, namespace)
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert after["status"]["revision"] == 4
        assert "rollback" not in yaml.safe_dump(after["metadata"].get("annotations") or {})
