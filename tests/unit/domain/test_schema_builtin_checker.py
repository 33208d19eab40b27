"""The built-in checker for common schemas gives exactly jsonschema's verdicts.

``kstrata.domain.schema`` checks schemas made only of common keywords itself,
so that the offline CLI need not import jsonschema.  These tests hold it to
jsonschema: for generated schemas and configurations the (path, rule,
message) triples must be identical, and every schema it accepts must also
pass jsonschema's metaschema check; anything else must go to jsonschema.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kstrata.domain import schema as schema_module
from kstrata.domain.schema import SimpleValidator, compile_schema
from kstrata.errors import InvalidSchemaError

NAMES = st.sampled_from(["a", "b", "port", "x.y", ""])
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.0, 1.0, 1.5, -2.5, 2.0])
    | st.text(alphabet="ab1 ", max_size=4)
)
JSON_VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=8,
)
TYPE_NAMES = st.sampled_from(["null", "boolean", "object", "array", "number", "integer", "string"])
NUMBERS = st.integers(-3, 3) | st.sampled_from([0.5, 1.0, -1.5])
COUNTS = st.integers(0, 3)


def keywords(subschemas: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Schema objects made only of the keywords the built-in checker implements."""
    optional = {
        "type": TYPE_NAMES | st.lists(TYPE_NAMES, min_size=1, max_size=3, unique=True),
        "properties": st.dictionaries(NAMES, subschemas, max_size=3),
        "required": st.lists(NAMES, max_size=3, unique=True),
        "additionalProperties": subschemas,
        "items": subschemas,
        "enum": st.lists(JSON_VALUES, max_size=3),
        "const": JSON_VALUES,
        "minimum": NUMBERS,
        "maximum": NUMBERS,
        "exclusiveMinimum": NUMBERS,
        "exclusiveMaximum": NUMBERS,
        "minLength": COUNTS,
        "maxLength": COUNTS,
        "minItems": COUNTS,
        "maxItems": COUNTS,
        "minProperties": COUNTS,
        "maxProperties": COUNTS,
        "pattern": st.sampled_from(["^a", "b$", "[0-9]", "a|b", ""]),
        "title": st.text(max_size=3),
        "description": st.text(max_size=3),
        "format": st.sampled_from(["email", "uri", "date"]),
        "default": JSON_VALUES,
        "examples": st.lists(JSON_VALUES, max_size=2),
        "deprecated": st.booleans(),
    }
    return st.fixed_dictionaries({}, optional=optional)


SCHEMAS = st.recursive(
    st.booleans() | keywords(st.just(True)),
    keywords,
    max_leaves=6,
)
ROOT_SCHEMAS = keywords(SCHEMAS)


def jsonschema_triples(schema: dict[str, Any], config: Any) -> set[tuple[Any, ...]]:
    validator = schema_module._build_jsonschema(schema)  # checks the metaschema too
    return schema_module._violations(validator, config)


@settings(max_examples=250, deadline=None)
@given(schema=ROOT_SCHEMAS, config=JSON_VALUES)
def test_same_violations_as_jsonschema(schema: dict[str, Any], config: Any) -> None:
    assert schema_module._supported(schema, root=True)
    assert SimpleValidator(schema).violations(config) == jsonschema_triples(schema, config)


@settings(max_examples=100, deadline=None)
@given(schema=ROOT_SCHEMAS, config=JSON_VALUES)
def test_same_violations_inside_an_object(schema: dict[str, Any], config: Any) -> None:
    # Paths below the root, through properties and items.
    outer: dict[str, Any] = {"properties": {"inner": {"items": schema}}}
    document: dict[str, Any] = {"inner": [config, config]}
    assert SimpleValidator(outer).violations(document) == jsonschema_triples(outer, document)


def test_a_common_schema_uses_the_built_in_checker() -> None:
    compiled = compile_schema({"type": "object", "properties": {"port": {"type": "integer"}}})
    assert isinstance(compiled, SimpleValidator)


@pytest.mark.parametrize(
    "schema",
    [
        {"$defs": {"port": {"type": "integer"}}, "properties": {"p": {"$ref": "#/$defs/port"}}},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {"uniqueItems": True},
        {"multipleOf": 2},
        {"patternProperties": {"^a": {"type": "integer"}}},
        {"properties": {"a": {"$schema": "https://json-schema.org/draft/2020-12/schema"}}},
    ],
)
def test_other_keywords_go_to_jsonschema(schema: dict[str, Any]) -> None:
    assert not isinstance(compile_schema(schema), SimpleValidator)


@pytest.mark.parametrize(
    ("schema", "rule"),
    [
        ({"type": "integr"}, "anyOf"),
        ({"type": []}, "anyOf"),
        ({"minimum": True}, "type"),
        ({"minLength": -1}, "minimum"),
        ({"minItems": 1.5}, "type"),
        ({"required": ["a", "a"]}, "uniqueItems"),
        ({"examples": "x"}, "type"),
        ({"properties": {"a": 3}}, "type"),
    ],
)
def test_schemas_the_metaschema_rejects_are_still_rejected(
    schema: dict[str, Any], rule: str
) -> None:
    with pytest.raises(InvalidSchemaError, match=f"breaks the metaschema rule '{rule}'"):
        compile_schema(schema)


EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "config"
IMPORTED = (
    "import sys, io\n"
    "from kstrata.cli.main import main\n"
    "code = main(sys.argv[1:], out=io.StringIO())\n"
    "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'jsonschema', 'referencing'}))\n"
)


def test_rendering_with_a_common_schema_does_not_import_jsonschema() -> None:
    files = ["-f", str(EXAMPLES / "payments.yaml"), "-f", str(EXAMPLES / "platform-defaults.yaml")]
    for command in ("render", "validate"):
        result = subprocess.run(
            [sys.executable, "-c", IMPORTED, command, *files],
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout.strip() == "0 []", (command, result.stdout, result.stderr)


def test_a_schema_with_references_still_imports_jsonschema(tmp_path: Path) -> None:
    profile = tmp_path / "ref.yaml"
    profile.write_text(
        "apiVersion: kstrata.dev/v1alpha1\nkind: ConfigProfile\nmetadata: {name: r}\n"
        "spec:\n  schema:\n    $defs: {port: {type: integer}}\n"
        "    properties: {port: {$ref: '#/$defs/port'}}\n  base: {port: 1}\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED, "render", "-f", str(profile)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "0 ['jsonschema', 'referencing']"
