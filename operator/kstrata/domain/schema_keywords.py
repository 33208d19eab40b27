"""jsonschema's draft 2020-12 validator, with RE2 patterns and bounded references.

Imported only by :mod:`kstrata.domain.schema` when a schema needs jsonschema
(the built-in checker covers the common ones), so the offline CLI pays for
none of this.  Built through jsonschema's extension points
(``validators.extend`` and a ``FormatChecker``), not by patching it:

* **Patterns.**  Every keyword that matches a regular expression (``pattern``,
  ``patternProperties``, and the two that consult ``patternProperties``:
  ``additionalProperties`` and ``unevaluatedProperties``) is replaced by one
  that uses :mod:`kstrata.domain.regex` (ECMA-262 translated for RE2, linear
  time), and the metaschema's ``format: regex`` check uses the same compiler,
  so a schema is accepted exactly when its patterns can be matched that way.
  jsonschema's own versions call ``re.search``, which backtracks.
* **References.**  ``$ref`` and ``$dynamicRef`` that come back to the schema
  node they started from, on the same part of the configuration, never end
  (``{"$ref": "#"}``); jsonschema recurses until Python's ``RecursionError``.
  Here such a loop is an ``InvalidSchemaError`` the moment it closes, and
  references nest at most ``MAX_REFERENCE_DEPTH`` deep in any case.
* **Time.**  References that do not loop can still multiply: a definition
  that is ``anyOf`` two references to the next one, twenty deep, is a million
  validations.  Every applicator keyword checks the thread's time budget
  (:mod:`kstrata.domain.budget`) before it applies its subschemas.

Messages of the errors yielded here hold no instance value (``schema._describe``
rebuilds every message anyway, from the keyword and the schema's side).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from importlib import import_module
from typing import Final, Protocol

from kstrata.domain import budget
from kstrata.domain.jsonvalue import JSONObject, JSONValue, PathPart
from kstrata.domain.regex import Pattern, compile_pattern
from kstrata.errors import InvalidSchemaError

__all__ = [
    "MAX_REFERENCE_DEPTH",
    "SchemaError",
    "SchemaValidator",
    "check_schema",
    "iter_violations",
    "validator_class",
]

#: References (``$ref``, ``$dynamicRef``) followed inside one another, at most.
MAX_REFERENCE_DEPTH: Final = 256

_jsonschema = import_module("jsonschema")
_ValidationError = import_module("jsonschema.exceptions").ValidationError
_Draft = _jsonschema.Draft202012Validator


# --- what kstrata uses of jsonschema ---------------------------------------------
#
# jsonschema ships no type information (and no stubs are installed): these
# Protocols name the attributes and methods used here and in
# :mod:`kstrata.domain.schema`, so the rest of the code is checked against them.


class SchemaError(Protocol):
    """A ``jsonschema.ValidationError``, as far as kstrata reads one."""

    @property
    def absolute_path(self) -> Sequence[PathPart]: ...
    @property
    def validator(self) -> str | None: ...
    @property
    def validator_value(self) -> JSONValue: ...
    @property
    def instance(self) -> JSONValue: ...
    @property
    def schema(self) -> JSONValue: ...


class _Resolved(Protocol):
    @property
    def contents(self) -> JSONValue: ...
    @property
    def resolver(self) -> object: ...


class _Resolver(Protocol):
    def lookup(self, ref: str) -> _Resolved: ...


class SchemaValidator(Protocol):
    """A jsonschema validator instance, as the keywords below and the schema module use it."""

    @property
    def _resolver(self) -> _Resolver: ...
    def descend(
        self,
        instance: JSONValue,
        schema: JSONValue,
        path: PathPart | None = None,
        schema_path: PathPart | None = None,
    ) -> Iterator[SchemaError]: ...
    def evolve(self, **changes: object) -> SchemaValidator: ...
    def is_valid(self, instance: JSONValue) -> bool: ...
    def iter_errors(self, instance: JSONValue) -> Iterator[SchemaError]: ...


#: A keyword's implementation: (validator, the keyword's value, instance, the
#: schema node holding the keyword) -> the errors found.  Where jsonschema's
#: own ones ask ``validator.is_type(x, "object")`` (or ``"string"``), the ones
#: here ask ``isinstance`` (``dict``, ``str``), which is what draft 2020-12's
#: type checker does and what lets mypy follow the narrowing.
Keyword = Callable[[SchemaValidator, JSONValue, JSONValue, JSONObject], Iterator[SchemaError]]


def _list(value: JSONValue) -> list[JSONValue]:
    return value if isinstance(value, list) else []


# --- references ----------------------------------------------------------------


class _Active(threading.local):
    """The references being followed in this thread: (schema node, instance) ids."""

    def __init__(self) -> None:
        self.pairs: set[tuple[int, int]] = set()


_active = _Active()


def _enter(ref: object, schema: object, instance: object) -> tuple[int, int]:
    key = (id(schema), id(instance))
    if key in _active.pairs:
        raise InvalidSchemaError(
            f"spec.schema: the reference {ref!r} leads back to itself without going "
            "into the configuration, so validation would never end"
        )
    if len(_active.pairs) >= MAX_REFERENCE_DEPTH:
        raise InvalidSchemaError(
            f"spec.schema: references nest more than {MAX_REFERENCE_DEPTH} deep"
        )
    _active.pairs.add(key)
    return key


def _bounded(keyword: Keyword) -> Keyword:
    """``$ref``/``$dynamicRef`` that refuse to loop (see the module docstring)."""

    def follow(
        validator: SchemaValidator, ref: JSONValue, instance: JSONValue, schema: JSONObject
    ) -> Iterator[SchemaError]:
        key = _enter(ref, schema, instance)
        try:
            yield from keyword(validator, ref, instance, schema)
        finally:
            _active.pairs.discard(key)

    return follow


# --- patterns --------------------------------------------------------------------


def _compiled(patterns: JSONValue) -> list[Pattern]:
    """The compiled keys of a ``patternProperties`` object."""
    return [compile_pattern(pattern) for pattern in patterns] if isinstance(patterns, dict) else []


def _pattern(
    validator: SchemaValidator, pattern: JSONValue, instance: JSONValue, schema: JSONObject
) -> Iterator[SchemaError]:
    if (
        isinstance(instance, str)
        and isinstance(pattern, str)
        and not compile_pattern(pattern).search(instance)
    ):
        yield _ValidationError("does not match the pattern")


def _pattern_properties(
    validator: SchemaValidator, patterns: JSONValue, instance: JSONValue, schema: JSONObject
) -> Iterator[SchemaError]:
    if not isinstance(instance, dict) or not isinstance(patterns, dict):
        return
    for pattern, subschema in patterns.items():
        compiled = compile_pattern(pattern)
        for key, value in instance.items():
            if compiled.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def additional_keys(instance: JSONObject, schema: JSONObject) -> list[str]:
    """Keys neither ``properties`` nor ``patternProperties`` of ``schema`` cover."""
    declared = schema.get("properties")
    properties = declared if isinstance(declared, dict) else {}
    patterns = _compiled(schema.get("patternProperties"))
    return [
        key
        for key in instance
        if key not in properties and not any(pattern.search(key) for pattern in patterns)
    ]


def _additional_properties(
    validator: SchemaValidator, additional: JSONValue, instance: JSONValue, schema: JSONObject
) -> Iterator[SchemaError]:
    if not isinstance(instance, dict):
        return
    extras = additional_keys(instance, schema)
    if isinstance(additional, dict):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        yield _ValidationError("additional properties are not allowed")


def _is_valid(errors: Iterator[SchemaError]) -> bool:
    return next(errors, None) is None


def _evaluated_keys(  # noqa: PLR0912
    validator: SchemaValidator, instance: JSONObject, schema: JSONValue
) -> list[str]:
    """jsonschema's ``find_evaluated_property_keys_by_schema``, with RE2 and bounded refs."""
    if not isinstance(schema, dict):
        return []  # a boolean schema
    keys: list[str] = []
    for keyword in ("$ref", "$dynamicRef"):
        ref = schema.get(keyword)
        if not isinstance(ref, str):
            continue
        entered = _enter(ref, schema, instance)
        try:
            resolved = validator._resolver.lookup(ref)
            keys += _evaluated_keys(
                validator.evolve(schema=resolved.contents, _resolver=resolved.resolver),
                instance,
                resolved.contents,
            )
        finally:
            _active.pairs.discard(entered)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        keys += properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        subschema = schema.get(keyword)
        if subschema is not None:
            keys += (
                key
                for key, value in instance.items()
                if _is_valid(validator.descend(value, subschema))
            )
    if "patternProperties" in schema:
        patterns = _compiled(schema["patternProperties"])
        keys += (key for key in instance if any(pattern.search(key) for pattern in patterns))
    dependent = schema.get("dependentSchemas")
    for name, subschema in dependent.items() if isinstance(dependent, dict) else ():
        if name in instance:
            keys += _evaluated_keys(validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in _list(schema.get(keyword)):
            if _is_valid(validator.descend(instance, subschema)):
                keys += _evaluated_keys(validator, instance, subschema)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys += _evaluated_keys(validator, instance, schema["if"])
            if "then" in schema:
                keys += _evaluated_keys(validator, instance, schema["then"])
        elif "else" in schema:
            keys += _evaluated_keys(validator, instance, schema["else"])
    return keys


def _unevaluated_properties(
    validator: SchemaValidator, unevaluated: JSONValue, instance: JSONValue, schema: JSONObject
) -> Iterator[SchemaError]:
    if not isinstance(instance, dict):
        return
    evaluated = set(_evaluated_keys(validator, instance, schema))
    failed = [
        key
        for key in instance
        if key not in evaluated
        and not _is_valid(validator.descend(instance[key], unevaluated, path=key, schema_path=key))
    ]
    if failed:
        yield _ValidationError("unevaluated properties are not allowed")


# --- the classes -------------------------------------------------------------------


def _is_regex(instance: object) -> bool:
    if isinstance(instance, str):
        compile_pattern(instance)  # raises InvalidSchemaError, which the checker reports
    return True


def _format_checker() -> object:
    checker = _jsonschema.FormatChecker(formats=())
    checker.checkers = dict(_Draft.FORMAT_CHECKER.checkers)
    checker.checks("regex", raises=InvalidSchemaError)(_is_regex)
    return checker


FORMAT_CHECKER: Final = _format_checker()

# --- the time budget ----------------------------------------------------------

#: Keywords that validate the instance (or part of it) against subschemas:
#: the only way the work can multiply, so the only places the budget is checked.
_APPLICATORS: Final = (
    "$ref",
    "$dynamicRef",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "properties",
    "patternProperties",
    "additionalProperties",
    "items",
    "prefixItems",
    "contains",
    "dependentSchemas",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
)


def _budgeted(keyword: Keyword) -> Keyword:
    """``keyword``, checking the thread's time budget before each application."""

    def apply(
        validator: SchemaValidator, value: JSONValue, instance: JSONValue, schema: JSONObject
    ) -> Iterator[SchemaError]:
        budget.check()
        yield from keyword(validator, value, instance, schema)

    return apply


_KEYWORDS: Final[dict[str, Keyword]] = {
    "$ref": _bounded(_Draft.VALIDATORS["$ref"]),
    "$dynamicRef": _bounded(_Draft.VALIDATORS["$dynamicRef"]),
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "unevaluatedProperties": _unevaluated_properties,
}
_VALIDATORS: Final = {
    **_KEYWORDS,
    **{name: _budgeted(_KEYWORDS.get(name, _Draft.VALIDATORS[name])) for name in _APPLICATORS},
}

#: Draft 2020-12 with the keywords above.  ``format`` stays an annotation for
#: configurations (as the draft says); the metaschema check asserts ``regex``.
Validator: Final = _jsonschema.validators.extend(
    _Draft, validators=_VALIDATORS, format_checker=FORMAT_CHECKER
)


def validator_class() -> Callable[..., SchemaValidator]:
    """The validator class: called with a schema and ``registry=`` (``referencing.Registry``)."""
    validator: Callable[..., SchemaValidator] = Validator
    return validator


def check_schema(schema: JSONObject) -> SchemaError | None:
    """The first error of ``schema`` against the draft 2020-12 metaschema, or None.

    Like ``Draft202012Validator.check_schema``, with the RE2 ``regex`` format
    and the keywords above applied to the metaschema's own patterns too.
    """
    _active.pairs.clear()
    meta = Validator(_Draft.META_SCHEMA, format_checker=FORMAT_CHECKER)
    return next(meta.iter_errors(schema), None)


def iter_violations(validator: SchemaValidator, config: JSONValue) -> Iterator[SchemaError]:
    """``validator.iter_errors(config)``, starting with no reference in progress."""
    _active.pairs.clear()
    yield from validator.iter_errors(config)
