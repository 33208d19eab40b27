"""Recursion in the domain ends in kstrata's own errors, never in ``RecursionError``."""

from __future__ import annotations

from typing import Any

import pytest

from kstrata.domain.extends import MAX_EXTENDS_PROFILES
from kstrata.domain.profile import (
    declared_environments,
    lookup_from,
    parse_profile_manifest,
)
from kstrata.domain.schema import check_schema
from kstrata.errors import ExtendsError, InputLimitError


def profile(name: str, extends: list[str]) -> Any:
    return parse_profile_manifest(
        {
            "apiVersion": "kstrata.dev/v1alpha1",
            "kind": "ConfigProfile",
            "metadata": {"name": name},
            "spec": {
                "extends": extends,
                "base": {},
                "environments": {f"env-{name}": {}},
                "output": {"format": "yaml"},
            },
        },
        where=name,
    )


def test_a_chain_of_thousands_of_bases_is_an_extends_error() -> None:
    specs = {f"p{i}": profile(f"p{i}", [f"p{i + 1}"]).spec for i in range(3000)}
    with pytest.raises(ExtendsError, match=f"more than {MAX_EXTENDS_PROFILES} profiles"):
        declared_environments(specs["p0"], "p0", lookup_from(specs))


def test_environments_of_a_short_chain_are_all_found() -> None:
    specs = {f"p{i}": profile(f"p{i}", [f"p{i + 1}"] if i < 3 else []).spec for i in range(4)}
    found = declared_environments(specs["p0"], "p0", lookup_from(specs))
    assert found == ["env-p0", "env-p1", "env-p2", "env-p3"]


def test_a_schema_nested_past_the_bound_is_an_input_limit() -> None:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(5000):  # built by hand: a spec would be refused by the loader first
        schema = {"properties": {"a": schema}}
    with pytest.raises(InputLimitError, match="nesting deeper than"):
        check_schema(schema)
