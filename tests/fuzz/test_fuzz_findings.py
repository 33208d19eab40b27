"""Plain regression tests for what the fuzz targets found (no atheris needed).

Each crashing input is also in the committed corpus (tests/fuzz/corpus/
<target>/finding-*), so every fuzz run replays it first.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from kstrata.crypto import KeyPair
from kstrata.domain.documents import load_yaml_documents
from kstrata.domain.readback import candidates
from kstrata.domain.render import render_text
from kstrata.errors import DocumentError
from kstrata.watch import parse_properties


@pytest.fixture
def pure_python_yaml() -> Iterator[None]:
    """The parser kstrata uses when PyYAML was built without libyaml."""
    saved = yaml.__with_libyaml__
    setattr(yaml, "__with_libyaml__", False)  # noqa: B010 (the name is Final to mypy)
    try:
        yield
    finally:
        setattr(yaml, "__with_libyaml__", saved)  # noqa: B010


@pytest.mark.usefixtures("pure_python_yaml")
def test_unprintable_character_is_a_document_error_on_the_pure_python_path() -> None:
    # Found by the documents target: the pure-Python reader checks the text
    # for unprintable characters when it is built, which happened outside the
    # try that translates PyYAML's errors, so a raw ReaderError escaped.
    with pytest.raises(DocumentError, match=r"unacceptable character at position 15"):
        load_yaml_documents(b"[[[[[[[[[[1]]]]\x03[[[[[[]]]]][[]\n[[1", source="in.yaml")


def test_unprintable_character_is_the_same_error_with_libyaml() -> None:
    with pytest.raises(DocumentError, match=r"unacceptable character at position 15"):
        load_yaml_documents(b"[[[[[[[[[[1]]]]\x03[[[[[[]]]]][[]\n[[1", source="in.yaml")


def test_properties_file_with_only_comments_imports_as_an_empty_configuration() -> None:
    # Found by the env_properties target: `kstrata import -f x.properties`
    # on a file with no keys (only comments, or empty) reads as an empty map.
    assert candidates("# c\n! only comments\n", "properties", "in.properties")[0] == {}


@pytest.mark.parametrize("libyaml", [True, False])
@pytest.mark.parametrize(
    ("text", "expected"),
    [(b"!", ""), (b"a: !\n", {"a": ""}), (b"! 1\n", "1"), (b"! null\n", "null"), (b"! [1]\n", [1])],
)
def test_non_specific_tag_makes_a_string_on_both_yaml_paths(
    text: bytes, expected: object, libyaml: bool
) -> None:
    # Found by the documents target: "!" alone loaded as "" with libyaml and
    # as null with the pure-Python parser (they report its implicit flags
    # differently).  YAML's non-specific tag "!" means a non-plain scalar: a string.
    saved = yaml.__with_libyaml__
    setattr(yaml, "__with_libyaml__", libyaml and saved)  # noqa: B010
    try:
        assert load_yaml_documents(text) == [expected]
    finally:
        setattr(yaml, "__with_libyaml__", saved)  # noqa: B010


_ENTRY_YEAR_0195 = b"""{
  "created": "0195-01-01T00:00:00Z",
  "format": "kstrata.dev/sealing-key/v1",
  "keyId": "5ebf99a4494cf5be01713638b3d9441c",
  "privateKey": "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
  "suite": "x25519"
}
"""


def test_a_key_entry_that_reads_writes_back_as_one_that_reads() -> None:
    # Found by the token target: parse_time takes "0195-01-01T00:00:00Z"
    # (strptime's %Y), format_time writes it back as "195-01-01T00:00:00Z".
    pair = KeyPair.from_secret_entry(_ENTRY_YEAR_0195)
    assert KeyPair.from_secret_entry(pair.to_secret_entry()).key_id == pair.key_id


def test_properties_reader_joins_the_surrogate_pairs_the_renderer_writes() -> None:
    # Found by the env_properties target: kstrata renders U+1F600 as
    # "\\uD83D\\uDE00" (java.util.Properties.store does the same), and Java
    # reads that pair back as the one character; kstrata's reader does not.
    rendered = render_text({"smile": "\U0001f600"}, "properties")
    assert rendered == "smile=\\uD83D\\uDE00\n"
    assert parse_properties(rendered.encode("utf-8"), "in.properties") == {"smile": "\U0001f600"}
