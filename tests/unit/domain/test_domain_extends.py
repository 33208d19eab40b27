"""``spec.extends``: layer order, dependencies, cycles, missing bases and bounds."""

from __future__ import annotations

from typing import Any

import pytest

from kstrata.domain.extends import MAX_EXTENDS_DEPTH, MAX_EXTENDS_PROFILES, resolve_layers
from kstrata.domain.profile import ProfileSpec
from kstrata.errors import ExtendsError


def spec(
    base: dict[str, Any] | None = None,
    environments: dict[str, dict[str, Any]] | None = None,
    extends: tuple[str, ...] = (),
) -> ProfileSpec:
    return ProfileSpec(base=base or {}, environments=environments or {}, extends=extends)


class Lookup:
    """An in-memory lookup that records every name asked for."""

    def __init__(self, profiles: dict[str, ProfileSpec]) -> None:
        self.profiles = profiles
        self.calls: list[str] = []

    def __call__(self, name: str) -> ProfileSpec | None:
        self.calls.append(name)
        return self.profiles.get(name)


def test_no_extends_is_base_then_overlay() -> None:
    own = spec({"a": 1, "b": {"c": 1}}, {"prod": {"b": {"c": 2}}})
    layered = resolve_layers("app", own, "prod", Lookup({}))
    assert layered.config == {"a": 1, "b": {"c": 2}}
    assert layered.depends_on == ()


def test_layer_order_through_a_chain() -> None:
    # Later layers win: root base < root prod overlay < shared base < shared
    # prod overlay < app base < app prod overlay.
    lookup = Lookup(
        {
            "root": spec(
                {"k1": "root", "k2": "root", "k3": "root", "only_root": 1},
                {"prod": {"k1": "root-prod", "k4": "root-prod"}},
            ),
            "shared": spec(
                {"k2": "shared", "k4": "shared"}, {"prod": {"k3": "shared-prod"}}, extends=("root",)
            ),
        }
    )
    app = spec({"k3": "app", "k5": "app"}, {"prod": {"k5": "app-prod"}}, extends=("shared",))
    layered = resolve_layers("app", app, "prod", lookup)
    assert layered.config == {
        "k1": "root-prod",
        "k2": "shared",
        "k3": "app",
        "k4": "shared",
        "k5": "app-prod",
        "only_root": 1,
    }
    assert layered.depends_on == ("root", "shared")


def test_bases_use_the_dependents_environment() -> None:
    lookup = Lookup(
        {"base": spec({"level": "base"}, {"dev": {"level": "dev"}, "prod": {"level": "prod"}})}
    )
    app = spec(extends=("base",))
    assert resolve_layers("app", app, "dev", lookup).config == {"level": "dev"}
    assert resolve_layers("app", app, "staging", lookup).config == {"level": "base"}


def test_extends_are_merged_in_listed_order_and_null_deletes() -> None:
    lookup = Lookup({"x": spec({"k": "x", "gone": 1}), "y": spec({"k": "y"})})
    assert resolve_layers("app", spec(extends=("x", "y")), "prod", lookup).config == {
        "k": "y",
        "gone": 1,
    }
    assert resolve_layers("app", spec(extends=("y", "x")), "prod", lookup).config["k"] == "x"
    assert resolve_layers("app", spec({"gone": None}, extends=("x",)), "prod", lookup).config == {
        "k": "x"
    }


def test_diamond_is_looked_up_once_and_listed_once() -> None:
    lookup = Lookup(
        {
            "left": spec({"l": 1}, extends=("bottom",)),
            "right": spec({"r": 1}, extends=("bottom",)),
            "bottom": spec({"b": 1}),
        }
    )
    layered = resolve_layers("app", spec(extends=("left", "right")), "prod", lookup)
    assert layered.config == {"b": 1, "l": 1, "r": 1}
    assert layered.depends_on == ("bottom", "left", "right")
    assert sorted(lookup.calls) == ["bottom", "left", "right"]


def test_resolution_does_not_mutate_the_specs() -> None:
    base = spec({"a": {"b": 1}}, {"prod": {"a": {"c": 2}}})
    lookup = Lookup({"base": base})
    layered = resolve_layers("app", spec({"a": {"d": 3}}, extends=("base",)), "prod", lookup)
    inner = layered.config["a"]
    assert isinstance(inner, dict)
    inner["b"] = "changed"
    assert base.base == {"a": {"b": 1}}
    assert base.environments == {"prod": {"a": {"c": 2}}}


@pytest.mark.parametrize(
    ("profiles", "message"),
    [
        ({"a": spec(extends=("app",))}, "extends cycle: app -> a -> app"),
        (
            {"a": spec(extends=("b",)), "b": spec(extends=("a",))},
            "extends cycle: app -> a -> b -> a",
        ),
        ({"a": spec(extends=("a",))}, "extends cycle: app -> a -> a"),
    ],
)
def test_cycles_name_the_chain(profiles: dict[str, ProfileSpec], message: str) -> None:
    with pytest.raises(ExtendsError) as caught:
        resolve_layers("app", spec(extends=("a",)), "prod", Lookup(profiles))
    assert str(caught.value) == message


def test_self_extension_is_a_cycle() -> None:
    with pytest.raises(ExtendsError, match=r"^extends cycle: app -> app$"):
        resolve_layers("app", spec(extends=("app",)), "prod", Lookup({}))


def test_missing_base_names_it_and_the_chain() -> None:
    lookup = Lookup({"a": spec(extends=("x",))})
    with pytest.raises(ExtendsError) as caught:
        resolve_layers("app", spec(extends=("a",)), "prod", lookup)
    assert str(caught.value) == "base profile 'x' not found (extends chain: app -> a -> x)"


def chain(length: int) -> Lookup:
    """p1 extends p2 ... extends p<length>; p<length> extends nothing."""
    profiles = {f"p{i}": spec({f"k{i}": i}, extends=(f"p{i + 1}",)) for i in range(1, length)}
    profiles[f"p{length}"] = spec({f"k{length}": length})
    return Lookup(profiles)


def test_depth_bound_is_exact() -> None:
    # app -> p1 -> ... -> p16 is 16 hops: allowed.
    layered = resolve_layers("app", spec(extends=("p1",)), "prod", chain(MAX_EXTENDS_DEPTH))
    assert len(layered.depends_on) == MAX_EXTENDS_DEPTH
    with pytest.raises(
        ExtendsError, match=rf"^extends chain longer than {MAX_EXTENDS_DEPTH}: app -> p1 -> "
    ):
        resolve_layers("app", spec(extends=("p1",)), "prod", chain(MAX_EXTENDS_DEPTH + 1))


def test_a_long_cycle_is_still_an_extends_error() -> None:
    profiles = {f"p{i}": spec(extends=(f"p{(i + 1) % 500}",)) for i in range(500)}
    with pytest.raises(ExtendsError):
        resolve_layers("app", spec(extends=("p0",)), "prod", Lookup(profiles))


def test_number_of_distinct_profiles_is_bounded() -> None:
    profiles = {f"m{i}": spec(extends=tuple(f"l{i}-{j}" for j in range(10))) for i in range(10)}
    profiles.update({f"l{i}-{j}": spec() for i in range(10) for j in range(10)})
    lookup = Lookup(profiles)
    with pytest.raises(ExtendsError, match=f"more than {MAX_EXTENDS_PROFILES} profiles"):
        resolve_layers("app", spec(extends=tuple(f"m{i}" for i in range(10))), "prod", lookup)
    assert len(lookup.calls) == MAX_EXTENDS_PROFILES
