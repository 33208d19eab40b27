"""Schema patterns: ECMA-262 meaning, matched by RE2 in linear time, never by ``re``.

What is proven here:

* a pattern that makes Python's ``re`` backtrack for minutes (``^(a+)+$``
  against ``"a" * 35 + "!"``) is decided at once, through ``pattern`` and
  ``patternProperties``, on the built-in checker's path and jsonschema's;
* on ordinary patterns the RE2 path agrees with ``re`` (a differential
  property test), and where ECMA-262 and ``re`` disagree it follows ECMA-262;
* what RE2 cannot take (backreferences, lookaround) is an ``InvalidSchemaError``
  naming the place, never a fallback to ``re``, and ``format: regex`` in the
  metaschema check uses the same compiler;
* references that loop end in ``InvalidSchemaError``, not ``RecursionError``.
"""

from __future__ import annotations

import contextlib
import re
import string
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kstrata.domain import regex, schema_keywords
from kstrata.domain.jsonvalue import JSONObject
from kstrata.domain.schema import check_schema, compile_schema, validate
from kstrata.errors import InvalidSchemaError

EVIL = "^(a+)+$"
EVIL_TEXT = "a" * 35 + "!"
#: CPU seconds: far below what ``re`` needs (minutes), far above what RE2 needs
#: (microseconds).  CPU time, not wall time, so a loaded machine cannot fail it.
BUDGET_SECONDS = 0.5


def timed(call: Any) -> tuple[Any, float]:
    started = time.process_time()
    result = call()
    return result, time.process_time() - started


# --- linear time ------------------------------------------------------------------

# Built-in checker (type + pattern only) and jsonschema (allOf forces it).
PATTERN_SCHEMAS = [
    {"type": "string", "pattern": EVIL},
    {"allOf": [{"type": "string", "pattern": EVIL}]},
]
PATTERN_PROPERTY_SCHEMAS = [
    {"type": "object", "patternProperties": {EVIL: {"type": "integer"}}},
    {
        "type": "object",
        "patternProperties": {EVIL: {"type": "integer"}},
        "additionalProperties": False,
    },
    {
        "type": "object",
        "patternProperties": {EVIL: {"type": "integer"}},
        "unevaluatedProperties": False,
    },
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("schema", PATTERN_SCHEMAS)
def test_a_catastrophic_pattern_is_decided_at_once(schema: dict[str, Any]) -> None:
    violations, seconds = timed(lambda: validate(schema, EVIL_TEXT))
    assert seconds < BUDGET_SECONDS
    assert [v.rule for v in violations] == ["pattern"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("schema", PATTERN_PROPERTY_SCHEMAS)
def test_a_catastrophic_property_pattern_is_decided_at_once(schema: dict[str, Any]) -> None:
    config: JSONObject = {EVIL_TEXT: "x", "aaaa": 1}
    violations, seconds = timed(lambda: validate(schema, config))
    assert seconds < BUDGET_SECONDS
    # The key with the '!' does not match, so the pattern's subschema never applies to it.
    assert all(v.path != "$.aaaa" for v in violations)


def test_long_inputs_stay_linear() -> None:
    compiled = regex.compile_pattern("^(a|aa)+(b|ab)*$")
    _, seconds = timed(lambda: compiled.search("a" * 200_000 + "c"))
    assert seconds < BUDGET_SECONDS


# --- the same answers as re on ordinary patterns ---------------------------------

ALPHABET = "ab1_ .-"


def _atoms() -> st.SearchStrategy[str]:
    literal = st.sampled_from(["a", "b", "1", "_", " ", "-", r"\.", r"\-", "x"])
    classes = st.sampled_from(
        [r"\d", r"\D", r"\w", r"\W", r"\s", r"\S", ".", "[ab]", "[^ab]", "[a-c]", r"[\d_]"]
    )
    return st.one_of(literal, classes)


def _quantified(atom: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    quantifier = st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,3}", "{0,}", "*?", "+?"])
    return st.tuples(atom, quantifier).map("".join)


PATTERNS = (
    st.recursive(
        _quantified(_atoms()),
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=4).map("".join),
            st.lists(inner, min_size=2, max_size=3).map("|".join),
            _quantified(inner.map(lambda p: f"({p})")),
            _quantified(inner.map(lambda p: f"(?:{p})")),
        ),
        max_leaves=8,
    )
    .flatmap(
        lambda body: st.tuples(
            st.sampled_from(["", "^"]), st.just(body), st.sampled_from(["", "$"])
        )
    )
    .map("".join)
)


@settings(max_examples=400, deadline=None)
@given(pattern=PATTERNS, text=st.text(alphabet=ALPHABET, max_size=12))
def test_re2_agrees_with_re_on_ordinary_patterns(pattern: str, text: str) -> None:
    assert regex.search(pattern, text) == (re.search(pattern, text) is not None)


@pytest.mark.parametrize(
    ("pattern", "text", "ecma"),
    [
        (r"^\d$", "\u0661", False),  # ARABIC-INDIC DIGIT ONE: \d is ASCII in ECMA-262
        (r"^\w$", "é", False),
        (r"\bb", "éb", True),  # ASCII word boundary: é is not a word character
        ("^a$", "a\n", False),  # $ is the very end, not before a final newline
        ("^.$", "\r", False),  # . stops at every line terminator
        ("^.$", "\u2028", False),
        (r"^\s$", "\ufeff", True),  # ECMA-262 white space includes the BOM
        (r"^\s$", "\u000b", True),
        (r"^\S$", "\ufeff", False),
        ("^[]$", "", False),  # [] matches nothing ...
        ("^[^]$", "\n", True),  # ... and [^] anything
        (r"^\u{1F600}$", "\U0001f600", True),
        (r"^\uD83D\uDE00$", "\U0001f600", True),  # a surrogate pair is one code point
        (r"^\cJ$", "\n", True),
        (r"^[\b]$", "\b", True),
        ("^(?s:.)$", "\n", True),
        ("^(?i:a)b$", "Ab", True),
        ("^(?i:a)b$", "AB", False),
        (r"^\p{Lu}+$", "ÀB", True),
        (r"^\p{Script=Greek}$", "λ", True),
        ("a{", "a{", True),  # Annex B: a brace that is no quantifier is itself
        ("^(?<year>\\d{4})$", "2024", True),
        ("^.$", "\ud800", True),  # a lone surrogate in the text is one code point
    ],
)
def test_ecma_262_meaning_where_re_differs(pattern: str, text: str, ecma: bool) -> None:
    assert regex.search(pattern, text) is ecma


# --- refused, never handed to re ---------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "backreference"),
        (r"(?<n>a)\k<n>", "backreference"),
        ("a(?=b)", "lookahead"),
        ("a(?!b)", "negative lookahead"),
        ("(?<=a)b", "lookbehind"),
        ("(?<!a)b", "negative lookbehind"),
        ("(?i)a", "inline flags"),
        ("(?m:^a)", "'m' modifier"),
        ("a{1001}", "more than 1000"),
        (r"\q", "not an ECMA-262 escape"),
        ("\ud800", "lone surrogate"),
        (r"\uD800", "lone surrogate"),
        ("(a", "not closed"),
        ("a)", "unmatched"),
        ("*a", "nothing to repeat"),
        ("[b-a]", "out of order"),
        (r"\p{Foo}", "General_Category"),
        ("(" * 70 + ")" * 70, "nest deeper"),
        ("a" * (regex.MAX_PATTERN_CHARS + 1), "longer than"),
        ("((((a{1000}){1000}){1000}){1000})", "invalid repetition size"),
        (r"\p{L}{1000}", "too large"),
    ],
)
def test_what_re2_cannot_take_is_an_invalid_schema(pattern: str, why: str) -> None:
    with pytest.raises(InvalidSchemaError, match=re.escape(why)):
        regex.compile_pattern(pattern)


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "string", "pattern": r"(a)\1"}, r"$.pattern"),
        ({"properties": {"a": {"pattern": "(?=x)"}}}, r"$.properties.a.pattern"),
        ({"patternProperties": {"(?<=a)b": {}}}, r"$.patternProperties['(?<=a)b']"),
        ({"allOf": [{"pattern": "(a)\\1"}]}, r"$.allOf[0].pattern"),
        ({"$defs": {"x": {"pattern": "(a)\\1"}}, "$ref": "#/$defs/x"}, "$['$defs'].x.pattern"),
    ],
)
def test_the_schema_error_names_the_place(schema: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidSchemaError, match=re.escape(f"spec.schema {where}: pattern ")):
        check_schema(schema)


def test_patterns_re_rejects_but_ecma_allows_are_accepted() -> None:
    # re has no \p{...} and no \u{...}: accepting these proves re is not asked.
    schema = {"type": "string", "pattern": r"^\p{L}\u{1F600}$"}
    assert validate(schema, "é\U0001f600") == []
    assert [v.rule for v in validate(schema, "1\U0001f600")] == ["pattern"]


def test_the_metaschema_regex_format_uses_the_same_compiler() -> None:
    assert schema_keywords.check_schema({"pattern": r"^\p{L}$"}) is None
    error = schema_keywords.check_schema({"pattern": "(?=a)"})
    assert error is not None
    assert error.validator == "format"
    assert list(error.absolute_path) == ["pattern"]


def test_format_regex_stays_an_annotation_for_configurations() -> None:
    # Draft 2020-12: format does not assert unless asked; a value that is no
    # regex passes, and checking it costs no matching at all.
    assert validate({"type": "string", "format": "regex"}, "(a)\\1") == []


# --- references that loop ------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        {
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
            "$ref": "#/$defs/a",
        },
        {"not": {"$ref": "#"}},
        {"unevaluatedProperties": False, "$ref": "#"},
        {"$ref": "#", "unevaluatedProperties": False},
        {"unevaluatedItems": False, "$ref": "#"},
        {"$dynamicAnchor": "x", "$dynamicRef": "#x"},
    ],
)
@pytest.mark.parametrize("config", [{"a": 1}, [1], "text"])
def test_a_reference_loop_is_an_invalid_schema(schema: dict[str, Any], config: Any) -> None:
    with pytest.raises(InvalidSchemaError, match=r"^spec\.schema: "):
        validate(schema, config)


def test_a_recursive_schema_over_a_deep_configuration_still_validates() -> None:
    tree: JSONObject = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                "additionalProperties": {"$ref": "#/$defs/leaf"},
            },
            "leaf": {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/node"}]},
        },
        "$ref": "#/$defs/node",
    }
    config: dict[str, Any] = {"n": 1}
    for _ in range(30):  # 61 levels: within the document loader's 64
        config = {"children": [config], "n": 1}
    assert validate(tree, config) == []
    broken: JSONObject = {"children": [{"children": [{"n": "x"}]}]}
    assert [v.path for v in validate(tree, broken)] == ["$.children[0].children[0].n"]


def test_the_compiled_validator_is_still_cached() -> None:
    schema: JSONObject = {"allOf": [{"pattern": "^a"}]}
    assert compile_schema(schema) is compile_schema(dict(schema))


def test_printable_patterns_never_raise_anything_but_invalid_schema() -> None:
    # A cheap sweep of every two-character pattern over the printable ASCII.
    for first in string.printable:
        for second in string.printable:
            with contextlib.suppress(InvalidSchemaError):
                regex.compile_pattern(first + second)
