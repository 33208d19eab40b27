"""JSON Schema checks: paths and rules, no values in messages, no fetching."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kstrata.domain import schema as schema_module
from kstrata.domain.jsonvalue import JSONObject
from kstrata.domain.schema import check, compile_schema, schema_digest, sort_violations, validate
from kstrata.errors import InvalidSchemaError, SchemaViolationError, Violation

CANARY = "CANARY-5d1e0b"
NUMBER_CANARY = 987654321


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the schema code tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def triples(violations: list[Violation]) -> list[tuple[str, str, str]]:
    return [(v.path, v.rule, v.message) for v in violations]


SERVER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["server", "name"],
    "additionalProperties": False,
    "properties": {
        "server": {
            "type": "object",
            "required": ["port"],
            "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
        },
        "name": {"type": "string"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
    },
    "$defs": {"item": {"type": "string", "maxLength": 3}},
}


def test_paths_and_rules() -> None:
    config: JSONObject = {
        "server": {"port": 70000},
        "items": ["ok", "x", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", 5, "long"],
        "extra": True,
    }
    assert triples(validate(SERVER_SCHEMA, config)) == [
        ("$", "required", "missing required property 'name'"),
        ("$.extra", "additionalProperties", "property is not allowed"),
        ("$.items[10]", "type", "must be of type string"),
        ("$.items[11]", "maxLength", "must be at most 3 characters long"),
        ("$.server.port", "maximum", "must be <= 65535"),
    ]


def test_valid_config_has_no_violations_and_check_passes() -> None:
    config: JSONObject = {"server": {"port": 8080}, "name": "x", "items": ["a"]}
    assert validate(SERVER_SCHEMA, config) == []
    check(SERVER_SCHEMA, config)


def test_check_raises_with_environment_on_every_violation() -> None:
    with pytest.raises(SchemaViolationError) as caught:
        check(SERVER_SCHEMA, {"server": {}}, environment="prod")
    violations = caught.value.violations
    assert {v.environment for v in violations} == {"prod"}
    assert [(v.path, v.message) for v in violations] == [
        ("$", "missing required property 'name'"),
        ("$.server", "missing required property 'port'"),
    ]
    assert "environment prod: $.server: missing required property 'port'" in str(caught.value)


def test_every_missing_required_property_is_its_own_violation() -> None:
    schema: JSONObject = {"required": ["b", "a", "c"]}
    assert [v.message for v in validate(schema, {"c": 1})] == [
        "missing required property 'a'",
        "missing required property 'b'",
    ]


def test_keys_needing_brackets_in_paths() -> None:
    schema: JSONObject = {"properties": {"a.b": {"properties": {"it's": {"type": "integer"}}}}}
    [violation] = validate(schema, {"a.b": {"it's": "x"}})
    assert violation.path == "$['a.b']['it\\'s']"


def test_violations_from_many_environments_sort_by_environment_keeping_path_order() -> None:
    def make(env: str, path: str) -> Violation:
        return Violation(env, path, "type", "m")

    ordered = sort_violations(
        [make("prod", "$.b"), make("dev", "$.z"), make("prod", "$.a"), make("dev", "$.a")]
    )
    assert [(v.environment, v.path) for v in ordered] == [
        ("dev", "$.z"),
        ("dev", "$.a"),
        ("prod", "$.b"),
        ("prod", "$.a"),
    ]


# --- no values in messages --------------------------------------------------------------

CANARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "t": {"type": "integer"},
        "p": {"pattern": "^[0-9]+$"},
        "e": {"enum": ["a", "b"]},
        "c": {"const": "fixed"},
        "mx": {"maxLength": 3},
        "mn": {"minLength": 100},
        "n": {"not": {"type": "string"}},
        "any": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
        "one": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
        "max": {"maximum": 10},
        "emin": {"exclusiveMinimum": NUMBER_CANARY + 1},
        "mul": {"multipleOf": 2},
        "u": {"uniqueItems": True},
        "items": {"items": False},
        "has": {"contains": {"type": "integer"}},
        "f": False,
        "dep": {"dependentRequired": {"a": ["b"]}},
        "extra": {"additionalProperties": False},
        "minp": {"minProperties": 5},
        "ite": {"if": {"type": "string"}, "then": {"maxLength": 1}},
    },
}

CANARY_CONFIG: dict[str, Any] = {
    "t": CANARY,
    "p": CANARY,
    "e": CANARY,
    "c": CANARY,
    "mx": CANARY,
    "mn": CANARY,
    "n": CANARY,
    "any": CANARY,
    "one": CANARY,
    "max": NUMBER_CANARY,
    "emin": NUMBER_CANARY,
    "mul": NUMBER_CANARY,
    "u": [CANARY, CANARY],
    "items": [CANARY],
    "has": [CANARY],
    "f": CANARY,
    "dep": {"a": CANARY},
    "extra": {"k": CANARY},
    "minp": {"k": CANARY},
    "ite": CANARY,
}


def test_no_instance_value_in_any_message() -> None:
    violations = validate(CANARY_SCHEMA, CANARY_CONFIG, environment="prod")
    rules = {v.rule for v in violations}
    # Every rule really fired, so the canary had every chance to leak.
    assert rules == {
        "type",
        "pattern",
        "enum",
        "const",
        "maxLength",
        "minLength",
        "not",
        "anyOf",
        "oneOf",
        "maximum",
        "exclusiveMinimum",
        "multipleOf",
        "uniqueItems",
        "items",
        "contains",
        "false",
        "dependentRequired",
        "additionalProperties",
        "minProperties",
    }
    with pytest.raises(SchemaViolationError) as caught:
        check(CANARY_SCHEMA, CANARY_CONFIG, environment="prod")
    texts = [str(caught.value)] + [f"{v.path} {v.rule} {v.message}" for v in violations]
    for text in texts:
        assert CANARY not in text
        assert str(NUMBER_CANARY) not in text


@settings(max_examples=60, deadline=None)
@given(
    st.text(min_size=1, alphabet=st.characters(codec="utf-8", categories=["L", "N", "P"])).map(
        lambda text: "S3CR3T" + text
    ),
    st.sampled_from(
        [
            {"type": "integer"},
            {"enum": [1, 2]},
            {"const": 0},
            {"maxLength": 2},
            {"pattern": "^$"},
            {"not": {"type": "string"}},
            {"format": "ipv4", "type": "number"},
        ]
    ),
)
def test_random_secret_strings_never_appear(secret: str, rule: dict[str, Any]) -> None:
    schema: JSONObject = {"properties": {"deep": {"items": {"properties": {"v": rule}}}}}
    violations = validate(schema, {"deep": [{"v": secret}]})
    assert violations
    for violation in violations:
        assert violation.path == "$.deep[0].v"
        assert secret not in violation.message


# --- references and invalid schemas --------------------------------------------------------


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    "ref",
    [
        "https://example.com/schema.json",
        "http://169.254.169.254/latest/meta-data",
        "file:///etc/passwd",
        "other.json#/$defs/x",
    ],
)
def test_non_local_refs_are_refused_at_compile_time(ref: str) -> None:
    schema: JSONObject = {"properties": {"a": {"$ref": ref}}}
    with pytest.raises(InvalidSchemaError, match=r"\$\.properties\.a\['\$ref'\]: only local"):
        validate(schema, {"a": 1})


@pytest.mark.usefixtures("no_network")
def test_registry_refuses_retrieval_as_second_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema_module, "_check_static", lambda _schema: None)
    schema: JSONObject = {"properties": {"a": {"$ref": "https://example.com/never-fetched.json"}}}
    with pytest.raises(InvalidSchemaError, match="unresolvable reference"):
        validate(schema, {"a": 1})


def test_local_refs_and_anchors_work() -> None:
    schema: JSONObject = {
        "properties": {"a": {"$ref": "#/$defs/port"}, "b": {"$ref": "#name"}},
        "$defs": {"port": {"type": "integer"}, "n": {"$anchor": "name", "type": "string"}},
    }
    assert triples(validate(schema, {"a": "x", "b": 1})) == [
        ("$.a", "type", "must be of type integer"),
        ("$.b", "type", "must be of type string"),
    ]


def test_dangling_local_ref_is_an_invalid_schema() -> None:
    with pytest.raises(InvalidSchemaError, match="unresolvable reference"):
        validate({"properties": {"a": {"$ref": "#/$defs/missing"}}}, {"a": 1})


def test_ref_like_data_is_not_a_reference() -> None:
    schema: JSONObject = {
        "properties": {
            "$ref": {"type": "string"},
            "a": {"const": {"$ref": "https://example.com/x"}},
            "b": {"default": {"$ref": "file:///etc/passwd"}},
        }
    }
    assert validate(schema, {"$ref": "ok", "a": {"$ref": "https://example.com/x"}}) == []


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "nope"}, r"\$\.type breaks the metaschema rule"),
        ({"minimum": "1"}, r"\$\.minimum breaks the metaschema rule 'type'"),
        ({"pattern": "("}, r"\$\.pattern: pattern \"\(\": a group is not closed"),
        ({"required": "a"}, r"\$\.required breaks the metaschema rule"),
        (
            {"$schema": "http://json-schema.org/draft-07/schema#"},
            "only JSON Schema draft 2020-12",
        ),
    ],
)
def test_invalid_schemas(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSchemaError, match=message):
        compile_schema(schema)


def test_explicit_2020_12_dialect_is_accepted() -> None:
    compile_schema({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"})


# --- caching ----------------------------------------------------------------------------------


def test_compiled_validators_are_cached_by_content() -> None:
    first: JSONObject = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
    }
    same_content: JSONObject = {
        "properties": {"b": {"type": "string"}, "a": {"type": "integer"}},
        "type": "object",
    }
    assert schema_digest(first) == schema_digest(same_content)
    assert compile_schema(first) is compile_schema(same_content)
    assert compile_schema(first) is not compile_schema({"type": "object"})


def test_cached_validator_does_not_follow_later_edits_of_the_schema() -> None:
    schema: dict[str, Any] = {"properties": {"edited": {"type": "integer"}}}
    validator = compile_schema(schema)
    schema["properties"]["edited"]["type"] = "string"
    assert not validator.is_valid({"edited": "x"})
    assert validate(schema, {"edited": "x"}) == []
