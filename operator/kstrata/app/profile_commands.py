"""The cluster-facing CLI use cases: list, get and set ConfigProfiles.

Why a module of its own: each public function here is exactly what one
``kstrata`` subcommand does, so the CLI stays a shell that parses flags,
calls one function and prints.  The functions return plain dataclasses;
formatting (tables, YAML) is the CLI's business.  ``import`` is its own use
case (``kstrata.app.profile_import``); what these commands share with it and
with ``history``/``diff``/``rollback`` is ``kstrata.app.command_toolkit``.

Boundary: the cluster is reached only through :class:`kstrata.kube.api.KubeClient`;
merging, rendering, document loading, reading a served file back
(:mod:`kstrata.domain.readback`), environment choice and schema checks come
from :mod:`kstrata.domain`, never re-implemented here.

``set`` validates the whole changed profile (structure, schema and rendering
for every environment it can be rendered for) before anything is written,
and records which keys it changed, never their values.

Messages name profiles, ConfigMap keys, files, environments and key paths,
never configuration values.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from kstrata.app.command_toolkit import (
    ProfileSummary,
    check_environment_flag,
    check_name,
    explain_refused_write,
    int_or_none,
    known_environments,
    namespace_labels,
    ready_condition_of,
    spec_lookup,
    summary,
)
from kstrata.app.suggest import check_environment_declared, closest, did_you_mean
from kstrata.domain.documents import load_yaml
from kstrata.domain.environments import (
    DEFAULT_ENVIRONMENT,
    is_environment_name,
    select_environment,
)
from kstrata.domain.jsonvalue import (
    JSONObject,
    JSONValue,
    deep_copy,
    json_path,
    normalize,
)
from kstrata.domain.merge import merge_diff, null_member, same_json
from kstrata.domain.profile import (
    ProfileSpec,
    check_all_environments,
    declared_environments,
    parse_profile_spec,
    render_profile,
    resolve_profile,
)
from kstrata.domain.readback import candidates
from kstrata.domain.render import (
    canonical_scalar,
    format_for,
)
from kstrata.errors import (
    ClusterError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    TransientClusterError,
    UsageError,
)
from kstrata.kube.api import (
    CONFIG_MAPS,
    CONFIG_PROFILES,
    SEALED_SECRETS,
    KubeClient,
    Resource,
)
from kstrata.payloads import ConfigProfile, OwnObject
from kstrata.wellknown import (
    API_VERSION,
    CHANGE_CAUSE_ANNOTATION,
    CONFIG_PROFILE_KIND,
    ENVIRONMENT_LABEL,
    SEALED_SECRET_KIND,
)


def parse_key_path(text: str) -> tuple[str, ...]:
    r"""``a.b.c`` -> ``("a", "b", "c")``; ``\.`` is a literal dot, ``\\`` a backslash."""
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in ".\\":
            current.append(text[index + 1])
            index += 2
            continue
        if char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    if not text or any(part == "" for part in parts):
        raise UsageError(f"key '{text}': empty part in the dotted key path")
    return tuple(parts)


# --- list ------------------------------------------------------------------


def list_profiles(
    api: KubeClient,
    namespace: str | None,
    *,
    sealed_secrets: bool = False,
    label_selector: str | None = None,
) -> list[ProfileSummary]:
    """ConfigProfiles (and SealedSecrets) in ``namespace`` (``None``: every namespace).

    ``label_selector``: kubectl's ``-l``, passed to the API server as it is
    (which checks it and says what is wrong with it).

    Sorted by kind, namespace, name.  A cluster without the CRDs is told
    apart from an empty one: ``NotFoundError`` names the next step.  A user
    who may not list SealedSecrets still gets the ConfigProfiles.
    """
    if namespace is not None:
        check_name(namespace, "the namespace")
    kinds: list[tuple[str, Resource[OwnObject]]] = [(CONFIG_PROFILE_KIND, CONFIG_PROFILES)]
    if sealed_secrets:
        kinds.append((SEALED_SECRET_KIND, SEALED_SECRETS))
    rows: list[ProfileSummary] = []
    for kind, resource in kinds:
        try:
            items = api.list(resource, namespace, label_selector=label_selector or None)
        except NotFoundError:
            raise NotFoundError(
                f"the {kind} resource type is not installed on this cluster (no CRD "
                f"{resource.plural}.kstrata.dev): install kstrata first, for example "
                "kubectl apply -k crds/",
                reason="CRDMissing",
            ) from None
        except ForbiddenError:
            if kind == CONFIG_PROFILE_KIND:
                raise
            continue  # may list ConfigProfiles but not SealedSecrets: show what is allowed
        rows += [summary(item, kind) for item in items]
    order = {CONFIG_PROFILE_KIND: 0, SEALED_SECRET_KIND: 1}
    return sorted(rows, key=lambda row: (order[row.kind], row.namespace, row.name))


# --- get -------------------------------------------------------------------


@dataclass(frozen=True)
class EffectiveConfig:
    """What ``kstrata get`` found: the configuration served (or merged), or part of it."""

    namespace: str
    name: str
    environment: str
    #: Which rule chose the environment: flag, status, spec, namespace-label or default.
    environment_source: str
    key: tuple[str, ...] | None
    value: JSONValue
    #: ``served``: read back from the ConfigMap the operator wrote;
    #: ``spec``: merged from the spec (``--spec``, another environment, nothing served).
    source: str = "spec"
    #: The revision and ConfigMap served, when ``source`` is ``served``.
    revision: int | None = None
    config_map: str | None = None
    #: Why what is printed may not be what the user expects (stderr lines).
    notes: tuple[str, ...] = ()

    @property
    def is_scalar(self) -> bool:
        return not isinstance(self.value, dict | list)

    def scalar_text(self) -> str:
        """A scalar as a shell wants it: no quotes, ``true``/``false``, empty for null."""
        assert not isinstance(self.value, dict | list)
        return canonical_scalar(self.value)


_INDEX = re.compile(r"[0-9]+\Z")


def _select(value: JSONValue, key: tuple[str, ...], shown: str, what: str) -> JSONValue:
    current = value
    for depth, part in enumerate(key):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and _INDEX.match(part) and int(part) < len(current):
            current = current[int(part)]
        else:
            if depth and not isinstance(current, dict | list):
                prefix = ".".join(key[:depth])
                raise InvalidInputError(
                    f"key {shown} not found in {what}: {prefix} holds a scalar, not an object"
                )
            hint = did_you_mean(part, current) if isinstance(current, dict) else ""
            raise InvalidInputError(f"key {shown} not found in {what}{hint}")
    return current


def get_profile(api: KubeClient, namespace: str, name: str) -> ConfigProfile:
    """The ConfigProfile, or a ``NotFoundError`` that names the likely next step.

    A SealedSecret of that name is said to be one; otherwise the hint is the
    namespace (``-n``, ``-A``), the usual reason for a bare "not found".
    """
    found = api.get_or_none(CONFIG_PROFILES, namespace, name)
    if found is not None:
        return found
    if api.get_or_none(SEALED_SECRETS, namespace, name) is not None:
        raise NotFoundError(
            f"{name} in namespace {namespace} is a SealedSecret, not a ConfigProfile: "
            f"kstrata history {name} -n {namespace} and kubectl get sealedsecret {name} "
            f"-n {namespace} show it",
            reason="WrongKind",
        )
    raise NotFoundError(
        f"ConfigProfile {name} not found in namespace {namespace}: kstrata list -A lists "
        "every namespace's, -n NAMESPACE picks another"
    )


def _served_config(
    api: KubeClient, namespace: str, config_map: str, spec: ProfileSpec
) -> JSONValue:
    """The configuration in the ConfigMap the operator wrote, read back from its file.

    ``None`` when the ConfigMap is gone or holds no file kstrata can read back.
    """
    found = api.get_or_none(CONFIG_MAPS, namespace, config_map)
    data: dict[str, str] = dict((found or {}).get("data") or {})
    files = [key for key in sorted(data) if format_for(key) is not None]
    key = spec.output.key if spec.output.key in data else (files[0] if len(files) == 1 else None)
    fmt = format_for(key) if key is not None else None
    if key is None or fmt is None:
        return None
    try:
        return candidates(data[key], fmt, f"ConfigMap {namespace}/{config_map} key {key}")[0]
    except InvalidInputError:
        return None


def _why_not_served(state: ProfileSummary, spec_problem: str | None) -> str:
    """Why the spec is not what is served, in the operator's own (value-free) words."""
    if state.stale:
        return (
            f"the operator has not handled the spec's latest change (generation "
            f"{state.generation}; it last reported on generation "
            f"{state.observed_generation or 'none'}): it is stopped or busy"
        )
    ready = state.ready
    if ready != "True":
        return f"the operator did not apply it: {state.reason or 'NotReady'}"
    if spec_problem is not None:
        return f"the spec does not render: {spec_problem}"
    return "the spec now merges differently (a base profile changed and is not rendered yet)"


def _environment_for_get(
    api: KubeClient,
    namespace: str,
    name: str,
    spec: ProfileSpec,
    *,
    environment: str | None,
    served: str | None,
    default_environment: str,
) -> tuple[str, str]:
    """The environment ``get`` shows, and which rule chose it."""
    if environment is not None:
        check_environment_flag(environment)
        declared = known_environments(
            api, namespace, name, spec, also=(served,), default_environment=default_environment
        )
        check_environment_declared(environment, declared, f"ConfigProfile {namespace}/{name}")
        return environment, "flag"
    if served is not None:
        return served, "status"
    labels = {} if spec.environment is not None else namespace_labels(api, namespace)
    choice = select_environment(spec.environment, labels, default_environment)
    return choice.name, choice.source


def _served_notes(
    what: str,
    state: ProfileSummary,
    served: JSONValue,
    spec_config: JSONValue,
    spec_problem: str | None,
) -> list[str]:
    """Nothing when the spec is what is served; else what is served and why not the spec."""
    if not (
        state.stale
        or state.ready != "True"
        or spec_problem is not None
        or not same_json(served, spec_config)
    ):
        return []
    return [
        f"{what} serves revision {state.revision} (ConfigMap {state.config_map}), printed "
        f"here; its spec is not what is served: {_why_not_served(state, spec_problem)}. "
        "kstrata get --spec prints the spec's configuration, kstrata rollback restores the "
        "serving revision's spec"
    ]


def _spec_notes(
    what: str, state: ProfileSummary, chosen: str, served: str | None, *, serving: bool
) -> list[str]:
    """Why the spec merged is printed, rather than what is served."""
    if served is not None and chosen != served:
        return [
            f"{what} is served for environment {served}, not {chosen}: "
            f"this is its spec merged for {chosen}"
        ]
    if state.revision is None or state.config_map is None:
        return [
            f"nothing is served for {what} yet (the operator has not rendered it): "
            "this is its spec's configuration"
        ]
    if serving:
        return [
            f"ConfigMap {state.config_map} of {what} cannot be read back: "
            "this is its spec's configuration"
        ]
    return []


def get_effective_config(
    api: KubeClient,
    namespace: str,
    name: str,
    *,
    environment: str | None = None,
    key: str | None = None,
    from_spec: bool = False,
    default_environment: str = DEFAULT_ENVIRONMENT,
) -> EffectiveConfig:
    """The configuration the profile serves, or its spec merged, ``extends`` resolved.

    The environment: ``environment`` if given (it must be one the profile may
    render for: ``UsageError`` with a "did you mean" otherwise), else the one
    the operator last rendered (``status.environment``), else
    ``spec.environment``, else the namespace's ``kstrata.dev/environment``
    label, else ``default_environment``.

    What is printed is the truth about that environment: the ConfigMap the
    operator serves (``status.configMapName`` at ``status.revision``), read
    back, unless ``from_spec`` or nothing is served for it; then the spec
    merged.  ``notes`` says when and why the spec is not what is served
    (refused, operator behind), or that nothing is served yet.  ``key`` (a
    dotted path) narrows the result to one subtree or scalar.
    """
    check_name(namespace, "the namespace")
    check_name(name, "the ConfigProfile name")
    key_path = parse_key_path(key) if key is not None else None
    profile = get_profile(api, namespace, name)
    spec = parse_profile_spec(profile.get("spec"))
    state = summary(profile)
    status_environment = (profile.get("status") or {}).get("environment")
    served_environment = (
        str(status_environment) if is_environment_name(status_environment) else None
    )
    what = f"ConfigProfile {namespace}/{name}"
    chosen, source = _environment_for_get(
        api,
        namespace,
        name,
        spec,
        environment=environment,
        served=served_environment,
        default_environment=default_environment,
    )

    served: JSONValue = None
    serving = (
        not from_spec
        and chosen == served_environment
        and state.revision is not None
        and state.config_map is not None
    )
    if serving:
        assert state.config_map is not None
        served = _served_config(api, namespace, state.config_map, spec)
    spec_config: JSONValue = None
    spec_problem: str | None = None
    try:
        spec_config = resolve_profile(spec, name, chosen, spec_lookup(api, namespace)).config
    except InvalidInputError as error:
        if served is None:
            raise
        spec_problem = str(error)

    value: JSONValue = spec_config
    origin = "spec"
    if served is not None:
        value, origin = served, "served"
        notes = _served_notes(what, state, served, spec_config, spec_problem)
    elif from_spec:
        notes = []
    else:
        notes = _spec_notes(what, state, chosen, served_environment, serving=serving)
    if key_path is not None:
        where = f"{what} (environment {chosen})"
        value = _select(value, key_path, key or "", where)
    return EffectiveConfig(
        namespace,
        name,
        chosen,
        source,
        key_path,
        deep_copy(value),
        source=origin,
        revision=state.revision if origin == "served" else None,
        config_map=state.config_map if origin == "served" else None,
        notes=tuple(notes),
    )


# --- set -------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """One ``KEY=VALUE`` argument of ``kstrata set``."""

    key: str
    path: tuple[str, ...]
    value: JSONValue


def parse_assignment(text: str) -> Assignment:
    """``port=8080`` -> ``port`` = 8080: the value is YAML (``true``, ``'x'``, ``[1, 2]``)."""
    key, separator, raw = text.partition("=")
    if not separator:
        # Not echoed: without '=' it may be a value typed where a key belongs.
        raise UsageError("expected KEY=VALUE (an argument has no '=')")
    path = parse_key_path(key)
    # The source names the key only: a parse error must not echo the value.
    value = load_yaml(raw, source=f"the value of {key}")
    return Assignment(key, path, value)


@dataclass(frozen=True)
class SetResult:
    """What ``kstrata set`` did."""

    namespace: str
    name: str
    #: The profile as it now reads (or would, with ``dry_run``): apiVersion, kind,
    #: name, namespace, the change-cause annotation and the whole spec.
    manifest: ConfigProfile
    change_cause: str
    #: False when every value was already set: nothing needed writing.
    changed: bool
    written: bool
    #: The revision the operator reported for the change (when waited for).
    revision: int | None = None


#: How often a writing command looks whether the operator has handled its change.
POLL_INTERVAL: Final = 0.2


def await_operator(
    api: KubeClient,
    namespace: str,
    name: str,
    *,
    generation: int,
    what: str,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str], None] | None = None,
) -> int | None:
    """The revision the operator reports once it has handled ``generation`` of the profile.

    ``ClusterError`` (reason ``Timeout``) when it does not within ``timeout``
    (stopped or busy); ``InvalidInputError`` with the operator's own
    (value-free) reason when it refused the change.  The change stays
    written either way, and the message says so.  ``progress`` hears about
    the wait (the CLI shows it on a terminal).
    """
    start = clock()
    deadline = start + timeout
    while True:
        if progress is not None:
            progress(
                f"waiting for the operator to apply {what}: "
                f"{clock() - start:.0f}s of {timeout:g}s (Ctrl-C stops waiting)"
            )
        obj = api.get(CONFIG_PROFILES, namespace, name)
        state = summary(obj)
        if state.observed_generation is not None and state.observed_generation >= generation:
            break
        if clock() >= deadline:
            raise ClusterError(
                f"{what} was written, but the operator did not report on it within "
                f"{timeout:g}s (it is stopped or busy): it is not applied yet; kstrata list "
                "shows it as Stale until it is (--no-wait skips this wait)",
                reason="Timeout",
            )
        sleep(POLL_INTERVAL)
    if state.ready != "True":
        message = ready_condition_of(obj).get("message") or "no message"
        raise InvalidInputError(
            f"{what} was written, but the operator did not apply it: "
            f"{state.reason or 'NotReady'}: {message}; revision {state.revision} keeps serving",
            reason="NotApplied",
        )
    return state.revision


def change_cause(
    assignments: Sequence[Assignment], environment: str | None, generation: int | None = None
) -> str:
    """``kstrata set port,log.level (generation 4)``: the command and key names, never values.

    The generation the write creates makes each write's cause its own: the
    operator records a cause only when it differs from the previous
    revision's (the annotation outlives its change), so two ``set`` runs of
    the same keys would otherwise leave the second revision without one.
    """
    flag = f"--env {environment} " if environment else ""
    suffix = f" (generation {generation})" if generation else ""
    return f"kstrata set {flag}{','.join(a.key for a in assignments)}{suffix}"


def _layer(spec: JSONObject, environment: str | None) -> tuple[str, JSONObject]:
    """The layer ``set`` writes into (created if absent), and its name for messages."""
    if environment is None:
        where, parent, field = "spec.base", spec, "base"
    else:
        where, field = f"spec.environments.{environment}", environment
        if spec.get("environments") is None:
            spec["environments"] = {}
        overlays = spec["environments"]
        if not isinstance(overlays, dict):
            raise InvalidInputError("spec.environments: must be an object")
        parent = overlays
    if parent.get(field) is None:
        parent[field] = {}
    layer = parent[field]
    if not isinstance(layer, dict):
        raise InvalidInputError(f"{where}: must be an object")
    return where, layer


def _edited_spec(
    spec: object, assignments: Sequence[Assignment], environment: str | None
) -> JSONObject:
    """A copy of ``spec`` with the assignments written into base or the overlay."""
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise InvalidInputError("spec: must be an object")
    edited = normalize(spec, where="spec")
    assert isinstance(edited, dict)
    where, layer = _layer(edited, environment)
    for assignment in assignments:
        node = layer
        for depth, part in enumerate(assignment.path[:-1], start=1):
            child = node.get(part)
            if child is None:
                # Absent, or null ("delete" in an overlay): either way, now an object.
                child = node[part] = {}
            if not isinstance(child, dict):
                prefix = json_path(assignment.path[:depth])[1:]
                raise InvalidInputError(
                    f"cannot set {assignment.key}: {where}{prefix} is not an object"
                )
            node = child
        node[assignment.path[-1]] = deep_copy(assignment.value)
    return edited


def _check_profile(
    api: KubeClient,
    namespace: str,
    name: str,
    spec_value: JSONObject,
    *,
    extra_environments: Sequence[str],
) -> None:
    """Structure, schema and rendering of every environment the profile may render for.

    The same set of environments admission checks (declared ones, the pinned
    one, the namespace label, the default), and each is rendered as well, so
    a change that would only fail at render time (a flattened key collision,
    the ConfigMap size limit) is refused here too.
    """
    spec = parse_profile_spec(spec_value)
    lookup = spec_lookup(api, namespace)
    extra = set(extra_environments)
    label = namespace_labels(api, namespace).get(ENVIRONMENT_LABEL)
    if label:
        extra.add(label)
    check_all_environments(spec, name, lookup, extra_environments=sorted(extra))
    environments = set(declared_environments(spec, name, lookup)) | extra
    if spec.environment is not None:
        environments.add(spec.environment)
    for environment in sorted(environments):
        render_profile(spec, name, environment, lookup)


def _has_path(config: JSONValue, path: tuple[str, ...]) -> bool:
    node = config
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _closest_path(configs: Sequence[JSONValue], path: tuple[str, ...]) -> str:
    """The known path nearest to ``path``: its existing prefix, the first part corrected."""
    for config in configs:
        node, known = config, list[str]()
        for part in path:
            if not isinstance(node, dict):
                break
            if part in node:
                node, known = node[part], [*known, part]
                continue
            match = closest(part, node)
            if match is not None:
                guess = [*known, match, *path[len(known) + 1 :]]
                return f" (did you mean {'.'.join(guess)}?)"
            break
    return ""


def _check_known(
    api: KubeClient,
    namespace: str,
    name: str,
    profile: ConfigProfile,
    *,
    assignments: Sequence[Assignment],
    environment: str | None,
    default_environment: str,
) -> None:
    """Refuse keys and environments the profile does not have (``--create`` allows them)."""
    spec = parse_profile_spec(profile.get("spec"))
    served = (profile.get("status") or {}).get("environment")
    known = known_environments(
        api,
        namespace,
        name,
        spec,
        also=(served if is_environment_name(served) else None,),
        default_environment=default_environment,
    )
    what = f"ConfigProfile {namespace}/{name}"
    if environment is not None and environment not in known:
        try:
            check_environment_declared(environment, known, what)
        except UsageError as error:
            raise UsageError(f"{error}; pass --create to add a new overlay") from None
    lookup = spec_lookup(api, namespace)
    configs: list[JSONValue] = []
    for candidate in [environment] if environment is not None else known:
        assert candidate is not None
        try:
            configs.append(resolve_profile(spec, name, candidate, lookup).config)
        except InvalidInputError:
            continue
    for assignment in assignments:
        if any(_has_path(config, assignment.path) for config in configs):
            continue
        where = f"environment {environment}" if environment else "any environment"
        raise UsageError(
            f"key {assignment.key} is not in {what} ({where})"
            f"{_closest_path(configs, assignment.path)}; pass --create to add a new key"
        )


def _manifest_view(profile: ConfigProfile, spec: JSONObject, cause: str) -> ConfigProfile:
    meta = profile.get("metadata") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": CONFIG_PROFILE_KIND,
        "metadata": {
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "annotations": {CHANGE_CAUSE_ANNOTATION: cause},
        },
        "spec": spec,
    }


def set_values(
    api: KubeClient,
    namespace: str,
    name: str,
    assignments: Sequence[str],
    *,
    environment: str | None = None,
    dry_run: bool = False,
    server_dry_run: bool = False,
    create: bool = False,
    wait: bool = False,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    default_environment: str = DEFAULT_ENVIRONMENT,
    progress: Callable[[str], None] | None = None,
) -> SetResult:
    """Write ``KEY=VALUE`` pairs into ``spec.base`` (or ``spec.environments.<environment>``).

    Validates the whole changed profile first; invalid means nothing is
    written.  Writes with PUT and the resourceVersion read, so a concurrent
    change is never overwritten: on a conflict the profile is read again, the
    assignments re-applied and re-validated, and written once more; a second
    conflict is reported (``ConflictError``).

    A key path no environment's configuration has, or an environment the
    profile does not declare, is refused with the closest known name
    (``UsageError``: ``databse.pool``, did you mean ``database.pool``?)
    unless ``create`` says the new key or overlay is meant.

    ``dry_run`` stops after kstrata's own checks; ``server_dry_run`` also
    sends the write as a dry run, so the API server and the admission webhook
    judge it (kubectl's ``--dry-run=server``), and nothing is stored.

    With ``wait`` it returns once the operator has handled the change (see
    :func:`await_operator`): the write is the user's, applying it is the
    operator's, and a ``configured`` that nothing applies is not the truth.
    """
    check_name(namespace, "the namespace")
    check_name(name, "the ConfigProfile name")
    if environment is not None:
        check_environment_flag(environment)
    if not assignments:
        raise UsageError("nothing to set: give at least one KEY=VALUE")
    parsed = [parse_assignment(text) for text in assignments]
    seen: set[tuple[str, ...]] = set()
    for assignment in parsed:
        if assignment.path in seen:
            raise UsageError(f"key {assignment.key} is given more than once")
        seen.add(assignment.path)
    cause = change_cause(parsed, environment)
    extra = [default_environment] + ([environment] if environment else [])

    for attempt in (1, 2):
        profile = get_profile(api, namespace, name)
        original = profile.get("spec")
        if not create:
            _check_known(
                api,
                namespace,
                name,
                profile,
                assignments=parsed,
                environment=environment,
                default_environment=default_environment,
            )
        spec = _edited_spec(original, parsed, environment)
        changed = not same_json(normalize(original or {}, where="spec"), spec)
        # A spec change makes generation + 1 (the status subresource keeps
        # metadata-only writes from counting).
        generation = int_or_none((profile.get("metadata") or {}).get("generation"))
        cause = change_cause(parsed, environment, generation + 1 if generation else None)
        _check_profile(api, namespace, name, spec, extra_environments=extra)
        view = _manifest_view(profile, spec, cause)
        if dry_run or not changed:
            return SetResult(namespace, name, view, cause, changed=changed, written=False)
        meta = profile["metadata"].copy()
        meta["annotations"] = {**(meta.get("annotations") or {}), CHANGE_CAUSE_ANNOTATION: cause}
        body: ConfigProfile = {**profile, "metadata": meta, "spec": spec}
        try:
            written = api.replace(CONFIG_PROFILES, namespace, body, dry_run=server_dry_run)
        except TransientClusterError as error:
            raise explain_refused_write(api, error) from None
        except ConflictError:
            if attempt == 2:
                raise ConflictError(
                    f"ConfigProfile {namespace}/{name} changed while kstrata set was writing, "
                    "twice; nothing was written, run the command again"
                ) from None
            continue
        if server_dry_run:
            return SetResult(namespace, name, view, cause, changed=True, written=False)
        revision = None
        if wait:
            revision = await_operator(
                api,
                namespace,
                name,
                generation=int_or_none((written.get("metadata") or {}).get("generation")) or 0,
                what=f"the change to ConfigProfile {namespace}/{name}",
                timeout=timeout,
                sleep=sleep,
                clock=clock,
                progress=progress,
            )
        return SetResult(
            namespace, name, view, cause, changed=True, written=True, revision=revision
        )
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = [
    "Assignment",
    "EffectiveConfig",
    "SetResult",
    "await_operator",
    "change_cause",
    "get_effective_config",
    "get_profile",
    "list_profiles",
    "merge_diff",
    "null_member",
    "parse_assignment",
    "parse_key_path",
    "same_json",
    "set_values",
]
