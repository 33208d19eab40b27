"""ConfigProfile specs as typed values, and the pure use cases built on them.

``parse_profile_spec`` turns an untrusted ``spec`` mapping (a custom resource
from the API, possibly a kopf ``Mapping`` view, or a YAML file read by the
CLI) into a frozen :class:`ProfileSpec`, checking every field's shape and
bounds and naming the field path (``spec.output.format``) in errors.  It does
not import jsonschema: schema checks happen when a schema is used.

The use cases compose the other domain modules and are what the app layer,
the admission webhook and the CLI call:

* :func:`resolve_profile`: extends chain + base + overlay for one environment;
* :func:`render_profile`: that, checked against ``spec.schema``, rendered;
* :func:`validate_all_environments`: schema violations for every environment
  the profile (or one of its bases) declares, for admission and
  ``kstrata validate``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from kstrata.domain.environments import check_environment_name
from kstrata.domain.extends import MAX_EXTENDS_DEPTH, MAX_EXTENDS_PROFILES, resolve_layers
from kstrata.domain.jsonvalue import DEFAULT_LIMITS, JSONObject, normalize
from kstrata.domain.render import (
    FORMATS,
    OutputFormat,
    OutputSpec,
    RenderedConfig,
    is_configmap_key,
    render,
)
from kstrata.domain.schema import check, validate
from kstrata.errors import (
    ExtendsError,
    InvalidInputError,
    MergeError,
    SchemaViolationError,
    Violation,
)
from kstrata.wellknown import API_VERSION, CONFIG_PROFILE_KIND

DEFAULT_REVISION_HISTORY_LIMIT: Final = 10
#: The API keeps at least one old revision to roll back to, and at most 100.
MIN_REVISION_HISTORY_LIMIT: Final = 1
MAX_REVISION_HISTORY_LIMIT: Final = 100

_KNOWN_FIELDS = frozenset(
    {
        "base",
        "environments",
        "extends",
        "environment",
        "schema",
        "output",
        "revisionHistoryLimit",
        "reload",
    }
)
_OUTPUT_FIELDS = frozenset({"configMapName", "format", "key", "flattenKeys"})

# Kubernetes object names (RFC 1123 subdomains): profile and ConfigMap names.
_DNS_SUBDOMAIN = re.compile(
    r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*\Z"
)


def is_object_name(name: object) -> bool:
    """True for a valid Kubernetes object name (an RFC 1123 subdomain)."""
    return isinstance(name, str) and len(name) <= 253 and _DNS_SUBDOMAIN.match(name) is not None


@dataclass(frozen=True)
class ProfileSpec:
    """A parsed ConfigProfile ``spec``.  Treat the dicts inside as read-only."""

    base: JSONObject = field(default_factory=dict)
    environments: dict[str, JSONObject] = field(default_factory=dict)
    extends: tuple[str, ...] = ()
    environment: str | None = None
    schema: JSONObject | None = None
    output: OutputSpec = field(default_factory=OutputSpec)
    revision_history_limit: int = DEFAULT_REVISION_HISTORY_LIMIT
    #: ``spec.reload``, passed through as given (the app layer interprets it).
    reload: JSONObject | None = None
    #: Fields of ``spec`` this version does not know, for the CLI to warn about.
    unknown_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProfileManifest:
    """A whole ConfigProfile document (as the CLI reads them from files)."""

    name: str
    namespace: str | None
    spec: ProfileSpec


# --- parsing -------------------------------------------------------------


def _bad(where: str, problem: str) -> InvalidInputError:
    return InvalidInputError(f"{where}: {problem}")


def _object(value: object, where: str) -> JSONObject:
    if not isinstance(value, Mapping):
        raise _bad(where, "must be an object")
    normalized = normalize(value, where=where, limits=DEFAULT_LIMITS)
    assert isinstance(normalized, dict)
    return normalized


def _optional_object(value: object, where: str) -> JSONObject | None:
    return None if value is None else _object(value, where)


def _environments(value: object) -> dict[str, JSONObject]:
    where = "spec.environments"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad(where, "must be an object mapping environment names to overlays")
    result: dict[str, JSONObject] = {}
    for name, overlay in value.items():
        check_environment_name(name, where=f"{where} key")
        assert isinstance(name, str)
        if overlay is None:
            # ``prod:`` with nothing under it in YAML: declared, no changes.
            result[name] = {}
        elif not isinstance(overlay, Mapping):
            raise MergeError(f"{where}.{name}: an overlay must be an object")
        else:
            result[name] = _object(overlay, f"{where}.{name}")
    return result


def _extends(value: object) -> tuple[str, ...]:
    where = "spec.extends"
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise _bad(where, "must be a list of ConfigProfile names")
    if len(value) > MAX_EXTENDS_DEPTH:
        raise _bad(where, f"lists more than {MAX_EXTENDS_DEPTH} profiles")
    names: list[str] = []
    for index, name in enumerate(value):
        if not is_object_name(name):
            raise _bad(f"{where}[{index}]", "must be a ConfigProfile name")
        assert isinstance(name, str)
        if name in names:
            raise _bad(f"{where}[{index}]", f"profile '{name}' is listed twice")
        names.append(name)
    return tuple(names)


def _output(value: object) -> OutputSpec:
    where = "spec.output"
    if value is None:
        return OutputSpec()
    if not isinstance(value, Mapping):
        raise _bad(where, "must be an object")
    unknown = sorted(str(key) for key in value if key not in _OUTPUT_FIELDS)
    if unknown:
        raise _bad(f"{where}.{unknown[0]}", "unknown field")
    name = value.get("configMapName")
    if name is not None and not is_object_name(name):
        raise _bad(f"{where}.configMapName", "must be a valid ConfigMap name")
    fmt = value.get("format", "yaml")
    if fmt is None:
        fmt = "yaml"
    if fmt not in FORMATS:
        raise _bad(f"{where}.format", f"must be one of {', '.join(FORMATS)}")
    key = value.get("key")
    if key is not None and not (isinstance(key, str) and is_configmap_key(key)):
        raise _bad(
            f"{where}.key",
            "must be a valid ConfigMap key (letters, digits, '-', '_', '.'; at most 253)",
        )
    flatten = value.get("flattenKeys", False)
    if flatten is None:
        flatten = False
    if not isinstance(flatten, bool):
        raise _bad(f"{where}.flattenKeys", "must be true or false")
    output_format: OutputFormat = fmt
    return OutputSpec(config_map_name=name, format=output_format, key=key, flatten_keys=flatten)


def _revision_history_limit(value: object) -> int:
    where = "spec.revisionHistoryLimit"
    if value is None:
        return DEFAULT_REVISION_HISTORY_LIMIT
    # bool is an int subclass; ``true`` is not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(where, "must be an integer")
    if not MIN_REVISION_HISTORY_LIMIT <= value <= MAX_REVISION_HISTORY_LIMIT:
        raise _bad(
            where,
            f"must be between {MIN_REVISION_HISTORY_LIMIT} and {MAX_REVISION_HISTORY_LIMIT}",
        )
    return value


def parse_profile_spec(spec: object) -> ProfileSpec:
    """Check and convert a ConfigProfile ``spec`` into a :class:`ProfileSpec`.

    Raises ``InvalidInputError`` (or a subclass: ``MergeError`` for an overlay
    that is not an object, ``DocumentError``/``InputLimitError`` for values
    that are not JSON or exceed the bounds) naming the field path.
    """
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise _bad("spec", "must be an object")
    raw_environment = spec.get("environment")
    environment = (
        None
        if raw_environment is None
        else check_environment_name(raw_environment, where="spec.environment")
    )
    base = spec.get("base")
    return ProfileSpec(
        base={} if base is None else _object(base, "spec.base"),
        environments=_environments(spec.get("environments")),
        extends=_extends(spec.get("extends")),
        environment=environment,
        schema=_optional_object(spec.get("schema"), "spec.schema"),
        output=_output(spec.get("output")),
        revision_history_limit=_revision_history_limit(spec.get("revisionHistoryLimit")),
        reload=_optional_object(spec.get("reload"), "spec.reload"),
        unknown_fields=tuple(sorted(str(key) for key in spec if key not in _KNOWN_FIELDS)),
    )


def parse_profile_manifest(document: object, *, where: str = "document") -> ProfileManifest:
    """Check a whole ConfigProfile document (apiVersion, kind, metadata, spec)."""
    if not isinstance(document, Mapping):
        raise _bad(where, "must be an object")
    if document.get("apiVersion") != API_VERSION:
        raise _bad(f"{where}: apiVersion", f"must be {API_VERSION}")
    if document.get("kind") != CONFIG_PROFILE_KIND:
        raise _bad(f"{where}: kind", f"must be {CONFIG_PROFILE_KIND}")
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        raise _bad(f"{where}: metadata", "must be an object")
    name = metadata.get("name")
    if not is_object_name(name):
        raise _bad(f"{where}: metadata.name", "must be a valid object name")
    assert isinstance(name, str)
    namespace = metadata.get("namespace")
    if namespace is not None and not is_object_name(namespace):
        raise _bad(f"{where}: metadata.namespace", "must be a valid namespace name")
    try:
        spec = parse_profile_spec(document.get("spec"))
    except InvalidInputError as exc:
        # Keep the class (and so the reason); add which profile it was.
        raise type(exc)(f"ConfigProfile {name}: {exc.message}") from exc
    return ProfileManifest(name=name, namespace=namespace, spec=spec)


# --- use cases -----------------------------------------------------------

Lookup = Callable[[str], ProfileSpec | None]


@dataclass(frozen=True)
class ResolvedProfile:
    """A profile's merged configuration for one environment."""

    name: str
    environment: str
    config: JSONObject
    #: Base profiles read through ``spec.extends`` (sorted): re-render on their change.
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class RenderedProfile:
    """What the operator writes: the ConfigMap's name and data."""

    resolved: ResolvedProfile
    config_map_name: str
    rendered: RenderedConfig


def resolve_profile(
    spec: ProfileSpec, name: str, environment: str, lookup: Lookup
) -> ResolvedProfile:
    """Merge the extends chain, ``spec.base`` and the ``environment`` overlay.

    An environment no layer declares is not an error: the result is the
    layers' bases alone.
    """
    check_environment_name(environment, where="environment")
    layered = resolve_layers(name, spec, environment, lookup)
    return ResolvedProfile(
        name=name, environment=environment, config=layered.config, depends_on=layered.depends_on
    )


def render_profile(
    spec: ProfileSpec, name: str, environment: str, lookup: Lookup
) -> RenderedProfile:
    """Resolve, check against ``spec.schema`` (if any), and render.

    Raises ``SchemaViolationError`` (with the environment in each violation),
    ``InvalidSchemaError``, ``ExtendsError``, ``MergeError`` or ``RenderError``.
    """
    resolved = resolve_profile(spec, name, environment, lookup)
    if spec.schema is not None:
        check(spec.schema, resolved.config, environment=environment)
    return RenderedProfile(
        resolved=resolved,
        config_map_name=spec.output.config_map_name or name,
        rendered=render(resolved.config, spec.output),
    )


def declared_environments(spec: ProfileSpec, name: str, lookup: Lookup) -> list[str]:
    """Environments declared by the profile or any profile it extends, sorted."""
    seen: set[str] = set()
    names: set[str] = set(spec.environments)
    # Bad graphs (cycles, missing bases, depth) are reported by resolve_layers;
    # here the ``seen`` set keeps the walk finite, and it is a loop, not a
    # recursion, so a chain of thousands of profiles cannot exhaust the stack.
    pending = [spec]
    while pending:
        profile = pending.pop()
        for base_name in profile.extends:
            if base_name in seen or base_name == name:
                continue
            if len(seen) >= MAX_EXTENDS_PROFILES:
                raise ExtendsError(
                    f"extends reaches more than {MAX_EXTENDS_PROFILES} profiles (from {name})"
                )
            seen.add(base_name)
            base = lookup(base_name)
            if base is not None:
                names.update(base.environments)
                pending.append(base)
    return sorted(names)


def validate_all_environments(
    spec: ProfileSpec,
    name: str,
    lookup: Lookup,
    *,
    extra_environments: Iterable[str] = (),
) -> dict[str, list[Violation]]:
    """Schema violations of the merged config in every relevant environment.

    Relevant: every environment declared by the profile or its bases, its
    pinned ``spec.environment``, and ``extra_environments`` (pass the
    operator's default and the namespace's label so the environment actually
    used is always covered).  Environments without violations map to ``[]``.
    Every environment is resolved even without a schema, so broken overlays
    and extends chains are reported too.
    """
    environments = set(declared_environments(spec, name, lookup))
    environments.update(extra_environments)
    if spec.environment is not None:
        environments.add(spec.environment)
    result: dict[str, list[Violation]] = {}
    for environment in sorted(environments):
        resolved = resolve_profile(spec, name, environment, lookup)
        if spec.schema is None:
            result[environment] = []
            continue
        result[environment] = validate(spec.schema, resolved.config, environment=environment)
    return result


def check_all_environments(
    spec: ProfileSpec,
    name: str,
    lookup: Lookup,
    *,
    extra_environments: Iterable[str] = (),
) -> None:
    """Like :func:`validate_all_environments`, raising one ``SchemaViolationError``."""
    found = validate_all_environments(spec, name, lookup, extra_environments=extra_environments)
    violations = [v for environment in sorted(found) for v in found[environment]]
    if violations:
        raise SchemaViolationError(violations)


def lookup_from(profiles: Mapping[str, ProfileSpec]) -> Lookup:
    """A lookup over an in-memory set of profiles (the CLI's files, tests)."""
    return profiles.get


__all__ = [
    "Lookup",
    "ProfileManifest",
    "ProfileSpec",
    "RenderedProfile",
    "ResolvedProfile",
    "check_all_environments",
    "declared_environments",
    "lookup_from",
    "parse_profile_manifest",
    "parse_profile_spec",
    "render_profile",
    "resolve_profile",
    "validate_all_environments",
]
