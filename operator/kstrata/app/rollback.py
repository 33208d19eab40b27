"""``kstrata rollback``: put an old revision's spec back, then wait for the operator.

Why a module of its own: rollback is the one history command that writes,
and the one with a wait loop (the operator must render the old spec and
report it, or the command says why not).  ``history`` and ``diff`` only read
(``kstrata.app.history_commands``); what rollback shares with them (finding
the resource, the diff it previews) is ``kstrata.app.history_toolkit``.

Promises: a rollback writes nothing but the old spec, with PUT and the
resourceVersion read, so a concurrent writer produces a conflict instead of
a lost update; the operator then renders it and triggers reloads exactly as
for any change, and the new revision's cause is ``rollback to N``.  No
secret material leaves: SealedSecret previews name item keys only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from kstrata.app.command_toolkit import (
    explain_refused_write,
    spec_lookup,
    summary,
)
from kstrata.domain.merge import same_json
from kstrata.domain.profile import (
    ProfileSpec,
    parse_profile_spec,
    render_profile,
)
from kstrata.domain.revisions import (
    Snapshot,
)
from kstrata.domain.sealed_spec import effective_tokens, parse_sealed_spec
from kstrata.errors import (
    ClusterError,
    ConflictError,
    InvalidInputError,
    KstrataError,
    RevisionNotFoundError,
    TransientClusterError,
    UsageError,
)
from kstrata.kube.api import KubeClient
from kstrata.payloads import Condition, Opaque, OwnObject
from kstrata.wellknown import (
    API_VERSION,
    CHANGE_CAUSE_ANNOTATION,
    CONFIG_PROFILE_KIND,
    READY_CONDITION,
)

if TYPE_CHECKING:
    from kstrata.domain.profile import Lookup
from kstrata.app.history_toolkit import (
    RESOURCES,
    ConfigDiff,
    Diff,
    Kind,
    RevisionSource,
    SealedSide,
    SecretDiff,
    compare_sealed,
    current_revision,
    find_resource,
    live_data,
    live_label,
    live_sealed,
    operator_environment,
    previous_revision,
    revision_source,
)

#: How often ``rollback`` looks whether the operator has caught up.
POLL_INTERVAL: Final = 0.2


DEFAULT_TIMEOUT: Final = 60.0


@dataclass(frozen=True)
class RollbackResult:
    """What ``kstrata rollback`` did, or (not written) would do."""

    kind: Kind
    namespace: str
    name: str
    #: The revision whose spec is restored.
    target: int
    #: The revision current before the rollback.
    previous: int | None
    #: The restored resource: what ``-o yaml`` prints for GitOps users to commit.
    manifest: OwnObject
    #: Live state against the restored one.
    diff: Diff
    #: False when the live spec already is revision ``target``'s.
    changed: bool
    written: bool
    #: The revision the operator reported for the restored spec (when waited for).
    revision: int | None = None
    #: For stderr: things the user should know (a base profile changed since).
    warnings: tuple[str, ...] = ()
    #: Why ``target`` was chosen: "named with --to-revision", "the revision serving: ...".
    chosen: str = "named with --to-revision"


def rollback_cause(number: int) -> str:
    return f"rollback to {number}"


def _restored_manifest(
    kind: Kind, obj: OwnObject, spec: dict[str, Opaque], number: int
) -> OwnObject:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "annotations": {CHANGE_CAUSE_ANNOTATION: rollback_cause(number)},
        },
        "spec": spec,
    }


def _rendered_now(
    spec: ProfileSpec, name: str, environment: str, lookup: Lookup
) -> tuple[dict[str, str] | None, str | None]:
    """What the operator will render for ``spec`` now, or why it cannot (no values quoted)."""
    try:
        return render_profile(spec, name, environment, lookup).rendered.data, None
    except InvalidInputError as error:
        return None, str(error)


def _profile_rollback_diff(
    api: KubeClient, namespace: str, name: str, obj: OwnObject, target: Snapshot
) -> tuple[ConfigDiff, tuple[str, ...]]:
    spec = parse_profile_spec(target.spec)
    environment = operator_environment(api, namespace, spec.environment, obj)
    rendered, problem = _rendered_now(spec, name, environment, spec_lookup(api, namespace))
    warnings: list[str] = []
    label = f"revision {target.number}, restored"
    if rendered is None:
        warnings.append(
            f"revision {target.number} no longer renders ({problem}); the operator will keep "
            "serving the current ConfigMap and report the error"
        )
        rendered = target.rendered
        label = f"revision {target.number}"
    elif rendered != target.rendered:
        why = []
        if spec.extends:
            why.append(f"its base profiles ({', '.join(spec.extends)}) changed since")
        if environment != target.environment:
            why.append(f"it now renders for environment {environment}, not {target.environment}")
        reason = " and ".join(why) or "rendering changed since"
        warnings.append(
            f"revision {target.number} will render differently than it did: {reason}; "
            "the diff shows what it renders now"
        )
    old = live_data(api, namespace, name, obj)
    return ConfigDiff(name, live_label(obj), label, old, rendered), tuple(warnings)


def _sealed_rollback_diff(
    api: KubeClient, namespace: str, name: str, obj: OwnObject, target: Snapshot
) -> SecretDiff:
    live_spec = parse_sealed_spec(obj.get("spec") or {})
    live_env = operator_environment(api, namespace, live_spec.environment, obj)
    target_spec = parse_sealed_spec(target.spec)
    environment = operator_environment(api, namespace, target_spec.environment, obj)
    tokens = effective_tokens(target_spec, environment)
    snapshot_tokens = effective_tokens(target_spec, target.environment)
    # A fingerprint speaks for a token only if it is the very token fingerprinted.
    known = {
        key: target.fingerprints[key]
        for key, token in tokens.items()
        if key in target.fingerprints and snapshot_tokens.get(key) == token
    }
    return compare_sealed(
        name,
        live_sealed(obj, live_env),
        SealedSide(tokens, known, target.spec),
        live_label(obj),
        f"revision {target.number}, restored",
    )


def _default_target(
    kind: Kind, namespace: str, name: str, obj: OwnObject, *, current: int, source: RevisionSource
) -> tuple[int, str]:
    """The last good revision: the one serving if the spec is not, else the one before it.

    A spec the operator refused (Ready=False) or has not handled yet
    (observedGeneration behind) is not what is served: rolling back then
    means returning to the serving revision, not to an older one.
    """
    state = summary(obj, kind)
    if state.stale or state.ready != "True":
        why = (
            f"the spec's latest change (generation {state.generation}) is not handled yet"
            if state.stale
            else f"the spec is not applied ({state.reason or 'NotReady'})"
        )
        return current, f"the revision serving: {why}"
    previous = previous_revision(source.history(obj), current)
    if previous is None:
        raise RevisionNotFoundError(
            f"{kind} {namespace}/{name} keeps no revision before {current} to roll back to; "
            f"kstrata history {name} -n {namespace} lists the retained ones"
        )
    return previous, f"the last revision before the one serving ({current})"


def rollback(
    api: KubeClient,
    namespace: str,
    name: str,
    *,
    kind: str | None = None,
    to_revision: int | None = None,
    write: bool = True,
    server_dry_run: bool = False,
    wait: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    store: RevisionSource | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str], None] | None = None,
) -> RollbackResult:
    """Restore revision ``to_revision``'s spec (default: the last good revision).

    The default is the revision serving when the spec is not (refused, or not
    handled yet), else the one before it; ``chosen`` in the result says which.

    With ``write`` false nothing is written (``--dry-run``, ``-o yaml``).
    ``server_dry_run`` sends the write with ``dryRun=All``: the API server,
    its RBAC and the admission webhook judge it (a refusal raises with their
    message, as a real write would) and nothing is stored or waited for.
    Otherwise the spec is written with PUT and the resourceVersion read
    (``ConflictError`` if the resource changed meanwhile; nothing is retried,
    since the user decided on the state they saw) with the change cause
    ``rollback to N``; with ``wait`` this returns once the operator reports
    the result, and raises if it refused the restored spec; ``progress``
    hears about that wait (the CLI shows it on a terminal).
    """
    found_kind, obj = find_resource(api, namespace, name, kind)
    source = revision_source(api, store)
    current = current_revision(obj)
    if to_revision is not None and to_revision < 1:
        raise UsageError("--to-revision: revision numbers start at 1")
    chosen = "named with --to-revision"
    if to_revision is None:
        if current is None:
            raise RevisionNotFoundError(
                f"{found_kind} {namespace}/{name} has no revision yet; nothing to roll back to "
                f"(the operator has not rendered it: kstrata list -n {namespace} shows its status)"
            )
        to_revision, chosen = _default_target(
            found_kind, namespace, name, obj, current=current, source=source
        )
    target = source.get(obj, to_revision)
    warnings: tuple[str, ...] = ()
    diff: Diff
    if found_kind == CONFIG_PROFILE_KIND:
        diff, warnings = _profile_rollback_diff(api, namespace, name, obj, target)
    else:
        diff = _sealed_rollback_diff(api, namespace, name, obj, target)
    manifest = _restored_manifest(found_kind, obj, target.spec, target.number)
    changed = not same_json(obj.get("spec") or {}, target.spec)
    result = RollbackResult(
        found_kind,
        namespace,
        name,
        target.number,
        current,
        manifest,
        diff,
        changed=changed,
        written=False,
        warnings=warnings,
        chosen=chosen,
    )
    if not write or not changed:
        return result
    meta = obj["metadata"].copy()
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        CHANGE_CAUSE_ANNOTATION: rollback_cause(target.number),
    }
    body = obj.copy()
    body["metadata"] = meta
    body["spec"] = target.spec
    body.pop("status", None)
    resource = RESOURCES[found_kind]
    try:
        written = api.replace(resource, namespace, body, dry_run=server_dry_run)
    except TransientClusterError as error:
        raise explain_refused_write(api, error) from None
    except ConflictError:
        raise ConflictError(
            f"{found_kind} {namespace}/{name} changed while kstrata rollback was writing; "
            "nothing was written: look at it again (kstrata diff) and re-run"
        ) from None
    if server_dry_run:
        return result
    revision = None
    if wait:
        generation = int((written.get("metadata") or {}).get("generation") or 0)
        revision = _await_operator(
            api,
            found_kind,
            namespace,
            name,
            generation=generation,
            target=target.number,
            timeout=timeout,
            sleep=sleep,
            clock=clock,
            progress=progress,
        )
    return RollbackResult(
        found_kind,
        namespace,
        name,
        target.number,
        current,
        manifest,
        diff,
        changed=True,
        written=True,
        revision=revision,
        warnings=warnings,
        chosen=chosen,
    )


def _await_operator(
    api: KubeClient,
    kind: Kind,
    namespace: str,
    name: str,
    *,
    generation: int,
    target: int,
    timeout: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    progress: Callable[[str], None] | None = None,
) -> int | None:
    """The revision the operator reports once it has handled ``generation``.

    Raises ``InvalidInputError`` with the operator's own (value-free) reason
    if it refused the restored spec, ``ClusterError`` on timeout; the
    rollback stays written either way.
    """
    start = clock()
    deadline = start + timeout
    while True:
        if progress is not None:
            progress(
                f"waiting for the operator to apply {kind} {namespace}/{name} at revision "
                f"{target}: {clock() - start:.0f}s of {timeout:g}s (Ctrl-C stops waiting)"
            )
        obj = api.get(RESOURCES[kind], namespace, name)
        status = obj.get("status") or {}
        observed = status.get("observedGeneration")
        if isinstance(observed, int) and observed >= generation:
            break
        if clock() >= deadline:
            raise ClusterError(
                f"the rollback of {kind} {namespace}/{name} to revision {target} was written, "
                f"but the operator did not report on it within {timeout:g}s; "
                "see kstrata history and its status",
                reason="Timeout",
            )
        sleep(POLL_INTERVAL)
    ready = next(
        (c for c in status.get("conditions") or [] if c.get("type") == READY_CONDITION),
        Condition(),
    )
    if ready.get("status") != "True":
        raise KstrataError(
            f"the rollback of {kind} {namespace}/{name} to revision {target} was written, "
            f"but the operator did not apply it: {ready.get('reason') or 'NotReady'}: "
            f"{ready.get('message') or 'no message'}",
            reason="RollbackNotApplied",
        )
    return current_revision(obj)
