"""``kstrata.cli.plain_yaml`` writes PyYAML's bytes, or declines.

The CLI prints its YAML through :func:`kstrata.cli.common.print_data`, which
now tries the PyYAML-free emitter first (so that ``seal --cert`` does not
import PyYAML).  Whatever it writes must be exactly what PyYAML writes, so
output does not change with the data's shape; whatever it is not sure of it
must decline.  Compared here on generated data, on the strings closest to
the edge of what PyYAML writes plain, and on the manifests the CLI prints.
"""

from __future__ import annotations

import io

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kstrata.cli.common import print_data
from kstrata.cli.plain_yaml import dump


def pyyaml(value: object) -> str:
    return yaml.safe_dump(value, sort_keys=True, allow_unicode=True, default_flow_style=False)


#: Strings near the plain/quoted edge: the emitter may take them only if it
#: writes PyYAML's bytes.
EDGE_STRINGS = [
    "a",
    "kss1:Ae262rVWnhnWtjm7J8d4V4trFkmwNhfu8N2ZstDs91La0kPJcoO0itayg5mig5C_VjBmS_eTBgQRtJ64Z",
    "kstrata.dev/v1alpha1",
    "postgres://db:5432/app",
    "a=b+c/d==",
    "_x",
    "/etc/app",
    "y",
    "n",
    "yes",
    "No",
    "TRUE",
    "off",
    "On",
    "null",
    "Null",
    "NULL",
    "~",
    "",
    " a",
    "a ",
    "a b",
    "a: b",
    "a:",
    ":a",
    "-a",
    "- a",
    "1",
    "1.5",
    "0x1f",
    "1:20",
    "2026-12-03",
    ".inf",
    "<<",
    "=",
    "#a",
    "a#b",
    "a #b",
    "'a'",
    '"a"',
    "a\nb",
    "é",
    "x" * 200,
    "a" + "b" * 130,
]

PLAIN_TEXT = st.text(alphabet="abcXYZ019_./:=+- #'\"\n", max_size=12)
#: Mostly what the emitter takes (a letter, ``_`` or ``/`` first), with bool
#: and null words and a trailing ``:`` among them.
NEAR_PLAIN = st.builds(
    str.__add__, st.sampled_from("abyYnNoOtTfF_/"), st.text(alphabet="aeslruo0_./:=+-", max_size=8)
)


def values(text: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**20), max_value=10**20),
        text,
        st.sampled_from(EDGE_STRINGS),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)
        ),
        max_leaves=20,
    )


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(PLAIN_TEXT, values(PLAIN_TEXT), max_size=5))
def test_writes_pyyaml_bytes_or_declines(value: dict[str, object]) -> None:
    written = dump(value)
    assert written is None or written == pyyaml(value)


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(NEAR_PLAIN, values(NEAR_PLAIN), min_size=1, max_size=5))
def test_writes_pyyaml_bytes_for_plain_shapes(value: dict[str, object]) -> None:
    written = dump(value)
    assert written is None or written == pyyaml(value)


@pytest.mark.parametrize("text", EDGE_STRINGS)
def test_edge_strings_as_values_and_keys(text: str) -> None:
    for value in ({"k": text}, {text: "v"}, {"k": [text, {"n": text}]}):
        written = dump(value)
        assert written is None or written == pyyaml(value)


def test_a_sealed_manifest_is_written_without_pyyaml() -> None:
    manifest = {
        "apiVersion": "kstrata.dev/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "payments-db", "namespace": "shop", "labels": {}},
        "spec": {
            "encryptedData": {"password": EDGE_STRINGS[1], "user": EDGE_STRINGS[1]},
            "scope": "strict",
            "template": {"type": "Opaque", "metadata": {"annotations": {"a": "b"}}},
            "recipients": [{"fingerprint": "sha256/ab", "suite": "x25519"}, []],
            "generation": 3,
            "enabled": True,
            "note": None,
        },
    }
    written = dump(manifest)
    assert written is not None
    assert written == pyyaml(manifest)


def test_shared_containers_and_other_types_are_left_to_pyyaml() -> None:
    shared = {"a": "b"}
    empty: list[object] = []
    assert dump({"x": shared, "y": shared}) is None  # PyYAML writes an anchor
    assert dump({"x": empty, "y": empty}) is None
    assert dump({"x": 1.5}) is None
    assert dump({"x": ("a",)}) is None
    assert dump({1: "a"}) is None
    assert dump(["a"]) is None
    assert dump({}) is None


@pytest.mark.parametrize(
    "value", [{"k": "v"}, {"k": "a b"}, {"x": 1.5}, {"s": {"t": "u"}, "t": {"t": "u"}}]
)
def test_print_data_output_is_unchanged(value: dict[str, object]) -> None:
    out = io.StringIO()
    print_data(value, "yaml", out)
    assert out.getvalue() == pyyaml(value)
