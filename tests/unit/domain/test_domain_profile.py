"""ConfigProfile specs: parsing with field-path errors, and the pure use cases."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from kstrata.domain.documents import load_yaml_documents
from kstrata.domain.profile import (
    ProfileSpec,
    check_all_environments,
    declared_environments,
    lookup_from,
    parse_profile_manifest,
    parse_profile_spec,
    render_profile,
    resolve_profile,
    validate_all_environments,
)
from kstrata.domain.render import OutputSpec
from kstrata.errors import (
    DocumentError,
    ExtendsError,
    InputLimitError,
    InvalidInputError,
    InvalidSchemaError,
    MergeError,
    SchemaViolationError,
)

CANARY = "CANARY-91c2"

MANIFESTS = """\
apiVersion: kstrata.dev/v1alpha1
kind: ConfigProfile
metadata: {name: shared, namespace: team}
spec:
  base:
    log: {level: info}
    db: {pool: 5}
  environments:
    prod: {db: {pool: 50}}
    staging: {log: {level: debug}}
---
apiVersion: kstrata.dev/v1alpha1
kind: ConfigProfile
metadata: {name: app, namespace: team}
spec:
  extends: [shared]
  base:
    server: {port: 8080}
  environments:
    dev: {server: {port: 9090}}
    prod:
  schema:
    type: object
    required: [server]
    properties:
      server:
        properties:
          port: {type: integer, maximum: 9000}
  output: {format: env, flattenKeys: true}
"""


@pytest.fixture
def profiles() -> dict[str, ProfileSpec]:
    manifests = [parse_profile_manifest(doc) for doc in load_yaml_documents(MANIFESTS)]
    return {manifest.name: manifest.spec for manifest in manifests}


# --- parsing ----------------------------------------------------------------------------


def test_defaults() -> None:
    parsed = parse_profile_spec({})
    assert parsed == ProfileSpec()
    assert parsed.output == OutputSpec(config_map_name=None, format="yaml", key=None)
    assert parsed.output.file_key == "config.yaml"
    assert parsed.revision_history_limit == 10
    assert parse_profile_spec(None) == ProfileSpec()


def test_full_spec() -> None:
    parsed = parse_profile_spec(
        {
            "base": {"a": 1},
            "environments": {"prod": {"a": 2}, "dev": None},
            "extends": ["common", "team.defaults"],
            "environment": "prod",
            "schema": {"type": "object"},
            "output": {
                "configMapName": "app-config",
                "format": "properties",
                "key": "application.properties",
                "flattenKeys": False,
            },
            "revisionHistoryLimit": 3,
            "reload": {"strategy": "rollout", "targets": [{"kind": "Deployment", "name": "x"}]},
            "futureField": 1,
        }
    )
    assert parsed == ProfileSpec(
        base={"a": 1},
        environments={"prod": {"a": 2}, "dev": {}},
        extends=("common", "team.defaults"),
        environment="prod",
        schema={"type": "object"},
        output=OutputSpec("app-config", "properties", "application.properties", False),
        revision_history_limit=3,
        reload={"strategy": "rollout", "targets": [{"kind": "Deployment", "name": "x"}]},
        unknown_fields=("futureField",),
    )


class ReadOnlyView(Mapping[str, Any]):
    """Stands in for kopf's read-only ``Spec`` views."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return ReadOnlyView(value) if isinstance(value, dict) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_mapping_views_become_plain_independent_dicts() -> None:
    raw = {"base": {"a": {"b": [1, {"c": 2}]}}, "environments": {"prod": {"a": {"b": 3}}}}
    parsed = parse_profile_spec(ReadOnlyView(raw))
    assert type(parsed.base) is dict
    assert type(parsed.base["a"]) is dict
    assert parsed.base == raw["base"]
    raw["base"]["a"]["b"].append("later")
    assert parsed.base == {"a": {"b": [1, {"c": 2}]}}


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ([CANARY], InvalidInputError, r"^spec: must be an object"),
        ({"base": [CANARY]}, InvalidInputError, r"^spec\.base: must be an object"),
        (
            {"base": {"a": {1: CANARY}}},
            DocumentError,
            r"^spec\.base\.a: mapping key is not a string",
        ),
        (
            {"base": {"a": [CANARY, float("inf")]}},
            DocumentError,
            r"^spec\.base\.a\[1\]: non-finite",
        ),
        (
            {"base": {"a": {CANARY}}},
            DocumentError,
            r"^spec\.base\.a: value of type set is not JSON",
        ),
        ({"environments": [CANARY]}, InvalidInputError, r"^spec\.environments: must be an object"),
        (
            {"environments": {"Prod": {}}},
            InvalidInputError,
            r"^spec\.environments key: not a valid",
        ),
        (
            {"environments": {"prod": [CANARY]}},
            MergeError,
            r"^spec\.environments\.prod: an overlay",
        ),
        ({"environments": {"prod": CANARY}}, MergeError, r"^spec\.environments\.prod: an overlay"),
        ({"extends": CANARY}, InvalidInputError, r"^spec\.extends: must be a list"),
        ({"extends": ["ok", CANARY]}, InvalidInputError, r"^spec\.extends\[1\]: must be a Config"),
        (
            {"extends": ["a", "a"]},
            InvalidInputError,
            r"^spec\.extends\[1\]: profile 'a' is listed twice",
        ),
        ({"extends": [f"p{i}" for i in range(17)]}, InvalidInputError, r"more than 16"),
        (
            {"environment": CANARY},
            InvalidInputError,
            r"^spec\.environment: not a valid environment",
        ),
        ({"schema": CANARY}, InvalidInputError, r"^spec\.schema: must be an object"),
        ({"output": CANARY}, InvalidInputError, r"^spec\.output: must be an object"),
        (
            {"output": {"format": CANARY}},
            InvalidInputError,
            r"^spec\.output\.format: must be one of yaml, json, env, properties$",
        ),
        (
            {"output": {"key": f"{CANARY}/x"}},
            InvalidInputError,
            r"^spec\.output\.key: must be a valid",
        ),
        ({"output": {"configMapName": CANARY}}, InvalidInputError, r"^spec\.output\.configMapName"),
        ({"output": {"flattenKeys": "yes"}}, InvalidInputError, r"^spec\.output\.flattenKeys"),
        ({"output": {"formt": "json"}}, InvalidInputError, r"^spec\.output\.formt: unknown field"),
        (
            {"revisionHistoryLimit": True},
            InvalidInputError,
            r"^spec\.revisionHistoryLimit: must be an integer",
        ),
        (
            {"revisionHistoryLimit": -1},
            InvalidInputError,
            r"^spec\.revisionHistoryLimit: must be between",
        ),
        ({"reload": [CANARY]}, InvalidInputError, r"^spec\.reload: must be an object"),
    ],
)
def test_errors_name_the_field_not_the_value(
    spec: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        parse_profile_spec(spec)
    assert CANARY not in str(caught.value)


def test_deep_base_is_a_limit_error() -> None:
    deep: Any = "leaf"
    for _ in range(100):
        deep = {"a": deep}
    with pytest.raises(InputLimitError, match=r"^spec\.base\.a\.a.*nesting deeper than 64"):
        parse_profile_spec({"base": deep})


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"apiVersion": "v1", "kind": "ConfigProfile"}, "apiVersion: must be kstrata.dev/v1alpha1"),
        (
            {"apiVersion": "kstrata.dev/v1alpha1", "kind": "ConfigMap"},
            "kind: must be ConfigProfile",
        ),
        (
            {"apiVersion": "kstrata.dev/v1alpha1", "kind": "ConfigProfile"},
            "metadata: must be an object",
        ),
        (
            {
                "apiVersion": "kstrata.dev/v1alpha1",
                "kind": "ConfigProfile",
                "metadata": {"name": "A"},
            },
            "metadata.name: must be a valid object name",
        ),
    ],
)
def test_manifest_errors(document: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_profile_manifest(document)


def test_manifest_spec_errors_keep_their_class_and_name_the_profile() -> None:
    document = {
        "apiVersion": "kstrata.dev/v1alpha1",
        "kind": "ConfigProfile",
        "metadata": {"name": "app"},
        "spec": {"environments": {"prod": [1]}},
    }
    with pytest.raises(
        MergeError, match=r"^ConfigProfile app: spec\.environments\.prod: an overlay"
    ):
        parse_profile_manifest(document)


# --- use cases ------------------------------------------------------------------------------


def test_resolve_profile_through_extends(profiles: dict[str, ProfileSpec]) -> None:
    resolved = resolve_profile(profiles["app"], "app", "prod", lookup_from(profiles))
    assert resolved.name == "app"
    assert resolved.environment == "prod"
    assert resolved.config == {
        "log": {"level": "info"},
        "db": {"pool": 50},
        "server": {"port": 8080},
    }
    assert resolved.depends_on == ("shared",)


def test_resolve_profile_checks_the_environment_name(profiles: dict[str, ProfileSpec]) -> None:
    with pytest.raises(InvalidInputError, match=r"^environment: not a valid"):
        resolve_profile(profiles["app"], "app", "Prod", lookup_from(profiles))


def test_render_profile_end_to_end(profiles: dict[str, ProfileSpec]) -> None:
    rendered = render_profile(profiles["app"], "app", "staging", lookup_from(profiles))
    assert rendered.config_map_name == "app"
    assert rendered.resolved.depends_on == ("shared",)
    assert rendered.rendered.data == {
        "config.env": "DB_POOL=5\nLOG_LEVEL=debug\nSERVER_PORT=8080\n",
        "DB_POOL": "5",
        "LOG_LEVEL": "debug",
        "SERVER_PORT": "8080",
    }
    again = render_profile(profiles["app"], "app", "staging", lookup_from(profiles))
    assert again.rendered.digest == rendered.rendered.digest


def test_render_profile_uses_the_configured_configmap_name() -> None:
    spec = parse_profile_spec({"base": {"a": 1}, "output": {"configMapName": "custom"}})
    assert render_profile(spec, "app", "dev", lookup_from({})).config_map_name == "custom"


def test_render_profile_enforces_the_schema(profiles: dict[str, ProfileSpec]) -> None:
    with pytest.raises(SchemaViolationError) as caught:
        render_profile(profiles["app"], "app", "dev", lookup_from(profiles))
    assert [(v.environment, v.path, v.rule) for v in caught.value.violations] == [
        ("dev", "$.server.port", "maximum")
    ]
    assert "9090" not in str(caught.value)


def test_declared_environments_include_the_bases(profiles: dict[str, ProfileSpec]) -> None:
    assert declared_environments(profiles["app"], "app", lookup_from(profiles)) == [
        "dev",
        "prod",
        "staging",
    ]


def test_validate_all_environments(profiles: dict[str, ProfileSpec]) -> None:
    found = validate_all_environments(
        profiles["app"], "app", lookup_from(profiles), extra_environments=["default"]
    )
    assert sorted(found) == ["default", "dev", "prod", "staging"]
    assert [(v.environment, v.path) for v in found["dev"]] == [("dev", "$.server.port")]
    assert found["prod"] == found["staging"] == found["default"] == []
    with pytest.raises(SchemaViolationError) as caught:
        check_all_environments(profiles["app"], "app", lookup_from(profiles))
    assert [v.environment for v in caught.value.violations] == ["dev"]


def test_validate_all_includes_the_pinned_environment() -> None:
    spec = parse_profile_spec(
        {
            "environment": "qa",
            "base": {"a": "x"},
            "schema": {"properties": {"a": {"type": "integer"}}},
        }
    )
    assert list(validate_all_environments(spec, "app", lookup_from({}))) == ["qa"]


def test_validate_all_without_schema_still_resolves_every_environment() -> None:
    spec = parse_profile_spec({"extends": ["missing"], "environments": {"dev": {}}})
    with pytest.raises(ExtendsError, match="base profile 'missing' not found"):
        validate_all_environments(spec, "app", lookup_from({}))


def test_validate_all_reports_an_invalid_schema() -> None:
    spec = parse_profile_spec({"environments": {"dev": {}}, "schema": {"type": "nope"}})
    with pytest.raises(InvalidSchemaError):
        validate_all_environments(spec, "app", lookup_from({}))


def test_declared_environments_terminates_on_cycles() -> None:
    profiles = {
        "a": parse_profile_spec({"extends": ["b"], "environments": {"x": {}}}),
        "b": parse_profile_spec({"extends": ["a"], "environments": {"y": {}}}),
    }
    assert declared_environments(profiles["a"], "a", lookup_from(profiles)) == ["x", "y"]


# --- import cost ------------------------------------------------------------------------------


def test_domain_imports_no_kopf_kubernetes_or_jsonschema() -> None:
    code = (
        "import sys\n"
        "import kstrata.domain.profile, kstrata.domain.documents\n"
        "heavy = sorted(m for m in ('jsonschema', 'referencing', 'kopf', 'kubernetes')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
