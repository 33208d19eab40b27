"""``spec.schema``: JSON Schema (draft 2020-12) checks on merged configuration.

Two properties matter more than completeness here:

* **No values in messages.**  jsonschema's own messages quote the offending
  instance, which may be a secret.  Violations are rebuilt from the JSON path,
  the rule (validator keyword) and, where useful, the schema's side of the
  rule (a type, a bound, a property name): the schema is not secret, the
  configuration may be.
* **No network or file access.**  Only local references (``#/$defs/...``,
  ``#anchor``) are allowed; any other ``$ref`` is refused when the schema is
  compiled, and the reference registry refuses retrieval as a second line.
* **Linear time, bounded depth.**  Every ``pattern`` and ``patternProperties``
  name is compiled when the schema is, by :mod:`kstrata.domain.regex`
  (ECMA-262 translated for RE2; never Python's backtracking ``re``), and a
  pattern RE2 cannot take is an ``InvalidSchemaError`` naming its place.  The
  jsonschema path uses the same engine (:mod:`kstrata.domain.schema_keywords`)
  and refuses references that loop without going into the configuration.

jsonschema is imported lazily (it costs far more than the rest of the domain
package to import, and the offline CLI must start fast), and compiled
validators are cached by the schema's content hash because profiles are
re-validated on every reconcile and admission request.

Most configuration schemas use a handful of keywords (type, properties,
required, additionalProperties, items, enum, const, bounds, lengths,
pattern).  For a schema made only of those, in forms the metaschema accepts,
a small built-in checker gives exactly jsonschema's verdicts (a differential
property test holds it to that) without importing jsonschema, whose import
alone (~90 ms: referencing, attrs, the bundled metaschemas) would otherwise
be half of ``kstrata render``'s start-up budget.  Any other schema, and any
schema the checker is not sure is valid, goes to jsonschema.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Final, NoReturn, TypeAlias

from kstrata.domain import budget
from kstrata.domain.jsonvalue import DEFAULT_LIMITS, JSONObject, JSONValue, PathPart, json_path
from kstrata.errors import InputLimitError, InvalidSchemaError, SchemaViolationError, Violation

if TYPE_CHECKING:
    from kstrata.domain.regex import Pattern
    from kstrata.domain.schema_keywords import SchemaError, SchemaValidator

#: A compiled schema: the built-in checker, or jsonschema's validator for the
#: rest (typed by the Protocols in :mod:`kstrata.domain.schema_keywords`, which
#: this module imports only when a schema needs it).
Validator: TypeAlias = "SimpleValidator | SchemaValidator"

DRAFT_2020_12: Final = "https://json-schema.org/draft/2020-12/schema"
_ACCEPTED_DIALECTS = frozenset({DRAFT_2020_12, DRAFT_2020_12 + "#"})
_REF_KEYWORDS = ("$ref", "$dynamicRef")
_CACHE_SIZE: Final = 128

_cache: OrderedDict[str, Validator] = OrderedDict()
_cache_lock = threading.Lock()


def _canonical(schema: Mapping[str, JSONValue]) -> str:
    try:
        return json.dumps(
            schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidSchemaError("spec.schema holds a value that is not JSON") from exc
    except RecursionError:
        raise InputLimitError(
            f"spec.schema: nesting deeper than {DEFAULT_LIMITS.max_depth} levels"
        ) from None


def schema_digest(schema: Mapping[str, JSONValue]) -> str:
    """SHA-256 (hex) of the schema's canonical JSON form."""
    return hashlib.sha256(_canonical(schema).encode("utf-8")).hexdigest()


# Keywords whose values are data, not schemas: a "$ref" inside them is not a reference.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
# Keywords whose values map arbitrary names to schemas: the names are not keywords.
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)


def _walk_keywords(
    value: JSONValue, path: list[PathPart]
) -> Iterable[tuple[list[PathPart], str, JSONValue]]:
    """Yield (path, keyword, value) for every keyword of every (sub)schema.

    ``path`` ends with the keyword and is only valid until the next item.
    Unknown keywords are walked too (a ``$ref`` may point into them): this
    errs towards refusing a reference or a pattern.
    """
    if len(path) > DEFAULT_LIMITS.max_depth:
        raise InputLimitError(f"spec.schema: nesting deeper than {DEFAULT_LIMITS.max_depth} levels")
    if isinstance(value, list):
        for index, item in enumerate(value):
            path.append(index)
            yield from _walk_keywords(item, path)
            path.pop()
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        path.append(key)
        yield path, key, item
        if key in _SCHEMA_MAPS and isinstance(item, dict):
            for name, subschema in item.items():
                path.append(name)
                yield from _walk_keywords(subschema, path)
                path.pop()
        elif key not in _DATA_KEYWORDS:
            yield from _walk_keywords(item, path)
        path.pop()


def _check_static(schema: Mapping[str, JSONValue]) -> None:
    dialect = schema.get("$schema")
    if dialect is not None and dialect not in _ACCEPTED_DIALECTS:
        raise InvalidSchemaError(
            f"spec.schema: only JSON Schema draft 2020-12 is supported ($schema must be "
            f"{DRAFT_2020_12} or absent)"
        )
    for path, key, value in _walk_keywords(dict(schema), []):
        if key in _REF_KEYWORDS and isinstance(value, str) and not value.startswith("#"):
            raise InvalidSchemaError(
                f"spec.schema {json_path(path)}: only local references ('#...') are allowed; "
                "remote and file references are never fetched"
            )
        if key == "pattern" and isinstance(value, str):
            _check_pattern(value, path)
        elif key == "patternProperties" and isinstance(value, dict):
            for pattern in value:
                _check_pattern(pattern, [*path, pattern])


def compile_pattern(pattern: str) -> Pattern:
    """:func:`kstrata.domain.regex.compile_pattern`, imported on first use.

    Most profiles have no pattern; the offline CLI then loads none of the
    regex machinery (translator and RE2).
    """
    from kstrata.domain.regex import compile_pattern as compile_ecma

    return compile_ecma(pattern)


def _check_pattern(pattern: str, path: list[PathPart]) -> None:
    try:
        compile_pattern(pattern)
    except InvalidSchemaError as error:
        raise InvalidSchemaError(f"spec.schema {json_path(path)}: {error}") from None


def _refuse_retrieval(uri: str) -> NoReturn:
    no_such_resource = import_module("referencing.exceptions").NoSuchResource
    raise no_such_resource(ref=uri)


def compile_schema(schema: Mapping[str, JSONValue]) -> Validator:
    """Check ``schema`` and return a (cached) validator for it.

    Raises ``InvalidSchemaError`` for a non-2020-12 dialect, a non-local
    ``$ref`` or a schema its metaschema rejects.
    """
    canonical = _canonical(schema)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    with _cache_lock:
        cached = _cache.get(digest)
        if cached is not None:
            _cache.move_to_end(digest)
            return cached
    validator = _build(schema, canonical)
    with _cache_lock:
        _cache[digest] = validator
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return validator


def _build(schema: Mapping[str, JSONValue], canonical: str) -> Validator:
    _check_static(schema)
    plain = json.loads(canonical)
    if _supported(plain, root=True):
        return SimpleValidator(plain)
    return _build_jsonschema(plain)


def _build_jsonschema(plain: dict[str, JSONValue]) -> Validator:
    from kstrata.domain import schema_keywords

    registry_class = import_module("referencing").Registry
    error = schema_keywords.check_schema(plain)
    if error is not None:
        raise InvalidSchemaError(
            f"spec.schema is not a valid JSON Schema: {json_path(error.absolute_path)} "
            f"breaks the metaschema rule '{error.validator}'"
        )
    registry = registry_class(retrieve=_refuse_retrieval)
    return schema_keywords.validator_class()(plain, registry=registry)


def check_schema(schema: Mapping[str, JSONValue]) -> None:
    """Raise ``InvalidSchemaError`` unless ``schema`` is usable."""
    compile_schema(schema)


# --- violations ----------------------------------------------------------


def _short(value: object, limit: int = 60) -> str | None:
    """JSON text of a *schema* value if short enough to be worth showing."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else None


def _plural(count: object, noun: str, plural: str | None = None) -> str:
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {plural or noun + 's'}"


def _type_message(expected: object) -> str:
    if isinstance(expected, list):
        return "must be of type " + " or ".join(str(item) for item in expected)
    return f"must be of type {expected}"


def _enum_message(allowed: object) -> str:
    if isinstance(allowed, list):
        shown = [_short(item, 40) for item in allowed]
        if len(allowed) <= 10 and all(item is not None for item in shown):
            return "must be one of: " + ", ".join(str(item) for item in shown)
        return f"must be one of the {len(allowed)} values the schema allows"
    return "must be one of the values the schema allows"


def _const_message(constant: object) -> str:
    shown = _short(constant)
    return f"must equal {shown}" if shown is not None else "must equal the schema's constant"


_SIMPLE_MESSAGES: Final[dict[str, Callable[[JSONValue], str]]] = {
    "type": _type_message,
    "enum": _enum_message,
    "const": _const_message,
    "minimum": lambda bound: f"must be >= {bound}",
    "maximum": lambda bound: f"must be <= {bound}",
    "exclusiveMinimum": lambda bound: f"must be > {bound}",
    "exclusiveMaximum": lambda bound: f"must be < {bound}",
    "multipleOf": lambda step: f"must be a multiple of {step}",
    "minLength": lambda n: f"must be at least {_plural(n, 'character')} long",
    "maxLength": lambda n: f"must be at most {_plural(n, 'character')} long",
    "pattern": lambda pattern: f"must match the pattern {json.dumps(pattern)}",
    "format": lambda fmt: f"must be a valid {fmt}",
    "minItems": lambda n: f"must have at least {_plural(n, 'item')}",
    "maxItems": lambda n: f"must have at most {_plural(n, 'item')}",
    "uniqueItems": lambda _: "items must be unique",
    "contains": lambda _: "must contain an item matching the schema",
    "minContains": lambda n: f"must contain at least {_plural(n, 'matching item')}",
    "maxContains": lambda n: f"must contain at most {_plural(n, 'matching item')}",
    "minProperties": lambda n: f"must have at least {_plural(n, 'property', 'properties')}",
    "maxProperties": lambda n: f"must have at most {_plural(n, 'property', 'properties')}",
    "anyOf": lambda _: "must match at least one of the schemas in anyOf",
    "oneOf": lambda _: "must match exactly one of the schemas in oneOf",
    "not": lambda _: "must not match the schema in not",
    "unevaluatedProperties": lambda _: "has properties the schema does not allow",
    "unevaluatedItems": lambda _: "has items the schema does not allow",
    "items": lambda _: "has more items than the schema allows",
    "propertyNames": lambda _: "has a property name the schema does not allow",
}

_Found = tuple[tuple[PathPart, ...], str, str]


def _additional(error: SchemaError, instance: JSONObject) -> list[str]:
    from kstrata.domain.schema_keywords import additional_keys

    schema = error.schema if isinstance(error.schema, dict) else {}
    return additional_keys(instance, schema)


def _describe(error: SchemaError) -> list[_Found]:
    """Safe (path, rule, message) triples for one jsonschema error.

    ``error.instance`` is only ever inspected for its keys (which are part of
    paths anyway), never rendered.
    """
    path = tuple(error.absolute_path)
    rule = str(error.validator) if error.validator is not None else "false"
    value = error.validator_value
    instance = error.instance
    if rule == "required" and isinstance(instance, dict) and isinstance(value, list):
        return [
            (path, rule, f"missing required property '{name}'")
            for name in value
            if isinstance(name, str) and name not in instance
        ]
    if rule == "dependentRequired" and isinstance(instance, dict) and isinstance(value, dict):
        return [
            (path, rule, f"property '{trigger}' requires property '{needed}'")
            for trigger, needs in value.items()
            if trigger in instance
            for needed in (needs if isinstance(needs, list) else [])
            if needed not in instance
        ]
    if rule == "additionalProperties" and isinstance(instance, dict):
        return [
            ((*path, key), rule, "property is not allowed") for key in _additional(error, instance)
        ]
    if rule == "false":
        return [(path, rule, "is not allowed by the schema")]
    build = _SIMPLE_MESSAGES.get(rule)
    if build is not None:
        return [(path, rule, str(build(value)))]
    return [(path, rule, f"violates the '{rule}' rule")]


def _sort_key(parts: Sequence[PathPart]) -> tuple[tuple[int, int, str], ...]:
    # Indexes sort numerically ([2] before [10]); keys sort as text.
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in parts)


def validate(
    schema: Mapping[str, JSONValue], config: JSONValue, *, environment: str | None = None
) -> list[Violation]:
    """All violations of ``schema`` by ``config``, deterministically sorted.

    Raises ``InvalidSchemaError`` if the schema is unusable (including a
    local ``$ref`` that points nowhere, which only shows during validation).
    """
    validator = compile_schema(schema)
    if budget.active():
        found = _violations(validator, config)
    else:
        with budget.time_budget(budget.DEFAULT_SECONDS, "schema validation"):
            found = _violations(validator, config)
    ordered = sorted(found, key=lambda item: (_sort_key(item[0]), item[1], item[2]))
    return [
        Violation(environment=environment, path=json_path(parts), rule=rule, message=message)
        for parts, rule, message in ordered
    ]


def _violations(validator: Validator, config: JSONValue) -> set[_Found]:
    if isinstance(validator, SimpleValidator):
        return validator.violations(config)
    from kstrata.domain.schema_keywords import iter_violations

    unresolvable = import_module("referencing.exceptions").Unresolvable
    found: set[_Found] = set()
    try:
        for error in iter_violations(validator, config):
            found.update(_describe(error))
    except unresolvable as exc:
        raise InvalidSchemaError(
            f"spec.schema has an unresolvable reference: {getattr(exc, 'ref', '?')}"
        ) from None
    except RecursionError:
        # The last line behind schema_keywords' bound on references (jsonschema's
        # own helpers, such as the one behind unevaluatedItems, recurse too).
        raise InvalidSchemaError(
            "spec.schema: validation nests too deeply (references that lead back to "
            "themselves without going into the configuration?)"
        ) from None
    return found


def check(
    schema: Mapping[str, JSONValue], config: JSONValue, *, environment: str | None = None
) -> None:
    """Raise ``SchemaViolationError`` if ``config`` violates ``schema``."""
    violations = validate(schema, config, environment=environment)
    if violations:
        raise SchemaViolationError(violations)


def sort_violations(violations: Iterable[Violation]) -> list[Violation]:
    """Order violations from several environments by environment name.

    The sort is stable, so each environment keeps the path order
    :func:`validate` produced.
    """
    return sorted(violations, key=lambda v: v.environment or "")


# --- the built-in checker for common schemas ------------------------------------

_TYPE_NAMES: Final = frozenset(
    {"null", "boolean", "object", "array", "number", "integer", "string"}
)
_BOUNDS: Final = {
    "minimum": lambda value, bound: value < bound,
    "maximum": lambda value, bound: value > bound,
    "exclusiveMinimum": lambda value, bound: value <= bound,
    "exclusiveMaximum": lambda value, bound: value >= bound,
}
# keyword -> (the JSON type it applies to, True if the count must be at least the bound)
_COUNTS: Final = {
    "minLength": ("string", True),
    "maxLength": ("string", False),
    "minItems": ("array", True),
    "maxItems": ("array", False),
    "minProperties": ("object", True),
    "maxProperties": ("object", False),
}
_TEXT_ANNOTATIONS: Final = frozenset({"title", "description", "$comment", "format"})
_FLAG_ANNOTATIONS: Final = frozenset({"deprecated", "readOnly", "writeOnly"})


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_regex(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        compile_pattern(value)
    except InvalidSchemaError:
        return False
    return True


def _supported_keyword(key: str, value: JSONValue) -> bool:  # noqa: PLR0911
    """Whether the built-in checker implements ``key`` with this (metaschema-valid) value."""
    if key == "type":
        names = value if isinstance(value, list) else [value]
        return (
            bool(names)
            and all(isinstance(n, str) and n in _TYPE_NAMES for n in names)
            and len(set(map(str, names))) == len(names)
        )
    if key == "properties":
        return isinstance(value, dict) and all(_supported(sub) for sub in value.values())
    if key == "required":
        return (
            isinstance(value, list)
            and all(isinstance(n, str) for n in value)
            and len(set(map(str, value))) == len(value)
        )
    if key in ("additionalProperties", "items"):
        return _supported(value)
    if key in ("enum", "examples"):
        return isinstance(value, list)
    if key in ("const", "default"):
        return True
    if key in _BOUNDS:
        return _is_number(value)
    if key in _COUNTS:
        return _is_count(value)
    if key == "pattern":
        return _is_regex(value)
    if key in _TEXT_ANNOTATIONS:
        return isinstance(value, str)
    if key in _FLAG_ANNOTATIONS:
        return isinstance(value, bool)
    return False


def _supported(schema: JSONValue, *, root: bool = False) -> bool:
    """True if every keyword of ``schema`` (recursively) is one the built-in checker implements.

    ``$schema`` is accepted at the root only, where ``_check_static`` has
    already required draft 2020-12.
    """
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    return all(
        (root and key == "$schema") or _supported_keyword(key, value)
        for key, value in schema.items()
    )


def _is_type(instance: object, name: str) -> bool:  # noqa: PLR0911
    """jsonschema's draft 2020-12 type checker (bool is not a number; 1.0 is an integer)."""
    if name == "object":
        return isinstance(instance, dict)
    if name == "array":
        return isinstance(instance, list)
    if name == "string":
        return isinstance(instance, str)
    if name == "boolean":
        return isinstance(instance, bool)
    if name == "null":
        return instance is None
    if name == "number":
        return _is_number(instance)
    if isinstance(instance, float):
        return instance.is_integer()
    return isinstance(instance, int) and not isinstance(instance, bool)


_TRUE, _FALSE = object(), object()


def _unbool(value: object) -> object:
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    return value


def _equal(one: object, two: object) -> bool:
    """jsonschema's equality for enum and const: True is not 1, 1 is 1.0, recursively."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return one == two
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, dict) and isinstance(two, dict):
        return len(one) == len(two) and all(
            key in two and _equal(value, two[key]) for key, value in one.items()
        )
    return _unbool(one) == _unbool(two)


class SimpleValidator:
    """The built-in checker for a schema ``_supported`` accepted (see the module docstring)."""

    def __init__(self, schema: dict[str, JSONValue]) -> None:
        self.schema = schema

    def is_valid(self, config: JSONValue) -> bool:
        return not self.violations(config)

    def violations(self, config: JSONValue) -> set[_Found]:
        found: set[_Found] = set()
        self._check(self.schema, config, [], found)
        return found

    def _check(  # noqa: PLR0912
        self, schema: JSONValue, instance: JSONValue, path: list[PathPart], found: set[_Found]
    ) -> None:
        if schema is True:
            return
        if not isinstance(schema, dict):
            found.add((tuple(path), "false", "is not allowed by the schema"))
            return
        here = tuple(path)
        for key, value in schema.items():
            if key == "type":
                names = value if isinstance(value, list) else [value]
                if not any(_is_type(instance, str(name)) for name in names):
                    found.add((here, key, _type_message(value)))
            elif key == "properties" and isinstance(instance, dict):
                assert isinstance(value, dict)
                for name, subschema in value.items():
                    if name in instance:
                        self._descend(subschema, instance[name], path, name, found)
            elif key == "required" and isinstance(instance, dict):
                assert isinstance(value, list)
                for needed in value:
                    if needed not in instance:
                        found.add((here, key, f"missing required property '{needed}'"))
            elif key == "additionalProperties" and isinstance(instance, dict):
                known = schema.get("properties") or {}
                assert isinstance(known, dict)
                for extra in instance:
                    if extra in known:
                        continue
                    if value is False:
                        found.add(((*here, extra), key, "property is not allowed"))
                    else:
                        self._descend(value, instance[extra], path, extra, found)
            elif key == "items" and isinstance(instance, list) and instance:
                if value is False:
                    found.add((here, key, str(_SIMPLE_MESSAGES[key](value))))
                    continue
                for index, item in enumerate(instance):
                    self._descend(value, item, path, index, found)
            elif key == "enum":
                assert isinstance(value, list)
                if not any(_equal(allowed, instance) for allowed in value):
                    found.add((here, key, _enum_message(value)))
            elif key == "const":
                if not _equal(instance, value):
                    found.add((here, key, _const_message(value)))
            elif key in _BOUNDS:
                if _is_number(instance) and _BOUNDS[key](instance, value):
                    found.add((here, key, str(_SIMPLE_MESSAGES[key](value))))
            elif key in _COUNTS:
                kind, at_least = _COUNTS[key]
                if _is_type(instance, kind):
                    size = len(instance)  # type: ignore[arg-type]
                    if (size < value) if at_least else (size > value):  # type: ignore[operator]
                        found.add((here, key, str(_SIMPLE_MESSAGES[key](value))))
            elif (
                key == "pattern"
                and isinstance(instance, str)
                and not compile_pattern(str(value)).search(instance)
            ):
                found.add((here, key, str(_SIMPLE_MESSAGES[key](value))))

    def _descend(
        self,
        schema: JSONValue,
        instance: JSONValue,
        path: list[PathPart],
        part: PathPart,
        found: set[_Found],
    ) -> None:
        if schema is False:
            # jsonschema reports a false subschema at the parent's path (its
            # ``descend`` yields the error before adding ``part``); match it.
            found.add((tuple(path), "false", "is not allowed by the schema"))
            return
        path.append(part)
        self._check(schema, instance, path, found)
        path.pop()
