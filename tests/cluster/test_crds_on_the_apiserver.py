"""The committed CRDs (crds/) on a real apiserver, with no operator running.

Everything checked here is enforced by kube-apiserver alone: the structural
schema (types, enums, patterns, bounds, unknown fields), the defaults, the
CEL rules and the status subresource.  Nothing in this module starts the
operator, so a rejection can only come from the CRDs themselves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kstrata.domain.crds import configprofile_crd, sealedsecret_crd
from support.cluster import TestCluster
from support.waiting import wait_for

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"
CRD_NAMES = ("configprofiles.kstrata.dev", "sealedsecrets.kstrata.dev")
TOKEN = "kss1:" + "A" * 40


@pytest.fixture(scope="module")
def crds(cluster: TestCluster) -> None:
    """crds/ applied the way users apply it, and Established."""
    applied = cluster.kubectl("apply", "-k", str(CRDS_DIR))
    for name in CRD_NAMES:
        assert f"customresourcedefinition.apiextensions.k8s.io/{name}" in applied.stdout
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{name}" for name in CRD_NAMES),
    )


pytestmark = pytest.mark.usefixtures("crds")


# --- manifests -----------------------------------------------------------


def profile(name: str = "app", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kstrata.dev/v1alpha1",
        "kind": "ConfigProfile",
        "metadata": {"name": name},
        "spec": {"base": {"greeting": "hello"}, **spec},
    }


def sealed(name: str = "db", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kstrata.dev/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": name},
        "spec": {"encryptedData": {"password": TOKEN}, **spec},
    }


def create(cluster: TestCluster, namespace: str, manifest: dict[str, Any]) -> Any:
    return cluster.kubectl(
        "create", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False
    )


def read(cluster: TestCluster, namespace: str, resource: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        cluster.kubectl("get", "-n", namespace, resource, name, "-o", "json").stdout
    )
    return found


def collapse(text: str) -> str:
    """kubectl wraps descriptions; compare with whitespace collapsed."""
    return re.sub(r"\s+", " ", text).strip()


def assert_rejected(result: Any, *fragments: str) -> None:
    assert result.returncode != 0, f"the apiserver accepted it:\n{result.stdout}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"


# --- registration and discovery ------------------------------------------


def test_served_names_scope_and_subresources_match_the_contract(cluster: TestCluster) -> None:
    for name, short in zip(CRD_NAMES, ("cfp", "kss"), strict=True):
        served = json.loads(cluster.kubectl("get", "crd", name, "-o", "json").stdout)
        spec = served["spec"]
        assert spec["group"] == "kstrata.dev"
        assert spec["scope"] == "Namespaced"
        assert spec["names"]["shortNames"] == [short]
        assert spec["names"]["categories"] == ["kstrata"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"] == {"status": {}}
        conditions = {c["type"]: c["status"] for c in served["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"


@pytest.mark.parametrize(
    ("resource", "crd"),
    [("configprofile", configprofile_crd), ("sealedsecret", sealedsecret_crd)],
)
def test_kubectl_explain_shows_every_spec_field_description(
    cluster: TestCluster, resource: str, crd: Callable[[], dict[str, Any]]
) -> None:
    root = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = root["properties"]["spec"]

    # The OpenAPI document is published asynchronously after Established.
    def explained() -> str | None:
        result = cluster.kubectl("explain", f"{resource}.spec", check=False)
        return collapse(result.stdout) if result.returncode == 0 else None

    text = wait_for(explained, timeout=60, what=f"kubectl explain {resource}.spec")
    assert collapse(spec["description"]) in text
    for field, node in spec["properties"].items():
        assert re.search(rf"\b{field}\b", text), field
        assert collapse(node["description"]) in text, field


def test_explain_reaches_nested_fields_through_short_names(cluster: TestCluster) -> None:
    output = cluster.kubectl("explain", "cfp.spec.output.format").stdout
    assert "File format of the rendered configuration" in collapse(output)
    for value in ("yaml", "json", "env", "properties"):
        assert re.search(rf"^\s+{value}$", output, re.MULTILINE), value
    scope = collapse(cluster.kubectl("explain", "kss.spec.scope").stdout)
    assert "cannot change after creation" in scope


def test_short_names_category_and_full_names_list_the_objects(
    cluster: TestCluster, namespace: str
) -> None:
    assert create(cluster, namespace, profile()).returncode == 0
    assert create(cluster, namespace, sealed()).returncode == 0

    def names(*args: str) -> set[str]:
        out = cluster.kubectl("get", *args, "-n", namespace, "-o", "name").stdout
        return set(out.split())

    profile_name = "configprofile.kstrata.dev/app"
    secret_name = "sealedsecret.kstrata.dev/db"
    assert names("kstrata") == {profile_name, secret_name}
    assert names("cfp") == {profile_name}
    assert names("kss") == {secret_name}
    assert names("configprofiles.kstrata.dev") == {profile_name}
    assert names("sealedsecrets.kstrata.dev") == {secret_name}


# --- defaults, printer columns, status -----------------------------------


def test_defaults_are_applied_and_nulls_in_overlays_survive(
    cluster: TestCluster, namespace: str
) -> None:
    manifest = profile(
        base={"server": {"port": 8080, "debug": None}},
        # RFC 7386: null deletes a key; an environment with null declares it unchanged.
        environments={"prod": None, "dev": {"server": {"debug": None, "extra": [1, None]}}},
        output={"configMapName": "app-config"},
    )
    assert create(cluster, namespace, manifest).returncode == 0
    spec = read(cluster, namespace, "cfp", "app")["spec"]
    assert spec["base"] == manifest["spec"]["base"]
    assert spec["environments"] == manifest["spec"]["environments"]
    assert spec["revisionHistoryLimit"] == 10
    assert spec["output"] == {"configMapName": "app-config", "format": "yaml"}

    assert create(cluster, namespace, sealed()).returncode == 0
    secret_spec = read(cluster, namespace, "kss", "db")["spec"]
    assert secret_spec["scope"] == "strict"
    assert secret_spec["revisionHistoryLimit"] == 10


def _table(cluster: TestCluster, namespace: str, resource: str) -> list[list[str]]:
    out = cluster.kubectl("get", resource, "-n", namespace).stdout
    return [line.split() for line in out.strip().splitlines()]


def test_printer_columns_show_the_status_the_operator_writes(
    cluster: TestCluster, namespace: str
) -> None:
    assert create(cluster, namespace, profile()).returncode == 0
    assert create(cluster, namespace, sealed(scope="namespace")).returncode == 0
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Rendered",
        "message": "rendered revision 3 for environment prod",
        "observedGeneration": 1,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }
    # Exactly the fields kstrata.app writes: none may be pruned by the schema.
    profile_status = {
        "observedGeneration": 1,
        "environment": "prod",
        "environmentSource": "namespace-label",
        "revision": 3,
        "configMapName": "app",
        "renderedDigest": "0" * 64,
        "dependsOn": ["shared"],
        "workloads": [{"kind": "Deployment", "name": "web", "revision": 3}],
        "conditions": [ready],
    }
    secret_status = {
        "observedGeneration": 1,
        "environment": "prod",
        "environmentSource": "spec",
        "revision": 2,
        "secretName": "db",
        "keyIds": ["0123456789abcdef0123456789abcdef"],
        "items": [
            {
                "key": "password",
                "fingerprint": "hmac-sha256:AAAAAAAAAAAAAAAAAAAAAA",
                "keyId": "0123456789abcdef0123456789abcdef",
            }
        ],
        "workloads": [],
        "conditions": [dict(ready, reason="Unsealed", message="unsealed revision 2")],
    }
    for resource, name, status in (("cfp", "app", profile_status), ("kss", "db", secret_status)):
        cluster.kubectl(
            "patch", resource, name, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}),
        )  # fmt: skip
        assert read(cluster, namespace, resource, name)["status"] == status

    # Why a profile is (not) Ready, and whether the status speaks for the
    # current spec (Generation against Observed: the operator stopped or behind).
    header, row = _table(cluster, namespace, "cfp")
    assert header == [
        "NAME", "ENVIRONMENT", "REVISION", "READY", "REASON", "GENERATION", "OBSERVED", "AGE",
    ]  # fmt: skip
    assert row[:7] == ["app", "prod", "3", "True", "Rendered", "1", "1"]
    header, row = _table(cluster, namespace, "kss")
    assert header == [
        "NAME", "SCOPE", "ENVIRONMENT", "REVISION", "READY", "REASON", "GENERATION",
        "OBSERVED", "AGE",
    ]  # fmt: skip
    assert row[:8] == ["db", "namespace", "prod", "2", "True", "Unsealed", "1", "1"]


def test_status_is_validated_too(cluster: TestCluster, namespace: str) -> None:
    assert create(cluster, namespace, sealed()).returncode == 0
    bad = {"status": {"items": [{"key": "password", "fingerprint": "sha1:abc"}]}}
    result = cluster.kubectl(
        "patch", "kss", "db", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(bad), check=False,
    )  # fmt: skip
    assert_rejected(result, "status.items[0].fingerprint")


# --- rejected without an operator ----------------------------------------

REJECTED: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    # Structural schema: enums, patterns, bounds, types, unknown fields.
    ("unknown format", profile(output={"format": "toml"}), ("spec.output.format", "Unsupported")),
    ("format not a string", profile(output={"format": 1}), ("spec.output.format",)),
    ("bad environment", profile(environment="Prod_1"), ("spec.environment",)),
    ("extends twice", profile(extends=["base", "base"]), ("spec.extends[1]", "Duplicate")),
    ("extends 17", profile(extends=[f"b{i}" for i in range(17)]), ("spec.extends", "Too many")),
    ("bad extends name", profile(extends=["Base"]), ("spec.extends[0]",)),
    ("history 0", profile(revisionHistoryLimit=0), ("spec.revisionHistoryLimit",)),
    ("history 101", profile(revisionHistoryLimit=101), ("spec.revisionHistoryLimit",)),
    ("base not an object", profile(base=[1, 2]), ("spec.base",)),
    (
        "overlay not an object",
        profile(environments={"dev": "x"}),
        ("spec.environments.dev", "must be of type object"),
    ),
    ("unknown output field", profile(output={"colour": "red"}), ('unknown field "spec.output',)),
    ("bad configmap key", profile(output={"key": "a/b"}), ("spec.output.key",)),
    (
        "bad reload kind",
        profile(reload={"targets": [{"kind": "Pod", "name": "p"}]}),
        ("spec.reload.targets[0].kind", "Unsupported"),
    ),
    ("no spec", {k: v for k, v in profile().items() if k != "spec"}, ("spec", "Required value")),
    # CEL rules.
    (
        "extends itself",
        profile(extends=["base", "app"]),
        ("spec.extends", "must not extend itself"),
    ),
    (
        "bad environment key",
        profile(environments={"Prod": {}}),
        ("spec.environments", "environment names must be DNS labels"),
    ),
    (
        "environment key too long",
        profile(environments={"e" * 64: {}}),
        ("spec.environments", "environment names must be DNS labels"),
    ),
    (
        "configmap key ..",
        profile(output={"key": "..data"}),
        ("must not be '.' or start with '..'",),
    ),
    (
        "name and selector",
        profile(
            reload={
                "targets": [
                    {"kind": "Deployment", "name": "w", "selector": {"matchLabels": {"a": "b"}}}
                ]
            }
        ),
        ("spec.reload.targets[0]", "set exactly one of name and selector"),
    ),
    (
        "neither name nor selector",
        profile(reload={"targets": [{"kind": "StatefulSet"}]}),
        ("set exactly one of name and selector",),
    ),
    (
        "bad selector label key",
        profile(
            reload={"targets": [{"kind": "DaemonSet", "selector": {"matchLabels": {"-a": "b"}}}]}
        ),
        ("matchLabels", "label keys must be qualified names"),
    ),
    # SealedSecret: schema.
    ("not a token", sealed(encryptedData={"pw": "plaintext!"}), ("spec.encryptedData.pw",)),
    (
        "token too long",
        sealed(encryptedData={"pw": "kss1:" + "A" * 1_399_640}),
        ("spec.encryptedData.pw", "Too long"),
    ),
    ("unknown scope", sealed(scope="global"), ("spec.scope", "Unsupported")),
    ("immutable not bool", sealed(template={"immutable": "yes"}), ("spec.template.immutable",)),
    # SealedSecret: CEL.
    (
        "bad item key",
        sealed(encryptedData={"a/b": TOKEN}),
        ("spec.encryptedData", "item keys must be valid Secret keys"),
    ),
    (
        "item key ..",
        sealed(encryptedData={"..data": TOKEN}),
        ("item keys must be valid Secret keys",),
    ),
    (
        "bad environment item key",
        sealed(environments={"prod": {"encryptedData": {"a b": TOKEN}}}),
        ("spec.environments[prod].encryptedData", "item keys must be valid Secret keys"),
    ),
    (
        "bad sealed environment key",
        sealed(environments={"PROD": {}}),
        ("spec.environments", "environment names must be DNS labels"),
    ),
    (
        "service account token",
        sealed(template={"type": "kubernetes.io/service-account-token"}),
        ("spec.template.type", "cannot be sealed"),
    ),
    (
        "bootstrap token",
        sealed(template={"type": "bootstrap.kubernetes.io/token"}),
        ("spec.template.type", "cannot be sealed"),
    ),
    (
        "bad template label key",
        sealed(template={"labels": {"a/b/c": "x"}}),
        ("spec.template.labels", "label keys must be qualified names"),
    ),
]


@pytest.fixture(scope="module")
def shared_namespace(cluster: TestCluster) -> Iterator[str]:
    """One namespace for every rejection case: nothing is ever created in it."""
    with cluster.temporary_namespace("reject") as name:
        yield name


@pytest.mark.parametrize(
    ("manifest", "fragments"),
    [pytest.param(manifest, fragments, id=label) for label, manifest, fragments in REJECTED],
)
def test_invalid_objects_are_rejected_by_the_apiserver(
    cluster: TestCluster,
    shared_namespace: str,
    manifest: dict[str, Any],
    fragments: tuple[str, ...],
) -> None:
    namespace = shared_namespace
    resource = "cfp" if manifest["kind"] == "ConfigProfile" else "kss"
    result = create(cluster, namespace, manifest)
    if result.returncode == 0:
        # Keep the shared namespace empty so the next case is judged on its own.
        cluster.kubectl("delete", resource, "--all", "-n", namespace)
    assert_rejected(result, *fragments)
    listed = cluster.kubectl("get", resource, "-n", namespace, "-o", "name").stdout
    assert listed.strip() == ""


def test_valid_objects_using_every_field_are_accepted(cluster: TestCluster, namespace: str) -> None:
    selector = {"matchLabels": {"app.kubernetes.io/name": "web", "tier": ""}}
    full_profile = profile(
        environments={"prod": {"greeting": "hi"}, "dev-1": None},
        extends=["shared", "team.defaults"],
        environment="prod",
        schema={"type": "object", "properties": {"greeting": {"type": "string"}}},
        output={"configMapName": "app-config", "format": "env", "key": "app.env",
                "flattenKeys": True},
        revisionHistoryLimit=100,
        reload={"targets": [{"kind": "Deployment", "name": "web"},
                            {"kind": "StatefulSet", "selector": selector}]},
    )  # fmt: skip
    full_secret = sealed(
        encryptedData={"password": TOKEN, "tls.crt": TOKEN, "a_b-c": "kss2:x"},
        environments={"prod": {"encryptedData": {"password": TOKEN}}, "dev": {}},
        environment="prod",
        scope="cluster",
        template={
            "type": "kubernetes.io/tls",
            "labels": {"team": "a"},
            "annotations": {"example.com/owner": "free text, any length"},
            "immutable": True,
        },
        revisionHistoryLimit=1,
        reload={"targets": [{"kind": "DaemonSet", "selector": selector}]},
    )
    for manifest in (full_profile, full_secret):
        result = create(cluster, namespace, manifest)
        assert result.returncode == 0, result.stderr
    assert read(cluster, namespace, "cfp", "app")["spec"] == full_profile["spec"]
    assert read(cluster, namespace, "kss", "db")["spec"] == full_secret["spec"]


# --- updates -------------------------------------------------------------


def _patch(cluster: TestCluster, namespace: str, name: str, spec: dict[str, Any]) -> Any:
    return cluster.kubectl(
        "patch", "kss", name, "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": spec}), check=False,
    )  # fmt: skip


def test_scope_cannot_change_after_creation(cluster: TestCluster, namespace: str) -> None:
    assert create(cluster, namespace, sealed(scope="namespace")).returncode == 0
    immutable = "scope is immutable"
    assert_rejected(_patch(cluster, namespace, "db", {"scope": "cluster"}), "spec.scope", immutable)
    # Removing it would re-default it to strict: a change too.
    assert_rejected(_patch(cluster, namespace, "db", {"scope": None}), immutable)
    # Other fields still change, with the scope restated or left out.
    changed = _patch(cluster, namespace, "db", {"scope": "namespace", "environment": "prod"})
    assert changed.returncode == 0, changed.stderr
    changed = _patch(cluster, namespace, "db", {"encryptedData": {"user": TOKEN}})
    assert changed.returncode == 0, changed.stderr
    spec = read(cluster, namespace, "kss", "db")["spec"]
    assert spec["scope"] == "namespace"
    assert set(spec["encryptedData"]) == {"password", "user"}

    # A defaulted scope is just as fixed.
    assert create(cluster, namespace, sealed(name="other")).returncode == 0
    assert_rejected(_patch(cluster, namespace, "other", {"scope": "namespace"}), immutable)


def test_extends_itself_is_rejected_on_update_too(cluster: TestCluster, namespace: str) -> None:
    assert create(cluster, namespace, profile(extends=["shared"])).returncode == 0
    result = cluster.kubectl(
        "patch", "cfp", "app", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"extends": ["shared", "app"]}}), check=False,
    )  # fmt: skip
    assert_rejected(result, "spec.extends", "must not extend itself")
    assert read(cluster, namespace, "cfp", "app")["spec"]["extends"] == ["shared"]
