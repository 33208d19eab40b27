"""`kstrata list`, `get`, `set` and `import configmap/...` against the real control plane.

The CLI runs in-process (``kstrata.cli.main.main``) with the session's kubeconfig;
objects are arranged and inspected with kubectl and the Kubernetes client, so
each assertion checks what the API server really holds.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from kstrata.cli.main import main
from kstrata.kube import api as kube_api
from support.cluster import TestCluster
from support.config_profiles import apply, get_profile, profile, wait_ready
from support.operator import RunningOperator, running_operator

CANARY = "canary-7d0c-looks-secret"
SCHEMA = {
    "type": "object",
    "properties": {
        "port": {"type": "integer", "maximum": 65535},
        "debug": {"type": "boolean"},
        "name": {"type": "string"},
    },
    "required": ["port"],
}

pytestmark = pytest.mark.usefixtures("kstrata_crds")


@pytest.fixture
def operator(cluster: TestCluster, namespace: str) -> Iterator[RunningOperator]:
    with running_operator(cluster, namespaces=(namespace,)) as running:
        yield running


def kstrata(cluster: TestCluster, *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; ``--kubeconfig`` after the subcommand, as kubectl users type it."""
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--kubeconfig", str(cluster.kubeconfig)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def resource_version(cluster: TestCluster, namespace: str, name: str) -> str:
    return str(get_profile(cluster, namespace, name)["metadata"]["resourceVersion"])


def create_config_map(cluster: TestCluster, namespace: str, name: str, data: dict[str, str]) -> Any:
    return cluster.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data)
    )


# --- list --------------------------------------------------------------------


def test_list_shows_what_the_operator_reported(
    cluster: TestCluster,
    namespace: str,
    operator: RunningOperator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    apply(cluster, namespace, profile("api", {"base": {"port": 80}}))
    apply(
        cluster,
        namespace,
        profile(
            "web",
            {
                "environment": "prod",
                "base": {"replicas": 1},
                "environments": {"prod": {"replicas": 3}},
                "output": {"configMapName": "web-config"},
            },
        ),
    )
    wait_ready(cluster, namespace, "api", revision=1)
    wait_ready(cluster, namespace, "web", revision=1)

    code, out, err = kstrata(cluster, "list", "-n", namespace)
    assert (code, err) == (0, "")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["NAME", "ENVIRONMENT", "REVISION", "READY", "STATUS", "CONFIGMAP", "AGE"]
    assert [line[:6] for line in lines[1:]] == [
        ["api", "dev", "1", "True", "Current", "api"],
        ["web", "prod", "1", "True", "Current", "web-config"],
    ]
    assert all(line[6].endswith(("s", "m")) for line in lines[1:])
    # Columns line up: every value starts where its header does.
    header = out.splitlines()[0]
    assert out.splitlines()[2].index("web-config") == header.index("CONFIGMAP")

    # -o json: a Kubernetes List of the objects, as kubectl prints several.
    code, out, _ = kstrata(cluster, "list", "-n", namespace, "-o", "json")
    assert code == 0
    listed = json.loads(out)
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    assert [(i["kind"], i["metadata"]["name"]) for i in listed["items"]] == [
        ("ConfigProfile", "api"),
        ("ConfigProfile", "web"),
    ]
    assert listed["items"][1]["spec"]["output"]["configMapName"] == "web-config"
    assert listed["items"][1]["status"]["configMapName"] == "web-config"
    assert all("managedFields" not in i["metadata"] for i in listed["items"])
    assert kstrata(cluster, "list", "-n", namespace, "-o", "name") == (
        0,
        "configprofile.kstrata.dev/api\nconfigprofile.kstrata.dev/web\n",
        "",
    )
    code, out, _ = kstrata(cluster, "list", "-n", namespace, "-o", "wide")
    assert out.splitlines()[0].split()[-2:] == ["GENERATION", "OBSERVED"]

    # A namespace the operator does not watch: nothing reported yet.
    with cluster.temporary_namespace() as other:
        apply(cluster, other, profile("idle", {"base": {}}))
        code, out, _ = kstrata(cluster, "list", "-A")
        assert code == 0
        lines = [line.split() for line in out.splitlines()]
        assert lines[0][:2] == ["NAMESPACE", "NAME"]
        assert [namespace, "api", "dev", "1", "True", "Current", "api"] in [
            line[:7] for line in lines
        ]
        # Never handled: the status is stale (no observedGeneration at all).
        assert [other, "idle", "<none>", "<none>", "Unknown", "Stale", "<none>"] in [
            line[:7] for line in lines
        ]

    with cluster.temporary_namespace() as empty:
        capsys.readouterr()
        assert kstrata(cluster, "list", "-n", empty) == (0, "", "")
        assert capsys.readouterr().err == (
            f"No ConfigProfiles or SealedSecrets found in namespace {empty} "
            "(-A lists every namespace's).\n"
        )
        assert kstrata(cluster, "list", "-n", empty, "-o", "yaml") == (
            0,
            "apiVersion: v1\nitems: []\nkind: List\nmetadata: {}\n",
            "",
        )


# --- get ---------------------------------------------------------------------


@pytest.fixture
def layered(cluster: TestCluster, namespace: str) -> str:
    apply(cluster, namespace, profile("shared", {"base": {"region": "eu", "db": {"pool": 5}}}))
    apply(
        cluster,
        namespace,
        profile(
            "app",
            {
                "extends": ["shared"],
                "base": {
                    "port": 8080,
                    "debug": False,
                    "token": CANARY,
                    "db": {"host": "localhost"},
                    "hosts": ["a", "b"],
                },
                "environments": {
                    "prod": {"db": {"host": "db.prod"}},
                    "staging": {"port": 9090},
                },
            },
        ),
    )
    return namespace


def test_get_prints_the_effective_config_with_bases_and_overlay(
    cluster: TestCluster, layered: str
) -> None:
    namespace = layered
    dev = {
        "region": "eu",
        "db": {"pool": 5, "host": "localhost"},
        "port": 8080,
        "debug": False,
        "token": CANARY,
        "hosts": ["a", "b"],
    }
    code, out, err = kstrata(cluster, "get", "--spec", "app", "-n", namespace)
    assert (code, err) == (0, "")
    assert yaml.safe_load(out) == dev
    assert out == yaml.safe_dump(dev, sort_keys=True)  # deterministic

    code, out, _ = kstrata(
        cluster, "get", "--spec", "app", "-n", namespace, "--env", "prod", "-o", "json"
    )
    assert code == 0
    assert json.loads(out) == {**dev, "db": {"pool": 5, "host": "db.prod"}}

    # Global flags before the subcommand work too.
    out_buffer = io.StringIO()
    argv = ["--kubeconfig", str(cluster.kubeconfig), "get", "--spec", "app", "-n", namespace]
    assert main([*argv, "--key", "db.host", "--env", "prod"], out=out_buffer) == 0
    assert out_buffer.getvalue() == "db.prod\n"


def test_get_key_prints_scalars_plain_and_subtrees_as_data(
    cluster: TestCluster, layered: str
) -> None:
    namespace = layered
    for key, expected in (
        ("port", "8080\n"),
        ("debug", "false\n"),
        ("region", "eu\n"),
        ("hosts.1", "b\n"),
        ("db", "host: localhost\npool: 5\n"),
        ("hosts", "- a\n- b\n"),
    ):
        assert kstrata(cluster, "get", "--spec", "app", "-n", namespace, "--key", key) == (
            0,
            expected,
            "",
        )
    assert kstrata(
        cluster, "get", "--spec", "app", "-n", namespace, "--key", "db", "-o", "json"
    ) == (
        0,
        '{\n  "host": "localhost",\n  "pool": 5\n}\n',
        "",
    )
    assert kstrata(
        cluster, "get", "--spec", "app", "-n", namespace, "--key", "port", "-o", "json"
    ) == (
        0,
        "8080\n",
        "",
    )


def test_get_missing_key_is_exit_1_naming_the_path_not_values(
    cluster: TestCluster, layered: str
) -> None:
    namespace = layered
    code, out, err = kstrata(
        cluster, "get", "--spec", "app", "-n", namespace, "--key", "db.password"
    )
    assert (code, out) == (1, "")
    assert err == (
        f"error: key db.password not found in ConfigProfile {namespace}/app (environment dev)\n"
    )
    code, out, err = kstrata(
        cluster, "get", "--spec", "app", "-n", namespace, "--key", "token.inner"
    )
    assert (code, out) == (1, "")
    assert "key token.inner not found" in err
    assert "token holds a scalar" in err
    assert CANARY not in err

    code, _, err = kstrata(cluster, "get", "nothing-here", "-n", namespace)
    assert code == 3
    assert "not found" in err


def test_get_environment_precedence(cluster: TestCluster, layered: str) -> None:
    """--env, else status.environment, else spec.environment, else the label, else dev."""
    namespace = layered

    def port(*extra: str) -> str:
        code, out, err = kstrata(
            cluster, "get", "--spec", "app", "-n", namespace, "--key", "port", *extra
        )
        assert (code, err) == (0, "")
        return out.strip()

    assert port() == "8080"  # dev: no overlay for port
    cluster.kubectl("label", "ns", namespace, "kstrata.dev/environment=staging")
    assert port() == "9090"  # the namespace label
    cluster.kubectl(
        "patch", "configprofile", "app", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"environment": "prod"}}',
    )  # fmt: skip
    code, out, _ = kstrata(cluster, "get", "--spec", "app", "-n", namespace, "--key", "db.host")
    assert (code, out) == (0, "db.prod\n")  # spec.environment beats the label
    cluster.kubectl(
        "patch", "configprofile", "app", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", '{"status": {"environment": "staging"}}',
    )  # fmt: skip
    assert port() == "9090"  # what the operator last rendered beats the spec
    assert port("--env", "dev") == "8080"  # the flag beats everything


# --- set ---------------------------------------------------------------------


def test_set_writes_typed_values_and_a_change_cause_without_values(
    cluster: TestCluster, namespace: str, operator: RunningOperator
) -> None:
    apply(
        cluster,
        namespace,
        profile("api", {"schema": SCHEMA, "base": {"port": 80, "log": {"level": "info"}}}),
    )
    wait_ready(cluster, namespace, "api", revision=1)

    code, out, err = kstrata(
        cluster, "set", "api", "port=8080", "debug=true", "name='x'", "log.level=debug",
        "-n", namespace, "--create",
    )  # fmt: skip
    # It waited for the operator: the change is applied, and serving as revision 2.
    assert (code, out, err) == (
        0,
        "configprofile.kstrata.dev/api configured (serving revision 2)\n",
        "",
    )
    body = get_profile(cluster, namespace, "api")
    base = body["spec"]["base"]
    assert base == {"port": 8080, "debug": True, "name": "x", "log": {"level": "debug"}}
    assert type(base["port"]) is int
    assert type(base["debug"]) is bool
    annotations = body["metadata"]["annotations"]
    # The generation the write made: each set's cause is its own (see history).
    assert annotations["kubernetes.io/change-cause"] == (
        "kstrata set port,debug,name,log.level (generation 2)"
    )

    # The operator renders the change.
    wait_ready(cluster, namespace, "api", revision=2)
    rendered = cluster.core.read_namespaced_config_map("api", namespace).data["config.yaml"]
    assert yaml.safe_load(rendered) == base

    # A new overlay is a mistake unless --create says so.
    code, out, err = kstrata(cluster, "set", "api", "--env", "prod", "port=9443", "-n", namespace)
    assert (code, out) == (2, "")
    assert err == (
        f"error: environment prod is not declared by ConfigProfile {namespace}/api; "
        "declared: dev; pass --create to add a new overlay\n"
    )
    code, out, _ = kstrata(
        cluster, "set", "api", "--env", "prod", "port=9443", "-n", namespace, "--create"
    )
    # Applied; dev renders the same, so revision 2 keeps serving.
    assert (code, out) == (0, "configprofile.kstrata.dev/api configured (serving revision 2)\n")
    body = get_profile(cluster, namespace, "api")
    assert body["spec"]["environments"] == {"prod": {"port": 9443}}
    assert body["metadata"]["annotations"]["kubernetes.io/change-cause"] == (
        "kstrata set --env prod port (generation 3)"
    )
    assert body["spec"]["base"] == base

    # Setting what is already there writes nothing (the operator may still be
    # patching status, so the spec's generation is the witness).
    code, out, _ = kstrata(cluster, "set", "api", "--env", "prod", "port=9443", "-n", namespace)
    assert (code, out) == (0, "configprofile.kstrata.dev/api unchanged\n")
    after = get_profile(cluster, namespace, "api")
    assert after["metadata"]["generation"] == body["metadata"]["generation"]


def test_set_validates_the_whole_profile_before_writing(
    cluster: TestCluster, namespace: str
) -> None:
    apply(
        cluster,
        namespace,
        profile(
            "api",
            {"schema": SCHEMA, "base": {"port": 80, "name": "a"}, "environments": {"prod": {}}},
        ),
    )
    before = resource_version(cluster, namespace, "api")

    code, out, err = kstrata(cluster, "set", "api", f"port={CANARY}", "-n", namespace)
    assert (code, out) == (1, "")
    # Every environment is checked: dev (the default) and prod (declared).
    assert "environment dev: $.port: must be of type integer" in err
    assert "environment prod: $.port: must be of type integer" in err
    assert CANARY not in err

    code, _, err = kstrata(cluster, "set", "api", "--env", "prod", "port=70000", "-n", namespace)
    assert code == 1
    assert "environment prod: $.port: must be <= 65535" in err
    assert "environment dev" not in err

    code, _, err = kstrata(cluster, "set", "api", "name.first=x", "-n", namespace, "--create")
    assert code == 1
    assert "cannot set name.first: spec.base.name is not an object" in err

    # A value typed where KEY=VALUE belongs is a usage error that does not echo it.
    code, _, err = kstrata(cluster, "set", "api", CANARY, "-n", namespace)
    assert code == 2
    assert "expected KEY=VALUE" in err
    assert CANARY not in err

    assert resource_version(cluster, namespace, "api") == before
    assert get_profile(cluster, namespace, "api")["spec"]["base"] == {"port": 80, "name": "a"}

    code, _, err = kstrata(cluster, "set", "missing", "port=1", "-n", namespace)
    assert code == 3
    assert "not found" in err


def test_set_dry_run_prints_the_result_and_writes_nothing(
    cluster: TestCluster, namespace: str
) -> None:
    apply(cluster, namespace, profile("api", {"schema": SCHEMA, "base": {"port": 80}}))
    before = resource_version(cluster, namespace, "api")
    code, out, err = kstrata(
        cluster, "set", "api", "port=8081", "log.level=warn", "--dry-run", "-n", namespace,
        "--create",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert yaml.safe_load(out) == {
        "apiVersion": "kstrata.dev/v1alpha1",
        "kind": "ConfigProfile",
        "metadata": {
            "name": "api",
            "namespace": namespace,
            "annotations": {
                "kubernetes.io/change-cause": "kstrata set port,log.level (generation 2)"
            },
        },
        # The whole spec as the API server holds it (with the CRD's defaults).
        "spec": {
            "schema": SCHEMA,
            "base": {"port": 8081, "log": {"level": "warn"}},
            "revisionHistoryLimit": 10,
        },
    }
    assert resource_version(cluster, namespace, "api") == before

    code, out, _ = kstrata(cluster, "set", "api", "port=x", "--dry-run", "-n", namespace)
    assert (code, out) == (1, "")
    assert resource_version(cluster, namespace, "api") == before


def _race(
    monkeypatch: pytest.MonkeyPatch, cluster: TestCluster, namespace: str, races: int
) -> list[str]:
    """Before each of the first ``races`` writes, another client changes the profile."""
    original = kube_api.KubeApi.replace
    seen: list[str] = []

    def racing(
        self: kube_api.KubeApi, resource: Any, ns: str | None, body: Any, **options: Any
    ) -> Any:
        seen.append(body["metadata"]["resourceVersion"])
        if len(seen) <= races:
            cluster.kubectl(
                "label", "configprofile", "api", "-n", namespace, f"race={len(seen)}",
                "--overwrite",
            )  # fmt: skip
        return original(self, resource, ns, body, **options)

    monkeypatch.setattr(kube_api.KubeApi, "replace", racing)
    return seen


def test_set_rereads_and_retries_once_after_a_conflict(
    cluster: TestCluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(cluster, namespace, profile("api", {"base": {"port": 80}}))
    seen = _race(monkeypatch, cluster, namespace, races=1)
    code, out, err = kstrata(cluster, "set", "api", "port=81", "-n", namespace, "--no-wait")
    assert (code, out, err) == (0, "configprofile.kstrata.dev/api configured\n", "")
    assert len(seen) == 2
    assert seen[0] != seen[1]  # the retry used the re-read resourceVersion
    body = get_profile(cluster, namespace, "api")
    assert body["spec"]["base"] == {"port": 81}
    assert body["metadata"]["labels"] == {"race": "1"}  # the concurrent change survived


def test_set_gives_up_after_a_second_conflict(
    cluster: TestCluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(cluster, namespace, profile("api", {"base": {"port": 80}}))
    seen = _race(monkeypatch, cluster, namespace, races=2)
    code, out, err = kstrata(cluster, "set", "api", "port=81", "-n", namespace, "--no-wait")
    assert (code, out) == (3, "")
    assert "changed while kstrata set was writing" in err
    assert len(seen) == 2
    body = get_profile(cluster, namespace, "api")
    assert body["spec"]["base"] == {"port": 80}
    assert body["metadata"]["labels"] == {"race": "2"}
    assert "kubernetes.io/change-cause" not in (body["metadata"].get("annotations") or {})


# --- import configmap --------------------------------------------------------


def test_import_configmap_round_trip_adopts_without_writing_data(
    cluster: TestCluster,
    namespace: str,
    operator: RunningOperator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = {"app.yaml": "db:\n  hosts:\n  - a\n  - b\nlog:\n  level: info\nport: 8080\n"}
    create_config_map(cluster, namespace, "legacy", data)

    capsys.readouterr()
    code, out, err = kstrata(cluster, "import", "configmap/legacy", "-n", namespace)
    assert (code, err) == (0, "")
    hint = capsys.readouterr().err
    assert f"kubectl annotate configmap legacy -n {namespace} kstrata.dev/adopt=true" in hint
    assert out == (
        "apiVersion: kstrata.dev/v1alpha1\n"
        "kind: ConfigProfile\n"
        "metadata:\n"
        "  name: legacy\n"
        f"  namespace: {namespace}\n"
        "spec:\n"
        "  base:\n"
        "    db:\n"
        "      hosts:\n"
        "      - a\n"
        "      - b\n"
        "    log:\n"
        "      level: info\n"
        "    port: 8080\n"
        "  output:\n"
        "    configMapName: legacy\n"
        "    format: yaml\n"
        "    key: app.yaml\n"
    )

    cluster.kubectl("annotate", "configmap", "legacy", "-n", namespace, "kstrata.dev/adopt=true")
    apply(cluster, namespace, out)
    body = wait_ready(cluster, namespace, "legacy", revision=1)
    cm = cluster.core.read_namespaced_config_map("legacy", namespace)
    assert cm.data == data
    (owner,) = cm.metadata.owner_references or []
    assert (owner.kind, owner.uid) == ("ConfigProfile", body["metadata"]["uid"])
    # kstrata wrote labels and the ownerReference, never data.
    ours = [m for m in cm.metadata.managed_fields or [] if m.manager == "kstrata"]
    assert ours
    assert all("f:data" not in (m.fields_v1 or {}) for m in ours)


def test_import_configmap_with_flattened_env_keys(cluster: TestCluster, namespace: str) -> None:
    data = {"config.env": "DB_HOST=localhost\nPORT=8080\n", "DB_HOST": "localhost", "PORT": "8080"}
    create_config_map(cluster, namespace, "flat", data)
    code, out, _ = kstrata(cluster, "import", "cm/flat", "-n", namespace, "--name", "flat-app")
    assert code == 0
    manifest = yaml.safe_load(out)
    assert manifest["metadata"] == {"name": "flat-app", "namespace": namespace}
    assert manifest["spec"] == {
        "base": {"DB_HOST": "localhost", "PORT": "8080"},
        "output": {
            "configMapName": "flat",
            "format": "env",
            "key": "config.env",
            "flattenKeys": True,
        },
    }


def test_import_configmap_refuses_what_it_cannot_reproduce(
    cluster: TestCluster, namespace: str
) -> None:
    create_config_map(
        cluster, namespace, "commented", {"app.yaml": f"# tuned by hand\ntoken: {CANARY}\n"}
    )
    code, out, err = kstrata(cluster, "import", "configmap/commented", "-n", namespace)
    assert (code, out) == (1, "")
    assert (
        f"error: ConfigMap {namespace}/commented key app.yaml cannot be reproduced byte for "
        "byte: it has comments"
    ) in err
    assert CANARY not in err

    create_config_map(cluster, namespace, "two", {"a.yaml": "a: 1\n", "b.yaml": "b: 1\n"})
    code, out, err = kstrata(cluster, "import", "configmap/two", "-n", namespace)
    assert (code, out) == (1, "")
    assert "has keys (a.yaml, b.yaml) that are not one configuration file" in err

    create_config_map(cluster, namespace, "extra", {"app.yaml": "a: 1\n", "notes": CANARY})
    code, out, err = kstrata(cluster, "import", "configmap/extra", "-n", namespace)
    assert (code, out) == (1, "")
    assert "the keys besides app.yaml (notes) are not the flattened env keys" in err
    assert CANARY not in err

    code, _, err = kstrata(cluster, "import", "configmap/absent", "-n", namespace)
    assert code == 3
    assert "not found" in err
    assert kstrata(cluster, "import", "secret/x", "-n", namespace)[0] == 2
