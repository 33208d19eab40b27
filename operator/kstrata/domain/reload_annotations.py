"""What a workload's reload annotations ask for: kstrata's own and, opt-in, Reloader's.

Why this module exists: kstrata's ``kstrata.dev/reload`` grew from "a list of
ConfigProfile/SealedSecret names or ``auto``" into a small grammar that also
names plain ConfigMaps and Secrets (ones kstrata does not produce), and teams
coming from stakater/Reloader want their workloads' annotations honoured as
they are.  Both are parsed here into one ``ReloadRequest``, so the reconciler
decides on one shape, and ``kstrata migrate reloader`` translates with the
same code the operator runs.  Pure: no I/O, no kopf, no Kubernetes client.

``kstrata.dev/reload`` is a comma-separated list of tokens:

* ``auto``: every ConfigMap and Secret the pod template references;
* ``auto-configmaps`` / ``auto-secrets``: the referenced ConfigMaps only / the
  referenced Secrets only;
* ``configmap/NAME`` / ``secret/NAME``: that ConfigMap / Secret, whoever
  produces it;
* anything else: the name of a ConfigProfile or SealedSecret.

A ConfigMap or Secret annotated ``kstrata.dev/reload-ignore: "true"`` is never
followed (the per-source opt-out).

Reloader's annotations (honoured only with ``settings.reloader_compatible``;
semantics from Reloader's published annotation reference, no code taken):

* workload ``reloader.stakater.com/auto: "true"``: all referenced sources;
  ``"false"`` switches auto off (named reloads below still apply);
* workload ``configmap.reloader.stakater.com/auto`` / ``secret.reloader.stakater.com/auto``:
  referenced ConfigMaps / Secrets only;
* workload ``reloader.stakater.com/search: "true"``: referenced sources that
  carry ``reloader.stakater.com/match: "true"`` (auto wins over search);
* workload ``configmap.reloader.stakater.com/reload`` / ``secret.reloader.stakater.com/reload``:
  comma-separated names;
* source ``reloader.stakater.com/ignore: "true"``: never followed.

When a workload carries ``kstrata.dev/reload`` it wins: Reloader's annotations
on it are not read (one owner of the decision, never a merge of two).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from kstrata.wellknown import (
    RELOAD_ANNOTATION,
    RELOAD_IGNORE_ANNOTATION,
    RELOADER_AUTO,
    RELOADER_CONFIG_MAP_AUTO,
    RELOADER_CONFIG_MAP_RELOAD,
    RELOADER_IGNORE,
    RELOADER_MATCH,
    RELOADER_ROLLOUT_STRATEGY,
    RELOADER_SEARCH,
    RELOADER_SECRET_AUTO,
    RELOADER_SECRET_RELOAD,
)

AUTO: Final = "auto"
AUTO_CONFIG_MAPS: Final = "auto-configmaps"
AUTO_SECRETS: Final = "auto-secrets"
CONFIG_MAP_PREFIX: Final = "configmap/"
SECRET_PREFIX: Final = "secret/"  # noqa: S105 (a record key prefix)

#: Reloader's workload annotations, in the order ``migrate`` reports them.
RELOADER_WORKLOAD_ANNOTATIONS: Final = (
    RELOADER_AUTO,
    RELOADER_CONFIG_MAP_AUTO,
    RELOADER_SECRET_AUTO,
    RELOADER_SEARCH,
    RELOADER_CONFIG_MAP_RELOAD,
    RELOADER_SECRET_RELOAD,
)

#: Record keys of plain sources: ``configmap/NAME`` and ``secret/NAME``.
CONFIG_MAP: Final = "ConfigMap"
SECRET: Final = "Secret"  # noqa: S105 (a kind name)


@dataclass(frozen=True)
class ReloadRequest:
    """What a workload follows, before looking at what exists in its namespace."""

    #: Follow every referenced ConfigMap / Secret.
    auto_config_maps: bool = False
    auto_secrets: bool = False
    #: With the autos: only sources annotated ``reloader.stakater.com/match: "true"``.
    match_only: bool = False
    #: ConfigProfile / SealedSecret names.
    names: frozenset[str] = field(default_factory=frozenset)
    #: ConfigMaps / Secrets named explicitly, produced by anyone.
    config_maps: frozenset[str] = field(default_factory=frozenset)
    secrets: frozenset[str] = field(default_factory=frozenset)

    @property
    def auto(self) -> bool:
        return self.auto_config_maps or self.auto_secrets

    def is_empty(self) -> bool:
        return not (self.auto or self.names or self.config_maps or self.secrets)


def _is_true(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() == "true"


def _split(value: object) -> list[str]:
    if not isinstance(value, str):
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_kstrata(value: str) -> ReloadRequest:
    """``kstrata.dev/reload`` -> a request (see the module docstring for the tokens)."""
    auto_cm = auto_secret = False
    names: set[str] = set()
    config_maps: set[str] = set()
    secrets: set[str] = set()
    for token in _split(value):
        if token == AUTO:
            auto_cm = auto_secret = True
        elif token == AUTO_CONFIG_MAPS:
            auto_cm = True
        elif token == AUTO_SECRETS:
            auto_secret = True
        elif token.startswith(CONFIG_MAP_PREFIX):
            if name := token[len(CONFIG_MAP_PREFIX) :].strip():
                config_maps.add(name)
        elif token.startswith(SECRET_PREFIX):
            if name := token[len(SECRET_PREFIX) :].strip():
                secrets.add(name)
        else:
            names.add(token)
    return ReloadRequest(
        auto_config_maps=auto_cm,
        auto_secrets=auto_secret,
        names=frozenset(names),
        config_maps=frozenset(config_maps),
        secrets=frozenset(secrets),
    )


def parse_reloader(annotations: Mapping[str, object]) -> ReloadRequest:
    """Reloader's workload annotations -> a request (empty: none of them asks for anything)."""
    auto = annotations.get(RELOADER_AUTO)
    all_auto = _is_true(auto)
    auto_off = isinstance(auto, str) and auto.strip().lower() == "false"
    auto_cm = not auto_off and (all_auto or _is_true(annotations.get(RELOADER_CONFIG_MAP_AUTO)))
    auto_secret = not auto_off and (all_auto or _is_true(annotations.get(RELOADER_SECRET_AUTO)))
    search = not auto_off and not (auto_cm or auto_secret)
    search = search and _is_true(annotations.get(RELOADER_SEARCH))
    return ReloadRequest(
        auto_config_maps=auto_cm or search,
        auto_secrets=auto_secret or search,
        match_only=search,
        config_maps=frozenset(_split(annotations.get(RELOADER_CONFIG_MAP_RELOAD))),
        secrets=frozenset(_split(annotations.get(RELOADER_SECRET_RELOAD))),
    )


def uses_reloader(annotations: Mapping[str, object]) -> bool:
    """Whether a workload carries any of Reloader's workload annotations."""
    return any(key in annotations for key in RELOADER_WORKLOAD_ANNOTATIONS)


def request_for(annotations: Mapping[str, object], *, reloader_compatible: bool) -> ReloadRequest:
    """The workload's request: ``kstrata.dev/reload`` if present, else (opt-in) Reloader's."""
    value = annotations.get(RELOAD_ANNOTATION)
    if isinstance(value, str) and value.strip():
        return parse_kstrata(value)
    if reloader_compatible:
        return parse_reloader(annotations)
    return ReloadRequest()


def opted_in(annotations: Mapping[str, object], *, reloader_compatible: bool) -> bool:
    """Whether the workload asks for reloads by its own annotations (no source lookup)."""
    if annotations.get(RELOAD_ANNOTATION) is not None:
        return True
    return reloader_compatible and not parse_reloader(annotations).is_empty()


def source_ignored(annotations: Mapping[str, object], *, reloader_compatible: bool) -> bool:
    """A ConfigMap's or Secret's own opt-out."""
    if _is_true(annotations.get(RELOAD_IGNORE_ANNOTATION)):
        return True
    return reloader_compatible and _is_true(annotations.get(RELOADER_IGNORE))


def source_matches(annotations: Mapping[str, object]) -> bool:
    """Reloader's ``match`` on a source (only asked for a ``search`` workload)."""
    return _is_true(annotations.get(RELOADER_MATCH))


def format_request(request: ReloadRequest) -> str:
    """A request as a ``kstrata.dev/reload`` value (``match_only`` has no token: see migrate)."""
    tokens: list[str] = []
    if request.auto_config_maps and request.auto_secrets:
        tokens.append(AUTO)
    elif request.auto_config_maps:
        tokens.append(AUTO_CONFIG_MAPS)
    elif request.auto_secrets:
        tokens.append(AUTO_SECRETS)
    tokens += sorted(f"{CONFIG_MAP_PREFIX}{n}" for n in request.config_maps)
    tokens += sorted(f"{SECRET_PREFIX}{n}" for n in request.secrets)
    tokens += sorted(request.names)
    return ",".join(tokens)


def record_key(kind: str, name: str) -> str:
    """The record key of a plain source: ``configmap/NAME`` or ``secret/NAME``."""
    return f"{CONFIG_MAP_PREFIX if kind == CONFIG_MAP else SECRET_PREFIX}{name}"


@dataclass(frozen=True)
class Migration:
    """One workload's Reloader annotations and the kstrata annotation that replaces them."""

    kind: str
    namespace: str
    name: str
    #: Reloader's annotations found on the workload.
    found: Mapping[str, str]
    #: The ``kstrata.dev/reload`` value; "" when nothing is asked for.
    reload: str
    #: Why the translation is not exact (empty when it is).
    notes: tuple[str, ...] = ()


def migrate(
    kind: str,
    namespace: str,
    name: str,
    annotations: Mapping[str, object],
    *,
    matching_sources: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset()),
) -> Migration:
    """Translate one workload.  ``matching_sources``: (ConfigMaps, Secrets) it references
    that carry Reloader's ``match`` annotation, read by the caller, for ``search``.

    kstrata has no ``match`` annotation: a ``search`` workload becomes explicit
    ``configmap/``/``secret/`` names, the ones matching at migration time.
    """
    found = {k: str(annotations[k]) for k in RELOADER_WORKLOAD_ANNOTATIONS if k in annotations}
    request = parse_reloader(annotations)
    notes: list[str] = []
    if request.match_only:
        config_maps, secrets = matching_sources
        request = ReloadRequest(
            config_maps=request.config_maps | config_maps,
            secrets=request.secrets | secrets,
        )
        notes.append(
            "reloader.stakater.com/search: the sources matching today are named; "
            "a source given reloader.stakater.com/match later must be added by name"
        )
    if str(annotations.get(RELOADER_ROLLOUT_STRATEGY, "")).strip() == "restart":
        notes.append(
            f"{RELOADER_ROLLOUT_STRATEGY}=restart is not honoured: kstrata rolls the pod "
            "template, so the Rollout's canary or blue-green steps run"
        )
    existing = annotations.get(RELOAD_ANNOTATION)
    if isinstance(existing, str) and existing.strip():
        notes.append(f"already has {RELOAD_ANNOTATION}; it wins and is left as it is")
        return Migration(kind, namespace, name, found, existing.strip(), tuple(notes))
    return Migration(kind, namespace, name, found, format_request(request), tuple(notes))
