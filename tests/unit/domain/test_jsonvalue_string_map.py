"""``string_map``: the one check that a field maps strings to strings.

Labels, annotations and ``encryptedData`` are read through it by the
SealedSecret spec parser, ``kstrata unseal --recovery-keys`` and the
Bitnami import; its message names the field and never the value.
"""

from __future__ import annotations

import pytest

from kstrata.domain.jsonvalue import string_map
from kstrata.errors import InvalidInputError


def test_a_map_of_strings_is_copied_and_a_missing_field_is_empty() -> None:
    labels = {"app": "web"}
    copied = string_map(labels, "spec.template.labels")
    assert copied == labels
    assert copied is not labels
    assert string_map(None, "spec.template.labels") == {}


@pytest.mark.parametrize("value", [["a"], "text", {"a": 1}, {1: "a"}, {"a": None}])
def test_anything_else_names_the_field_not_the_value(value: object) -> None:
    with pytest.raises(InvalidInputError) as raised:
        string_map(value, "spec.encryptedData")
    assert str(raised.value) == "spec.encryptedData must map strings to strings"
