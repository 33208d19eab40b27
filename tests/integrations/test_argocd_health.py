"""integrations/argocd: the health check run by a real Lua 5.1 on objects the operator wrote.

Argo CD runs ``resource.customizations.health.<group>_<kind>`` scripts with
gopher-lua (Lua 5.1 semantics), the live object in the global ``obj``, and
reads ``status`` and ``message`` of the table the script returns.  Here the
operator runs in-process, serves a valid and refuses an invalid ConfigProfile
and SealedSecret, and the objects read back from the API server are handed to
``lua5.1`` as Lua tables (converted by ``lua_literal`` below).  The
ignoreDifferences pointers are resolved on the same objects, and the kustomize
component that puts all of it into argocd-cm is rendered with the real kustomize.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.app import admission
from support.cluster import TestCluster
from support.gotools import REPO
from support.integration_tools import ARGOCD
from support.operator import test_settings
from support.sealed_secrets import operator_for, published_bundle, seal_for
from support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("kstrata_crds")]

GROUP, VERSION = "kstrata.dev", "v1alpha1"
HEALTH = ARGOCD / "health.lua"


# --- JSON to Lua ------------------------------------------------------------------


def lua_string(text: str) -> str:
    """A Lua 5.1 string literal: printable ASCII as is, every other byte as \\ddd."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\' or not 32 <= byte < 127:
            out.append(f"\\{byte:03d}" if char not in '"\\' else "\\" + char)
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def lua_literal(value: Any) -> str:
    """A JSON value as a Lua table constructor (null is nil, as Argo CD converts it)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(item) for item in value) + "}"
    if isinstance(value, dict):
        fields = (f"[{lua_string(k)}] = {lua_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(fields) + "}"
    raise TypeError(type(value).__name__)


def health(lua: Path, obj: dict[str, Any]) -> dict[str, str]:
    """Run health.lua as Argo CD does: ``obj`` global, the returned table read."""
    program = (
        f"obj = {lua_literal(obj)}\n"
        f"local hs = dofile({lua_string(str(HEALTH))})\n"
        'io.write(string.format("%q", hs.status or ""), "\\n",'
        ' string.format("%q", hs.message or ""))\n'
    )
    result = subprocess.run(
        [str(lua), "-"], input=program, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    status, message = result.stdout.split("\n", 1)
    return {"status": json.loads(status), "message": message.strip('"').replace("\\\n", "\n")}


def test_lua_literals_round_trip_through_the_interpreter(lua: Path) -> None:
    value = {"a": [1, 2.5, True, None, 'x\ny"z\\é'], "b": {"c": {}}, "n": -3}
    program = (
        f"local v = {lua_literal(value)}\n"
        'io.write(v.a[1] + v.a[2], "|", tostring(v.a[3]), "|", v.a[5], "|",'
        ' tostring(v.b.c.d), "|", v.n)\n'
    )
    result = subprocess.run([str(lua), "-"], input=program, capture_output=True, text=True)
    assert result.stdout == '3.5|true|x\ny"z\\é|nil|-3', result.stderr


# --- objects the operator wrote ------------------------------------------------------


def profile(name: str, replicas: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigProfile",
        "metadata": {"name": name},
        "spec": {
            "schema": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
            "base": {"replicas": replicas},
        },
    }


def sealed_secret(name: str, password: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SealedSecret",
        "metadata": {"name": name},
        "spec": {"encryptedData": {"password": password}},
    }


def get(cluster: TestCluster, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return cluster.kstrata_object(plural, namespace, name)


def reaches(
    cluster: TestCluster, namespace: str, plural: str, name: str, outcome: str
) -> dict[str, Any] | None:
    obj = get(cluster, namespace, plural, name)
    return obj if ready(obj) == outcome else None


def ready(obj: dict[str, Any]) -> str | None:
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    for condition in status.get("conditions") or []:
        if condition["type"] == "Ready":
            return str(condition["status"])
    return None


def apply(cluster: TestCluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))


@pytest.fixture(scope="module")
def live_objects(cluster: TestCluster, kstrata_crds: None) -> Any:
    """Objects as the operator left them, by name: served, refused, never seen, stale."""
    found: dict[str, dict[str, Any]] = {}
    with (
        cluster.temporary_namespace(prefix="argo") as namespace,
        cluster.temporary_namespace(prefix="argo-keys") as keys,
        cluster.temporary_namespace(prefix="argo-unwatched") as unwatched,
    ):
        with operator_for(cluster, namespace, keys):
            bundle = published_bundle(cluster, keys)

            def sealed_for(name: str) -> str:
                return seal_for(bundle, b"hunter2", namespace=namespace, name=name, item="password")

            apply(cluster, namespace, profile("served", 2))
            apply(cluster, namespace, profile("refused", "two"))
            apply(cluster, namespace, profile("stale", 2))
            apply(cluster, namespace, sealed_secret("opened", sealed_for("opened")))
            # Sealed for another name: it does not open here (strict scope).
            apply(cluster, namespace, sealed_secret("unopenable", sealed_for("elsewhere")))
            expected = {
                ("configprofiles", "served"): "True",
                ("configprofiles", "refused"): "False",
                ("configprofiles", "stale"): "True",
                ("sealedsecrets", "opened"): "True",
                ("sealedsecrets", "unopenable"): "False",
            }
            for (plural, name), outcome in expected.items():
                found[name] = wait_for(
                    partial(reaches, cluster, namespace, plural, name, outcome),
                    timeout=30,
                    what=f"{name} Ready={outcome}",
                )
        # The operator is gone: a spec change now stays unobserved.
        stale = profile("stale", 3)
        apply(cluster, namespace, stale)
        found["stale"] = get(cluster, namespace, "configprofiles", "stale")
        assert found["stale"]["metadata"]["generation"] == 2
        # Never watched: no status at all.
        apply(cluster, unwatched, profile("unseen", 1))
        found["unseen"] = get(cluster, unwatched, "configprofiles", "unseen")
    return found


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("served", "Healthy", "rendered"),
        ("refused", "Degraded", "SchemaViolation: "),
        ("opened", "Healthy", "unsealed 1 item(s) into Secret opened"),
        ("unopenable", "Degraded", "DecryptionFailed: "),
        ("stale", "Progressing", "reconcile generation 2 (status is for generation 1)"),
        (
            "unseen",
            "Progressing",
            "Waiting for the kstrata operator to reconcile this ConfigProfile",
        ),
    ],
)
def test_health_of_real_objects(
    lua: Path, live_objects: dict[str, dict[str, Any]], name: str, status: str, message: str
) -> None:
    result = health(lua, live_objects[name])
    assert result["status"] == status, result
    assert message in result["message"], result


def test_a_ready_condition_of_an_older_generation_is_progressing(
    lua: Path, live_objects: dict[str, dict[str, Any]]
) -> None:
    # status.observedGeneration moved on, the Ready condition did not (a status
    # written in two steps, seen in between).
    obj = json.loads(json.dumps(live_objects["served"]))
    generation = obj["metadata"]["generation"] + 1
    obj["metadata"]["generation"] = generation
    obj["status"]["observedGeneration"] = generation
    assert health(lua, obj)["status"] == "Progressing"
    obj["status"]["conditions"][-1]["observedGeneration"] = generation
    assert health(lua, obj)["status"] == "Healthy"
    obj["status"]["conditions"][-1]["status"] = "Unknown"
    assert health(lua, obj)["status"] == "Progressing"


def resolve(document: Any, pointer: str) -> Any:
    for escaped in pointer.lstrip("/").split("/"):
        token = escaped.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


def test_ignore_differences_name_fields_kstrata_really_writes(
    live_objects: dict[str, dict[str, Any]],
) -> None:
    rules = yaml.safe_load((ARGOCD / "ignore-differences" / "kstrata-objects.yaml").read_text())
    for name in ("served", "opened"):
        for pointer in rules["jsonPointers"]:
            assert resolve(live_objects[name], pointer), (name, pointer)
    # The same pointers as the per-Application example in the guide.
    application = yaml.safe_load(
        (REPO / "examples" / "gitops" / "argocd-application.yaml").read_text()
    )
    for rule in application["spec"]["ignoreDifferences"]:
        if rule["group"] == GROUP:
            assert rule["jsonPointers"] == rules["jsonPointers"]


def test_the_kstrata_application_ignores_the_ca_bundle_the_operator_writes() -> None:
    application = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    (rule,) = application["spec"]["ignoreDifferences"]
    settings = test_settings(webhook_address="127.0.0.1:0")
    written = admission.webhook_configuration(
        "kstrata.dev", admission.client_config(settings, b"-----CA-----", 443)
    )
    assert (rule["kind"], rule["name"]) == (written["kind"], written["metadata"]["name"])
    # One pointer per webhook (ConfigProfiles, SealedSecrets with templates).
    assert len(rule["jsonPointers"]) == len(written["webhooks"])
    for pointer in rule["jsonPointers"]:
        assert resolve(written, pointer)
    assert "RespectIgnoreDifferences=true" in application["spec"]["syncPolicy"]["syncOptions"]
    assert application["spec"]["source"]["path"] == "charts/kstrata"


def test_the_component_puts_the_checks_into_argocd_cm(kubectl: Path, tmp_path: Path) -> None:
    (tmp_path / "argocd-cm.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                # As in Argo CD's install.yaml: no namespace; the kustomization sets it.
                "metadata": {"name": "argocd-cm"},
                "data": {"url": "https://argocd.example.com"},
            }
        )
    )
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "argocd",
                "resources": ["argocd-cm.yaml"],
                # kustomize takes components by relative path only.
                "components": [os.path.relpath(ARGOCD, tmp_path)],
            }
        )
    )
    result = subprocess.run(
        [str(kubectl), "kustomize", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (config_map,) = [d for d in yaml.safe_load_all(result.stdout) if d]
    data = config_map["data"]
    assert config_map["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    assert data["url"] == "https://argocd.example.com", "existing settings are kept"
    script = HEALTH.read_text()
    assert data[f"resource.customizations.health.{GROUP}_ConfigProfile"] == script
    assert data[f"resource.customizations.health.{GROUP}_SealedSecret"] == script
    ignored = yaml.safe_load(
        data[f"resource.customizations.ignoreDifferences.{GROUP}_ConfigProfile"]
    )
    assert ignored["jsonPointers"]
    webhook_key = (
        "resource.customizations.ignoreDifferences."
        "admissionregistration.k8s.io_ValidatingWebhookConfiguration"
    )
    assert yaml.safe_load(data[webhook_key]) == {
        "jqPathExpressions": [".webhooks[]?.clientConfig.caBundle"]
    }
