"""Day one with the CLI (issue 19): it tells the truth, refuses mistakes, speaks kubectl.

Against the real control plane, the CLI in-process (``main(argv)``), the
operator in-process where the behaviour depends on it: a spec the operator
refused, a spec it has not handled because it is stopped, typos in keys and
environments, ``TYPE/NAME`` arguments and SealedSecrets in ``list``.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.cli.main import main
from support.cluster import TestCluster
from support.operator import running_operator
from support.serviceaccount import mint_kubeconfig
from support.waiting import wait_for

GROUP, VERSION = "kstrata.dev", "v1alpha1"
SCHEMA = {
    "type": "object",
    "properties": {"replicas": {"type": "integer"}, "database": {"type": "object"}},
}

pytestmark = pytest.mark.usefixtures("kstrata_crds")


def kstrata(cluster: TestCluster, *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout, stderr (the error main() prints and the warnings handlers print)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([*argv, "--kubeconfig", str(cluster.kubeconfig)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def apply(cluster: TestCluster, namespace: str, kind: str, name: str, spec: Any) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}}
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body | {"spec": spec})
    )


def payments(cluster: TestCluster, namespace: str) -> None:
    apply(
        cluster,
        namespace,
        "ConfigProfile",
        "payments",
        {
            "schema": SCHEMA,
            "base": {"replicas": 8, "database": {"pool": 10}},
            "environments": {"prod": {"database": {"pool": 20}}},
        },
    )


def profile(cluster: TestCluster, namespace: str) -> dict[str, Any]:
    return cluster.kstrata_object("configprofiles", namespace, "payments")


def settled(cluster: TestCluster, namespace: str, *, ready: str) -> dict[str, Any]:
    """The profile once the operator has reported on its spec with Ready=``ready``."""

    def check() -> dict[str, Any] | None:
        body = profile(cluster, namespace)
        status = body.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        if (
            status.get("observedGeneration") == body["metadata"]["generation"]
            and conditions.get("Ready", {}).get("status") == ready
        ):
            return body
        return None

    return wait_for(check, timeout=30, what=f"payments Ready={ready}")


def test_get_prints_what_is_served_and_says_why_the_spec_is_not(
    cluster: TestCluster, namespace: str
) -> None:
    payments(cluster, namespace)
    with running_operator(cluster, namespaces=(namespace,)):
        settled(cluster, namespace, ready="True")
        assert kstrata(cluster, "get", "payments", "-n", namespace, "--key", "replicas") == (
            0,
            "8\n",
            "",
        )
        # A value the schema refuses: the operator keeps serving revision 1.
        cluster.kubectl(
            "patch", "configprofile", "payments", "-n", namespace, "--type=merge",
            "-p", '{"spec": {"base": {"replicas": "many"}}}',
        )  # fmt: skip
        settled(cluster, namespace, ready="False")

        code, out, err = kstrata(cluster, "get", "payments", "-n", namespace, "--key", "replicas")
        assert (code, out) == (0, "8\n")  # what the ConfigMap serves, not "many"
        assert err.startswith(
            f"warning: ConfigProfile {namespace}/payments serves revision 1 (ConfigMap "
            "payments), printed here; its spec is not what is served: the operator did not "
            "apply it: "
        )
        assert "kstrata get --spec" in err
        assert "many" not in err
        code, out, _ = kstrata(
            cluster, "get", "payments", "-n", namespace, "--key", "replicas", "--spec"
        )
        assert (code, out) == (0, "many\n")

        # list and the printer columns say why it is not Ready.
        code, out, _ = kstrata(cluster, "list", "-n", namespace)
        row = out.splitlines()[1].split()
        assert row[:4] == ["payments", "dev", "1", "False"]
        reason = profile(cluster, namespace)["status"]["conditions"]
        ready = next(c for c in reason if c["type"] == "Ready")
        assert row[4] == ready["reason"]
        columns = cluster.kubectl("get", "cfp", "payments", "-n", namespace).stdout.splitlines()
        assert columns[0].split()[:6] == [
            "NAME", "ENVIRONMENT", "REVISION", "READY", "REASON", "GENERATION",
        ]  # fmt: skip
        assert columns[1].split()[3:5] == ["False", ready["reason"]]


def test_a_stopped_operator_shows_as_stale_everywhere(cluster: TestCluster, namespace: str) -> None:
    payments(cluster, namespace)
    with running_operator(cluster, namespaces=(namespace,)):
        settled(cluster, namespace, ready="True")
    # The operator is stopped: the change is written, nothing applies it, and set says so.
    code, out, err = kstrata(
        cluster, "set", "payments", "replicas=3", "-n", namespace, "--timeout", "1"
    )
    assert (code, out) == (3, "")
    assert err == (
        f"error: the change to ConfigProfile {namespace}/payments was written, but the "
        "operator did not report on it within 1s (it is stopped or busy): it is not applied "
        "yet; kstrata list shows it as Stale until it is (--no-wait skips this wait)\n"
    )
    assert profile(cluster, namespace)["spec"]["base"]["replicas"] == 3

    code, out, _ = kstrata(cluster, "list", "-n", namespace, "-o", "wide")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0][4] == "STATUS"
    assert lines[1][:5] == ["payments", "dev", "1", "True", "Stale"]
    assert lines[1][-2:] == ["2", "1"]  # GENERATION, OBSERVED

    code, out, err = kstrata(cluster, "get", "payments", "-n", namespace, "--key", "replicas")
    assert (code, out) == (0, "8\n")
    assert "the operator has not handled the spec's latest change (generation 2; it last " in err
    assert "it is stopped or busy" in err

    # kubectl shows it too: GENERATION and OBSERVED side by side.
    row = cluster.kubectl("get", "cfp", "payments", "-n", namespace).stdout.splitlines()[1].split()
    assert row[5:7] == ["2", "1"]


def test_set_refuses_unknown_keys_and_environments_with_did_you_mean(
    cluster: TestCluster, namespace: str
) -> None:
    payments(cluster, namespace)
    before = profile(cluster, namespace)["metadata"]["resourceVersion"]

    code, out, err = kstrata(
        cluster, "set", "payments", "--env", "prod", "databse.pool=30", "-n", namespace
    )
    assert (code, out) == (2, "")
    assert err == (
        f"error: key databse.pool is not in ConfigProfile {namespace}/payments (environment "
        "prod) (did you mean database.pool?); pass --create to add a new key\n"
    )
    code, out, err = kstrata(
        cluster, "set", "payments", "--env", "prdo", "database.pool=30", "-n", namespace
    )
    assert (code, out) == (2, "")
    assert err == (
        f"error: environment prdo is not declared by ConfigProfile {namespace}/payments "
        "(did you mean prod?); declared: dev, prod; pass --create to add a new overlay\n"
    )
    assert profile(cluster, namespace)["metadata"]["resourceVersion"] == before

    # --create: the new key is meant.
    code, out, _ = kstrata(
        cluster, "set", "payments", "database.timeout=5", "-n", namespace, "--create", "--no-wait"
    )
    assert (code, out) == (0, "configprofile.kstrata.dev/payments configured\n")
    assert profile(cluster, namespace)["spec"]["base"]["database"] == {"pool": 10, "timeout": 5}


def test_undeclared_environments_are_refused_by_get_and_diff(
    cluster: TestCluster, namespace: str
) -> None:
    payments(cluster, namespace)
    for argv in (
        ["get", "payments", "--env", "qa"],
        ["get", "payments", "--env", "prodd", "--spec"],
        ["diff", "payments", "--env", "dev", "--to-env", "prodd"],
    ):
        code, out, err = kstrata(cluster, *argv, "-n", namespace)
        assert (code, out) == (2, ""), argv
        assert "is not declared by ConfigProfile" in err
        assert err.endswith("declared: dev, prod\n")
    _, _, err = kstrata(cluster, "get", "payments", "--env", "prodd", "-n", namespace)
    assert "(did you mean prod?)" in err


def test_type_name_arguments_and_sealed_secrets_in_list(
    cluster: TestCluster, namespace: str
) -> None:
    payments(cluster, namespace)
    apply(cluster, namespace, "SealedSecret", "db", {"encryptedData": {"password": "kss1:AAAA"}})

    for spelled in (
        "configprofile/payments",
        "cfp/payments",
        "configprofiles.kstrata.dev/payments",
    ):
        code, out, _ = kstrata(
            cluster, "get", spelled, "-n", namespace, "--spec", "--key", "replicas"
        )
        assert (code, out) == (0, "8\n"), spelled

    code, _, err = kstrata(cluster, "get", "kss/db", "-n", namespace)
    assert code == 2
    assert "works on ConfigProfiles; db is named as a SealedSecret" in err
    code, _, err = kstrata(cluster, "get", "db", "-n", namespace)
    assert code == 3
    assert f"db in namespace {namespace} is a SealedSecret, not a ConfigProfile" in err
    code, _, err = kstrata(cluster, "get", "payments", "-n", "default")
    assert code == 3
    assert "kstrata list -A" in err
    code, _, err = kstrata(cluster, "get", "deployment/payments", "-n", namespace)
    assert code == 2
    assert "unknown resource type deployment" in err

    code, out, _ = kstrata(cluster, "list", "-n", namespace)
    tables = out.split("\n\n")
    assert [line.split()[0] for line in tables[0].splitlines()] == [
        "NAME",
        "configprofile.kstrata.dev/payments",
    ]
    assert tables[1].splitlines()[0].split()[:6] == [
        "NAME", "ENVIRONMENT", "REVISION", "READY", "STATUS", "SECRET",
    ]  # fmt: skip
    assert tables[1].splitlines()[1].split()[0] == "sealedsecret.kstrata.dev/db"
    assert kstrata(cluster, "list", "-n", namespace, "-o", "name") == (
        0,
        "configprofile.kstrata.dev/payments\nsealedsecret.kstrata.dev/db\n",
        "",
    )
    code, out, _ = kstrata(cluster, "list", "-n", namespace, "-o", "json")
    kinds = [item["kind"] for item in json.loads(out)["items"]]
    assert kinds == ["ConfigProfile", "SealedSecret"]

    # history takes TYPE/NAME too, and says which kind it found.
    code, out, _ = kstrata(cluster, "history", "cfp/payments", "-n", namespace)
    assert (code, out.splitlines()[0]) == (0, "configprofile.kstrata.dev/payments")


def test_list_takes_a_label_selector_as_kubectl_does(cluster: TestCluster, namespace: str) -> None:
    payments(cluster, namespace)
    apply(cluster, namespace, "ConfigProfile", "billing", {"base": {"replicas": 1}})
    apply(cluster, namespace, "SealedSecret", "db", {"encryptedData": {"password": "kss1:AAAA"}})
    cluster.kubectl("label", "-n", namespace, "configprofile/payments", "team=payments")
    cluster.kubectl("label", "-n", namespace, "sealedsecret.kstrata.dev/db", "team=payments")

    assert kstrata(cluster, "list", "-n", namespace, "-l", "team=payments", "-o", "name") == (
        0,
        "configprofile.kstrata.dev/payments\nsealedsecret.kstrata.dev/db\n",
        "",
    )
    code, out, _ = kstrata(cluster, "list", "-n", namespace, "--selector", "team!=payments")
    assert code == 0
    # One kind found: one table, plain names (as kubectl get prints them).
    assert [line.split()[0] for line in out.splitlines()] == ["NAME", "billing"]
    # The API server checks the selector and says what is wrong with it.
    code, _, err = kstrata(cluster, "list", "-n", namespace, "-l", "team in (payments")
    assert code != 0
    assert "unable to parse requirement" in err


def test_set_dry_run_server_is_judged_by_the_api_server_and_stores_nothing(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    payments(cluster, namespace)
    before = cluster.custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "configprofiles", "payments"
    )
    args = ("set", "payments", "-n", namespace, "--no-wait", "replicas=9")
    code, out, err = kstrata(cluster, *args, "--dry-run=server")
    assert code == 0, err
    assert yaml.safe_load(out)["spec"]["base"]["replicas"] == 9
    after = cluster.custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "configprofiles", "payments"
    )
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    # Who may read but not write passes kstrata's own checks (client), and is
    # refused by the API server (server): the server really judged the write.
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cluster.kubectl(
        "create", "role", "reader", "-n", namespace,
        "--verb=get,list", "--resource=configprofiles.kstrata.dev",
    )  # fmt: skip
    cluster.kubectl(
        "create", "rolebinding", "reader", "-n", namespace,
        "--role=reader", f"--serviceaccount={namespace}:reader",
    )  # fmt: skip
    # kstrata's own checks read the namespace's environment label.
    cluster.kubectl("create", "clusterrole", namespace, "--verb=get", "--resource=namespaces")
    cluster.kubectl(
        "create", "clusterrolebinding", namespace,
        f"--clusterrole={namespace}", f"--serviceaccount={namespace}:reader",
    )  # fmt: skip
    reader = mint_kubeconfig(cluster, namespace, "reader", tmp_path / "reader.kubeconfig")

    def as_reader(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main([*argv, "--kubeconfig", str(reader)], out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    try:
        code, _, err = wait_for(
            lambda: ((result := as_reader(*args, "--dry-run"))[0] == 0 and result) or None,
            timeout=15,
            what="the reader's rights to take effect",
        )
        code, _, err = as_reader(*args, "--dry-run=server")
        assert code == 3, err
        assert "forbidden" in err.lower()
    finally:
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", namespace)
