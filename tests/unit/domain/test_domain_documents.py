"""Safe, bounded YAML/JSON loading: hostile input fails fast and names no content."""

from __future__ import annotations

import time

import pytest

from kstrata.domain.documents import (
    load_documents,
    load_json,
    load_yaml,
    load_yaml_documents,
    objects_of,
)
from kstrata.domain.jsonvalue import JSONObject, Limits
from kstrata.errors import DocumentError, InputLimitError

CANARY = "CANARY-7f3a9c"


def billion_laughs(levels: int = 9) -> str:
    lines = [f'l0: &l0 ["{CANARY}"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * 10)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


# --- ordinary documents ------------------------------------------------------------


def test_json_compatible_types_load() -> None:
    text = "a: 1\nb: 2.5\nc: true\nd: null\ne: text\nf: [1, x]\ng: {h: -3}\n"
    assert load_yaml(text) == {
        "a": 1,
        "b": 2.5,
        "c": True,
        "d": None,
        "e": "text",
        "f": [1, "x"],
        "g": {"h": -3},
    }


def test_explicit_core_tags_are_allowed() -> None:
    text = "a: !!str 123\nb: !!int '7'\nc: !!float '1.5'\nd: !!bool 'true'\ne: !!null ''\n"
    assert load_yaml(text) == {"a": "123", "b": 7, "c": 1.5, "d": True, "e": None}


def test_timestamps_stay_strings() -> None:
    assert load_yaml("day: 2024-01-31\nat: 2024-01-31T10:00:00Z\n") == {
        "day": "2024-01-31",
        "at": "2024-01-31T10:00:00Z",
    }


def test_yaml_1_1_scalars_resolve_like_pyyaml() -> None:
    assert load_yaml("a: yes\nb: 0x1F\nc: '='\nd: =\n") == {"a": True, "b": 31, "c": "=", "d": "="}


def test_aliases_are_expanded_into_independent_copies() -> None:
    loaded = load_yaml("a: &x {k: [1]}\nb: *x\n")
    assert loaded == {"a": {"k": [1]}, "b": {"k": [1]}}
    assert isinstance(loaded, dict)
    assert loaded["a"] is not loaded["b"]


def test_merge_keys_explicit_keys_win_and_first_source_wins() -> None:
    text = (
        "one: &one {a: 1, b: 1}\n"
        "two: &two {b: 2, c: 2}\n"
        "m:\n  <<: [*one, *two]\n  a: 0\n"
        "n:\n  a: 0\n  <<: *two\n"
    )
    loaded = load_yaml(text)
    assert isinstance(loaded, dict)
    assert loaded["m"] == {"a": 0, "b": 1, "c": 2}
    assert loaded["n"] == {"a": 0, "b": 2, "c": 2}


def test_merge_key_needs_mappings() -> None:
    with pytest.raises(DocumentError, match="merge key"):
        load_yaml("a: &x [1]\nb:\n  <<: *x\n")


def test_quoted_merge_key_is_an_ordinary_key() -> None:
    assert load_yaml("'<<': 1\n") == {"<<": 1}


def test_multi_document_streams() -> None:
    assert load_yaml_documents("a: 1\n---\nb: 2\n") == [{"a": 1}, {"b": 2}]
    assert load_yaml_documents("") == []
    with pytest.raises(DocumentError, match="expected one YAML document, found 2"):
        load_yaml("a: 1\n---\nb: 2\n")
    assert load_yaml("") is None


def test_anchors_do_not_leak_between_documents() -> None:
    with pytest.raises(DocumentError, match="undefined anchor"):
        load_yaml_documents("a: &x 1\n---\nb: *x\n")


def test_bytes_with_bom_and_invalid_utf8() -> None:
    assert load_yaml("\ufeffa: 1\n".encode()) == {"a": 1}
    with pytest.raises(DocumentError, match=r"not valid UTF-8 \(byte offset 3\)"):
        load_yaml(b"a: \xff\n", source="x.yaml")


def test_load_documents_picks_the_parser_by_file_name() -> None:
    assert load_documents('{"a": 1}', source="c.JSON") == [{"a": 1}]
    assert load_documents("a: 1\n---\nb: 2\n", source="c.yaml") == [{"a": 1}, {"b": 2}]
    with pytest.raises(DocumentError, match="invalid JSON"):
        load_documents("a: 1\n", source="c.json")


# --- hostile documents -------------------------------------------------------------


def test_billion_laughs_is_rejected_fast() -> None:
    # CPU seconds (expansion burns CPU; a loaded machine only adds wall time).
    started = time.process_time()
    with pytest.raises(InputLimitError, match="after alias expansion") as caught:
        load_yaml(billion_laughs(), source="bomb.yaml")
    assert time.process_time() - started < 2.0
    assert str(caught.value).startswith("bomb.yaml:")
    assert CANARY not in str(caught.value)


def test_few_aliases_to_one_big_anchor_are_counted_by_size() -> None:
    items = ", ".join(str(i) for i in range(5000))
    text = f"big: &big [{items}]\nrefs: [{', '.join(['*big'] * 30)}]\n"
    with pytest.raises(InputLimitError, match="100000 values"):
        load_yaml(text)


def test_alias_expansion_within_the_bound_is_fine() -> None:
    loaded = load_yaml(billion_laughs(levels=3))
    assert isinstance(loaded, dict)
    assert isinstance(loaded["l3"], list)
    assert len(loaded["l3"]) == 10


def test_merge_key_bombs_are_bounded_too() -> None:
    lines = ["m0: &m0 {" + ", ".join(f"k{i}: {i}" for i in range(100)) + "}"]
    for level in range(1, 8):
        refs = ", ".join(f"*m{level - 1}" for _ in range(10))
        lines.append(f"m{level}: &m{level}\n  <<: [{refs}]\n  own{level}: 1")
    with pytest.raises(InputLimitError):
        load_yaml("\n".join(lines) + "\n", limits=Limits(max_nodes=5000))


def test_recursive_alias_is_rejected() -> None:
    with pytest.raises(DocumentError, match="recursive alias"):
        load_yaml("a: &a [1, *a]\n")


@pytest.mark.parametrize("depth", [64, 65])
def test_nesting_depth_bound_is_exact(depth: int) -> None:
    text = "[" * depth + "]" * depth
    if depth <= 64:
        assert load_yaml(text) is not None
        assert load_json(text) is not None
    else:
        with pytest.raises(InputLimitError, match="nesting deeper than 64"):
            load_yaml(text)
        with pytest.raises(InputLimitError, match="nesting deeper than 64"):
            load_json(text)


def test_huge_nesting_fails_fast_without_recursion_error() -> None:
    started = time.process_time()
    with pytest.raises(InputLimitError):
        load_yaml("[" * 200_000)
    with pytest.raises(InputLimitError):
        load_json("[" * 200_000 + "]" * 200_000)
    assert time.process_time() - started < 2.0


def test_alias_cannot_smuggle_depth() -> None:
    deep = "[" * 40 + "]" * 40
    text = f"a: &deep {deep}\nb: {'[' * 30}*deep{']' * 30}\n"
    with pytest.raises(InputLimitError, match="nesting deeper"):
        load_yaml(text)


def test_size_bound() -> None:
    limits = Limits(max_bytes=100)
    load_yaml("a: " + "x" * 90, limits=limits)
    with pytest.raises(InputLimitError, match="101 bytes, over the limit of 100"):
        load_yaml(b"a: " + b"x" * 98, limits=limits)
    with pytest.raises(InputLimitError, match="102 bytes"):
        load_yaml("a: " + "é" * 49 + "x", limits=limits)


def test_node_bound() -> None:
    limits = Limits(max_nodes=10)
    load_yaml("[1, 2, 3, 4, 5, 6, 7, 8, 9]", limits=limits)
    with pytest.raises(InputLimitError):
        load_yaml("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]", limits=limits)
    with pytest.raises(InputLimitError):
        load_json("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]", limits=limits)


# --- shape errors: named by file, line and path, never by content --------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"a:\n  1: {CANARY}\n", r"^f\.yaml:2: \$\.a: mapping key is not a string"),
        (f"a:\n  true: {CANARY}\n", r"^f\.yaml:2: \$\.a: mapping key is not a string"),
        (f"~: {CANARY}\n", r"^f\.yaml:1: \$: mapping key is not a string"),
        (f"? [{CANARY}]\n: 1\n", r"^f\.yaml:1: \$: mapping key is not a string"),
        (f"a: !!python/object:os.system {CANARY}\n", r"^f\.yaml:1: \$\.a: unsupported YAML tag"),
        (f"a: [!!binary {CANARY}]\n", r"^f\.yaml:1: \$\.a\[0\]: unsupported YAML tag"),
        (f"a: !!set {{{CANARY}: null}}\n", r"^f\.yaml:1: \$\.a: unsupported YAML tag"),
        (f"a: !!timestamp 2024-01-01 # {CANARY}\n", r"unsupported YAML tag"),
        (f"a: !secret {CANARY}\n", r"^f\.yaml:1: \$\.a: unsupported YAML tag"),
        (f"a: 1\nb:\n  c: {CANARY}\n  c: 2\n", r"^f\.yaml:4: \$\.b\.c: duplicate key"),
        (f"a: !!int {CANARY}\n", r"^f\.yaml:1: \$\.a: value is not a valid int"),
        (f"a: [.nan, {CANARY}]\n", r"^f\.yaml:1: \$\.a\[0\]: non-finite number"),
        (f"a: *{CANARY}\n", r"alias to an undefined anchor"),
        (f"a: '{CANARY}\n", r"^f\.yaml:2: invalid YAML"),
        (f"a: [1, {CANARY}\nb: 2\n", r"^f\.yaml:\d+: invalid YAML"),
        (f"a:\n\tb: {CANARY}\n", r"^f\.yaml:2: invalid YAML"),
    ],
)
def test_yaml_errors_name_place_not_content(text: str, message: str) -> None:
    with pytest.raises(DocumentError, match=message) as caught:
        load_yaml(text, source="f.yaml")
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f'{{"a": "{CANARY}", "a": 1}}', "duplicate key"),
        (f'{{"a": NaN, "b": "{CANARY}"}}', "NaN and Infinity"),
        (f'{{"a": 1e400, "b": "{CANARY}"}}', r"f\.json: \$\.a: non-finite number"),
        (f'{{"a": "{CANARY}",}}', r"^f\.json:1: invalid JSON \(column \d+\)"),
        ("[" + "9" * 5000 + "]", "number too large"),
    ],
)
def test_json_errors_name_place_not_content(text: str, message: str) -> None:
    with pytest.raises(DocumentError, match=message) as caught:
        load_json(text, source="f.json")
    assert CANARY not in str(caught.value)


# --- the pure-Python parser (PyYAML built without libyaml) --------------------------


@pytest.fixture
def pure_python_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    monkeypatch.setattr(yaml, "__with_libyaml__", False)


@pytest.mark.usefixtures("pure_python_parser")
def test_pure_python_parser_gives_the_same_values() -> None:
    text = "a: &x {k: [1, 2.5, yes, ~, 2024-01-01]}\nb:\n  <<: *x\n  z: 'q'\n---\n- 1\n"
    assert load_yaml_documents(text) == [
        {
            "a": {"k": [1, 2.5, True, None, "2024-01-01"]},
            "b": {"k": [1, 2.5, True, None, "2024-01-01"], "z": "q"},
        },
        [1],
    ]
    with pytest.raises(InputLimitError, match="after alias expansion"):
        load_yaml(billion_laughs())


@pytest.mark.usefixtures("pure_python_parser")
@pytest.mark.parametrize("text", [f"a: [1, {CANARY}\nb: 2\n", f"a:\n\t{CANARY}: 1\n", "a: @x\n"])
def test_pure_python_parser_errors_quote_nothing(text: str) -> None:
    with pytest.raises(DocumentError, match=r"^f\.yaml:\d+: invalid YAML") as caught:
        load_yaml(text, source="f.yaml")
    assert CANARY not in str(caught.value)
    assert "'@'" not in str(caught.value)


# --- the objects a document stands for ----------------------------------------------


def test_objects_of_flattens_lists_nested_lists_and_skips_empty_documents() -> None:
    secret: JSONObject = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}}
    other: JSONObject = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}
    inner: JSONObject = {"apiVersion": "v1", "kind": "List", "items": [other, None]}
    listed: JSONObject = {"apiVersion": "v1", "kind": "List", "items": [secret, inner]}
    assert objects_of(secret, "a.yaml") == [secret]
    assert objects_of(listed, "a.yaml") == [secret, other]
    assert objects_of(None, "a.yaml") == []
    # A List without items is an object like any other (what kubectl would reject).
    assert objects_of({"kind": "List"}, "a.yaml") == [{"kind": "List"}]


def test_objects_of_names_the_file_and_what_was_expected_never_the_content() -> None:
    with pytest.raises(DocumentError) as error:
        objects_of([CANARY], "a.yaml", expected="SealedSecret manifests")
    assert str(error.value) == "a.yaml: expected SealedSecret manifests"
    listed: JSONObject = {"kind": "List", "items": [CANARY]}
    with pytest.raises(DocumentError, match=r"^b\.yaml: expected Kubernetes objects$"):
        objects_of(listed, "b.yaml")
