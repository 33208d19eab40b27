"""`kstrata history`, `diff` and `rollback` through the real operator on the real control plane.

Revisions are made the way users make them (``kubectl apply``, ``kstrata
set``, values sealed with the operator's published keys); the CLI runs
in-process (``kstrata.cli.main.main``) and its output is compared as exact
text.  Rollbacks are checked where it matters: the operator renders the
restored spec as a new revision whose cause is ``rollback to N``, and the
ConfigMap or Secret holds revision N's content again.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.cli.main import main
from support.cluster import TestCluster
from support.operator import RunningOperator, running_operator
from support.sealed_secrets import apply, operator_for, published_bundle, seal_for
from support.waiting import wait_for

GROUP, VERSION = "kstrata.dev", "v1alpha1"

pytestmark = pytest.mark.usefixtures("kstrata_crds")


def kstrata(cluster: TestCluster, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--kubeconfig", str(cluster.kubeconfig)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def resource(kind: str, name: str, spec: dict[str, Any], cause: str | None = None) -> Any:
    meta: dict[str, Any] = {"name": name}
    if cause is not None:
        meta["annotations"] = {"kubernetes.io/change-cause": cause}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta, "spec": spec}


def get(cluster: TestCluster, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return cluster.kstrata_object(plural, namespace, name)


def wait_revision(
    cluster: TestCluster, namespace: str, plural: str, name: str, revision: int
) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        body = get(cluster, namespace, plural, name)
        status = body.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        if (
            conditions.get("Ready", {}).get("status") == "True"
            and status.get("revision") == revision
            and status.get("observedGeneration") == body["metadata"]["generation"]
        ):
            return body
        return None

    return wait_for(ready, timeout=30, what=f"{plural}/{name} Ready at revision {revision}")


def history_times(cluster: TestCluster, namespace: str, name: str) -> list[str]:
    code, out, _ = kstrata(cluster, "history", name, "-n", namespace, "-o", "json")
    assert code == 0
    return [row["created"] for row in json.loads(out)["items"]]


# --- ConfigProfiles ------------------------------------------------------------------

SPEC_1 = {
    "base": {"port": 8080, "log": {"level": "info"}},
    "environments": {"prod": {"port": 443}},
}
SPEC_3 = {
    "base": {"port": 9090, "log": {"level": "debug"}},
    "environments": {"prod": {"port": 443, "log": {"level": "warning"}}},
}


@pytest.fixture
def profile_operator(cluster: TestCluster, namespace: str) -> Iterator[RunningOperator]:
    with running_operator(cluster, namespaces=(namespace,)) as running:
        yield running


@pytest.fixture
def payments(cluster: TestCluster, namespace: str, profile_operator: RunningOperator) -> str:
    """Three revisions: applied, then `kstrata set`, then applied with a stated cause."""
    apply(cluster, namespace, resource("ConfigProfile", "payments", SPEC_1))
    wait_revision(cluster, namespace, "configprofiles", "payments", 1)
    code, _, err = kstrata(cluster, "set", "payments", "log.level=debug", "-n", namespace)
    assert (code, err) == (0, "")
    wait_revision(cluster, namespace, "configprofiles", "payments", 2)
    apply(cluster, namespace, resource("ConfigProfile", "payments", SPEC_3, cause="port 9090"))
    wait_revision(cluster, namespace, "configprofiles", "payments", 3)
    return "payments"


def test_profile_history_and_diffs_as_text(
    cluster: TestCluster, namespace: str, payments: str, tmp_path: Path
) -> None:
    t1, t2, t3 = history_times(cluster, namespace, payments)
    code, out, err = kstrata(cluster, "history", payments, "-n", namespace)
    assert (code, err) == (0, "")
    assert out == (
        "configprofile.kstrata.dev/payments\n"
        "REVISION   CREATED                CURRENT   CHANGE-CAUSE\n"
        f"1          {t1}   no        <none>\n"
        f"2          {t2}   no        kstrata set log.level (generation 2)\n"
        f"3          {t3}   yes       port 9090\n"
    )

    # Default: what the latest revision changed.
    assert kstrata(cluster, "diff", payments, "-n", namespace) == (
        1,
        "--- payments/config.yaml (revision 2)\n"
        "+++ payments/config.yaml (revision 3)\n"
        "@@ -1,3 +1,3 @@\n"
        " log:\n"
        "   level: debug\n"
        "-port: 8080\n"
        "+port: 9090\n",
        "",
    )
    assert kstrata(
        cluster, "diff", payments, "-n", namespace, "--revision", "1", "--to-revision", "2"
    ) == (
        1,
        "--- payments/config.yaml (revision 1)\n"
        "+++ payments/config.yaml (revision 2)\n"
        "@@ -1,3 +1,3 @@\n"
        " log:\n"
        "-  level: info\n"
        "+  level: debug\n"
        " port: 8080\n",
        "",
    )
    assert kstrata(cluster, "diff", payments, "-n", namespace, "--revision", "3") == (0, "", "")
    assert kstrata(
        cluster, "diff", payments, "-n", namespace, "--env", "dev", "--to-env", "prod"
    ) == (
        1,
        "--- payments/config.yaml (environment dev)\n"
        "+++ payments/config.yaml (environment prod)\n"
        "@@ -1,3 +1,3 @@\n"
        " log:\n"
        "-  level: debug\n"
        "-port: 9090\n"
        "+  level: warning\n"
        "+port: 443\n",
        "",
    )
    code, _, err = kstrata(cluster, "diff", payments, "-n", namespace, "--revision", "9")
    # A usage error (2), so scripts cannot mistake it for "differences found" (1).
    assert (code, err) == (
        2,
        f"error: ConfigProfile {namespace}/payments: revision 9 is not in the retained history; "
        f"kstrata history payments -n {namespace} lists the retained ones\n",
    )

    edited = resource("ConfigProfile", "payments", {**SPEC_3, "base": {"port": 9090}})
    path = tmp_path / "payments.yaml"
    path.write_text(yaml.safe_dump(edited))
    assert kstrata(cluster, "diff", "-f", str(path), "-n", namespace) == (
        1,
        "--- payments/config.yaml (live, revision 3)\n"
        f"+++ payments/config.yaml ({path})\n"
        "@@ -1,3 +1 @@\n"
        "-log:\n"
        "-  level: debug\n"
        " port: 9090\n",
        "",
    )
    path.write_text(yaml.safe_dump(resource("ConfigProfile", "payments", SPEC_3)))
    assert kstrata(cluster, "diff", "-f", str(path), "-n", namespace) == (0, "", "")


def test_profile_rollback_through_the_operator(
    cluster: TestCluster,
    namespace: str,
    payments: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = get(cluster, namespace, "configprofiles", payments)

    # Neither a dry run nor -o yaml writes anything.
    code, out, _ = kstrata(cluster, "rollback", payments, "-n", namespace, "--dry-run")
    assert (code, out) == (
        0,
        "--- payments/config.yaml (live, revision 3)\n"
        "+++ payments/config.yaml (revision 2, restored)\n"
        "@@ -1,3 +1,3 @@\n"
        " log:\n"
        "   level: debug\n"
        "-port: 9090\n"
        "+port: 8080\n"
        "configprofile.kstrata.dev/payments rolled back to revision 2 (dry run)\n",
    )
    code, out, _ = kstrata(
        cluster, "rollback", payments, "-n", namespace, "--to-revision", "1", "-o", "yaml"
    )
    assert code == 0
    assert yaml.safe_load(out) == {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigProfile",
        "metadata": {
            "name": "payments",
            "namespace": namespace,
            "annotations": {"kubernetes.io/change-cause": "rollback to 1"},
        },
        # The spec as the API server stored it, defaults included.
        "spec": {**SPEC_1, "revisionHistoryLimit": 10},
    }
    after = get(cluster, namespace, "configprofiles", payments)
    # (The operator may still touch status and its own annotations: compare what a rollback writes.)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    assert after["metadata"]["annotations"]["kubernetes.io/change-cause"] == "port 9090"

    # The dry run's default was explained on stderr; a named revision needs no explaining.
    assert capsys.readouterr().err == (
        "rolling back to revision 2: the last revision before the one serving (3)\n"
    )
    code, out, _ = kstrata(cluster, "rollback", payments, "-n", namespace, "--to-revision", "1")
    assert (code, out) == (
        0,
        "configprofile.kstrata.dev/payments rolled back to revision 1 (now revision 4)\n",
    )
    assert capsys.readouterr().err == ""
    restored = wait_revision(cluster, namespace, "configprofiles", payments, 4)
    assert restored["spec"] == {**SPEC_1, "revisionHistoryLimit": 10}
    config_map = cluster.core.read_namespaced_config_map(payments, namespace)
    assert config_map.data == {"config.yaml": "log:\n  level: info\nport: 8080\n"}

    *_, t3, t4 = history_times(cluster, namespace, payments)
    code, out, _ = kstrata(cluster, "history", payments, "-n", namespace)
    assert code == 0
    assert out.splitlines()[-2:] == [
        f"3          {t3}   no        port 9090",
        f"4          {t4}   yes       rollback to 1",
    ]
    assert kstrata(cluster, "diff", payments, "-n", namespace, "--revision", "1") == (0, "", "")

    # Rolling back to the spec already live writes nothing.
    code, out, _ = kstrata(cluster, "rollback", payments, "-n", namespace, "--to-revision", "1")
    assert (code, out) == (
        0,
        "configprofile.kstrata.dev/payments skipped rollback (the spec already is revision 1's)\n",
    )


def test_every_set_shows_its_cause_and_rollback_defaults_to_the_last_good_revision(
    cluster: TestCluster,
    namespace: str,
    payments: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The same key set twice: two revisions, each with its cause (one was dropped before).
    for port, revision in (("9091", 4), ("9092", 5)):
        code, _, err = kstrata(cluster, "set", payments, f"port={port}", "-n", namespace)
        assert (code, err) == (0, "")
        wait_revision(cluster, namespace, "configprofiles", payments, revision)
    code, out, _ = kstrata(cluster, "history", payments, "-n", namespace)
    causes = [line.split(None, 3)[3] for line in out.splitlines()[-2:]]
    assert causes == ["kstrata set port (generation 4)", "kstrata set port (generation 5)"]

    # A change the operator refuses (a base that does not exist): revision 5 keeps serving.
    cluster.kubectl(
        "patch", "configprofile", payments, "-n", namespace, "--type=merge",
        "-p", '{"spec": {"extends": ["no-such-base"]}}',
    )  # fmt: skip

    def refused() -> bool:
        body = get(cluster, namespace, "configprofiles", payments)
        status = body.get("status") or {}
        ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
        return (
            status.get("observedGeneration") == body["metadata"]["generation"]
            and bool(ready)
            and ready[0]["status"] == "False"
        )

    wait_for(refused, timeout=30, what="the operator to refuse the change")
    capsys.readouterr()
    # The default is the revision serving (5), not the one before it (4).
    code, out, _ = kstrata(cluster, "rollback", payments, "-n", namespace)
    err = capsys.readouterr().err  # what is not the result goes to sys.stderr
    assert code == 0
    assert out.startswith("configprofile.kstrata.dev/payments rolled back to revision 5")
    assert err.startswith("rolling back to revision 5: the revision serving: the spec is not ")
    body = wait_revision(cluster, namespace, "configprofiles", payments, 5)
    assert "extends" not in body["spec"]
    assert body["spec"]["base"]["port"] == 9092

    # Serving what the spec says: the default is the revision before the one serving.
    code, out, _ = kstrata(cluster, "rollback", payments, "-n", namespace, "--dry-run")
    err = capsys.readouterr().err
    assert code == 0
    assert out.endswith("rolled back to revision 4 (dry run)\n")
    assert err == "rolling back to revision 4: the last revision before the one serving (5)\n"


# --- SealedSecrets -------------------------------------------------------------------


@pytest.fixture
def secret_operator(
    cluster: TestCluster, namespace: str, keys_namespace: str
) -> Iterator[RunningOperator]:
    with operator_for(cluster, namespace, keys_namespace) as running:
        yield running


def secret_data(cluster: TestCluster, namespace: str, name: str) -> dict[str, bytes]:
    secret = cluster.core.read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def test_sealed_secret_history_diff_and_rollback_never_show_values(
    cluster: TestCluster,
    namespace: str,
    keys_namespace: str,
    secret_operator: RunningOperator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = published_bundle(cluster, keys_namespace)
    marker = uuid.uuid4().hex[:10]
    values = {
        "password": f"canary-pw1-{marker}".encode(),
        "db-url": f"canary-url-{marker}".encode(),
        "old-key": f"canary-old-{marker}".encode(),
        "password-2": f"canary-pw2-{marker}".encode(),
        "api-token": f"canary-api-{marker}".encode(),
    }

    def sealed(item: str, value: bytes) -> str:
        return seal_for(bundle, value, namespace=namespace, name="db", item=item)

    first = {
        "password": sealed("password", values["password"]),
        "db-url": sealed("db-url", values["db-url"]),
        "old-key": sealed("old-key", values["old-key"]),
    }
    apply(cluster, namespace, resource("SealedSecret", "db", {"encryptedData": first}))
    wait_revision(cluster, namespace, "sealedsecrets", "db", 1)
    # Revision 2: a new password, the same URL sealed again, a key added and one removed.
    second = {
        "password": sealed("password", values["password-2"]),
        "db-url": sealed("db-url", values["db-url"]),
        "api-token": sealed("api-token", values["api-token"]),
    }
    apply(
        cluster,
        namespace,
        resource("SealedSecret", "db", {"encryptedData": second}, cause="rotate password"),
    )
    wait_revision(cluster, namespace, "sealedsecrets", "db", 2)

    outputs: list[str] = []

    def run(*argv: str) -> tuple[int, str, str]:
        result = kstrata(cluster, *argv)
        outputs.extend(result[1:])
        return result

    t1, t2 = history_times(cluster, namespace, "db")
    assert run("history", "db", "-n", namespace, "--kind", "secret") == (
        0,
        "sealedsecret.kstrata.dev/db\n"
        "REVISION   CREATED                CURRENT   CHANGE-CAUSE\n"
        f"1          {t1}   no        <none>\n"
        f"2          {t2}   yes       rotate password\n",
        "",
    )
    assert run("diff", "db", "-n", namespace) == (
        1,
        "--- db (revision 1)\n"
        "+++ db (revision 2)\n"
        "  added     api-token\n"
        "  removed   old-key\n"
        "  changed   password\n"
        "  re-sealed db-url (value unchanged)\n",
        "",
    )

    # A file: no fingerprints outside the operator, so no guessing.
    path = tmp_path / "db.yaml"
    path.write_text(yaml.safe_dump(resource("SealedSecret", "db", {"encryptedData": first})))
    assert run("diff", "-f", str(path), "-n", namespace) == (
        1,
        "--- db (live, revision 2)\n"
        f"+++ db ({path})\n"
        "  added     old-key\n"
        "  removed   api-token\n"
        "  differs   db-url (changed or re-sealed)\n"
        "  differs   password (changed or re-sealed)\n",
        "",
    )

    assert run("rollback", "db", "-n", namespace) == (
        0,
        "sealedsecret.kstrata.dev/db rolled back to revision 1 (now revision 3)\n",
        "",
    )
    wait_revision(cluster, namespace, "sealedsecrets", "db", 3)
    assert secret_data(cluster, namespace, "db") == {
        "password": values["password"],
        "db-url": values["db-url"],
        "old-key": values["old-key"],
    }
    assert run("diff", "db", "-n", namespace, "--revision", "1") == (0, "", "")
    code, out, _ = run("history", "db", "-n", namespace)
    assert code == 0
    assert out.splitlines()[-1].endswith("   yes       rollback to 1")
    outputs.append(capsys.readouterr().err)

    # No value and no ciphertext in anything the CLI printed.
    printed = "".join(outputs)
    assert marker not in printed
    for token in [*first.values(), *second.values()]:
        assert token[:40] not in printed
