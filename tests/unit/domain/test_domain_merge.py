"""JSON Merge Patch (RFC 7386): the RFC's own examples and algebraic properties."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kstrata.domain.jsonvalue import JSONObject
from kstrata.domain.merge import merge_layers, merge_patch
from kstrata.errors import InputLimitError, MergeError

# RFC 7386, Appendix A, every row: (original, patch, result).
APPENDIX_A: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "expected"), APPENDIX_A)
def test_rfc7386_appendix_a(original: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(original, patch) == expected


def test_rfc7386_section_3_example() -> None:
    target: JSONObject = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch: JSONObject = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["example"],
    }
    assert merge_patch(target, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }


def test_target_key_order_is_kept_and_new_keys_follow() -> None:
    result = merge_patch({"z": 1, "a": 2, "m": 3}, {"b": 4, "a": 5})
    assert isinstance(result, dict)
    assert list(result) == ["z", "a", "m", "b"]


def test_merge_layers_applies_in_order_and_names_a_bad_layer() -> None:
    assert merge_layers([("one", {"a": 1, "b": 1}), ("two", {"b": 2, "a": None})]) == {"b": 2}
    with pytest.raises(
        MergeError, match=r"^spec\.environments\.prod: an overlay must be an object"
    ):
        merge_layers([("spec.base", {"a": 1}), ("spec.environments.prod", ["x"])])


def test_hand_built_deep_value_is_a_limit_error_not_a_recursion_error() -> None:
    deep: Any = {}
    for _ in range(500):
        deep = {"a": deep}
    with pytest.raises(InputLimitError):
        merge_patch({}, deep)


# --- properties ------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
keys = st.text(max_size=4)


def json_values(leaves: st.SearchStrategy[Any] = scalars) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=20,
    )


objects = st.dictionaries(keys, json_values(), max_size=5)
scalars_without_null = st.booleans() | st.integers() | st.text()
objects_without_null = st.dictionaries(keys, json_values(scalars_without_null), max_size=5)


def object_member_nulls(value: Any) -> int:
    """Nulls that are object members (not inside arrays, which replace wholesale)."""
    if isinstance(value, dict):
        return sum(1 if item is None else object_member_nulls(item) for item in value.values())
    return 0


def containers(value: Any) -> list[int]:
    found: list[int] = []
    if isinstance(value, dict | list):
        found.append(id(value))
        for item in value.values() if isinstance(value, dict) else value:
            found.extend(containers(item))
    return found


@settings(max_examples=80, deadline=None)
@given(objects)
def test_empty_patch_is_identity_on_objects(target: dict[str, Any]) -> None:
    assert merge_patch(target, {}) == target


@settings(max_examples=80, deadline=None)
@given(objects_without_null, objects)
def test_result_has_no_nulls_from_the_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    assert object_member_nulls(merge_patch(target, patch)) == 0


@settings(max_examples=80, deadline=None)
@given(json_values(), json_values())
def test_merge_is_idempotent(target: Any, patch: Any) -> None:
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once


@settings(max_examples=80, deadline=None)
@given(json_values(), json_values())
def test_inputs_are_never_mutated_nor_shared(target: Any, patch: Any) -> None:
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    result = merge_patch(target, patch)
    assert target == target_before
    assert patch == patch_before
    shared = set(containers(result)) & (set(containers(target)) | set(containers(patch)))
    assert not shared


@settings(max_examples=40, deadline=None)
@given(st.lists(objects, min_size=1, max_size=4))
def test_merge_layers_equals_folding_merge_patch(layers: list[dict[str, Any]]) -> None:
    expected: Any = {}
    for layer in layers:
        expected = merge_patch(expected, layer)
    assert merge_layers((f"layer{i}", layer) for i, layer in enumerate(layers)) == expected
