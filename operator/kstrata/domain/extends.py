"""``spec.extends``: shared base profiles, resolved without touching the API.

A profile may extend other ConfigProfiles in its namespace.  For the selected
environment, each base contributes its *effective* configuration (its own
extends, then its ``spec.base``, then its overlay for the same environment),
merged in the listed order before the profile's own layers.  A base's own
``spec.environment`` and ``spec.schema`` do not apply here: the dependent
profile decides the environment and validates its own result.

The resolver is pure.  It reaches other profiles only through a ``lookup``
callable supplied by the caller (the app layer backs it with the API, the CLI
with the documents given on the command line), and it reports every profile
it read so the operator can re-render dependents when a base changes.

Hostile or mistaken graphs end in ``ExtendsError`` naming the chain, never
in a ``RecursionError``: cycles are detected on the current chain, the chain
length is bounded, and so is the number of distinct profiles reached.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from kstrata.domain.jsonvalue import JSONObject, JSONValue
from kstrata.domain.merge import merge_layers
from kstrata.errors import ExtendsError

MAX_EXTENDS_DEPTH: Final = 16
MAX_EXTENDS_PROFILES: Final = 64


class LayeredSpec(Protocol):
    """The part of a profile spec that layering needs."""

    @property
    def base(self) -> JSONObject: ...

    @property
    def environments(self) -> Mapping[str, JSONObject]: ...

    @property
    def extends(self) -> tuple[str, ...]: ...


SpecT = TypeVar("SpecT", bound=LayeredSpec)


@dataclass(frozen=True)
class Layered:
    """The merged configuration of one profile and what it was built from."""

    config: JSONObject
    #: Every base profile reached through ``spec.extends``, sorted, without duplicates.
    depends_on: tuple[str, ...]


def _chain(names: tuple[str, ...]) -> str:
    return " -> ".join(names)


class _Resolver:
    def __init__(self, environment: str, lookup: Callable[[str], LayeredSpec | None]) -> None:
        self.environment = environment
        self.lookup = lookup
        self.specs: dict[str, LayeredSpec] = {}
        # Effective configs of bases already resolved (diamonds resolve once).
        self.done: dict[str, JSONObject] = {}

    def fetch(self, name: str, chain: tuple[str, ...]) -> LayeredSpec:
        spec = self.specs.get(name)
        if spec is not None:
            return spec
        if len(self.specs) >= MAX_EXTENDS_PROFILES:
            raise ExtendsError(
                f"extends reaches more than {MAX_EXTENDS_PROFILES} profiles "
                f"(at {_chain((*chain, name))})"
            )
        spec = self.lookup(name)
        if spec is None:
            raise ExtendsError(
                f"base profile '{name}' not found (extends chain: {_chain((*chain, name))})"
            )
        self.specs[name] = spec
        return spec

    def effective(self, spec: LayeredSpec, chain: tuple[str, ...]) -> JSONObject:
        layers: list[tuple[str, JSONValue]] = []
        for base_name in spec.extends:
            if base_name in chain:
                raise ExtendsError(f"extends cycle: {_chain((*chain, base_name))}")
            if base_name not in self.done:
                if len(chain) > MAX_EXTENDS_DEPTH:
                    raise ExtendsError(
                        f"extends chain longer than {MAX_EXTENDS_DEPTH}: "
                        f"{_chain((*chain, base_name))}"
                    )
                base_spec = self.fetch(base_name, chain)
                self.done[base_name] = self.effective(base_spec, (*chain, base_name))
            layers.append((f"profile {base_name}", self.done[base_name]))
        owner = chain[-1]
        layers.append((f"profile {owner}: spec.base", spec.base))
        overlay = spec.environments.get(self.environment)
        if overlay is not None:
            layers.append((f"profile {owner}: spec.environments.{self.environment}", overlay))
        return merge_layers(layers)


def resolve_layers(
    name: str,
    spec: SpecT,
    environment: str,
    lookup: Callable[[str], SpecT | None],
) -> Layered:
    """Merge ``spec`` for ``environment`` on top of its ``extends`` chain.

    ``lookup(name)`` returns another profile's spec, or ``None`` when no such
    profile exists; it is called at most once per name.
    """
    resolver = _Resolver(environment, lookup)
    config = resolver.effective(spec, (name,))
    return Layered(config=config, depends_on=tuple(sorted(resolver.specs)))
