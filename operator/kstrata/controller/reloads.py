"""kopf wiring for rolling restarts: *when* to run a reload pass over a namespace.

The decision itself (``kstrata.app.reloads``) is level-triggered, so this
module only has to make sure a pass runs soon after anything that may matter.
It is a thin adapter: it feeds kopf's events to ``ReloadTriggers`` and runs
what ``NamespaceCoalescer`` schedules, both in ``kstrata.app.reload_scheduling``
(no kopf there), which implements the rules below:

* a ConfigProfile's or SealedSecret's ``status.revision`` or
  ``spec.reload.targets`` changed.  Followed with ``kopf.on.event`` and an
  in-memory map of what was last seen, not ``kopf.on.field``: kopf's change
  detection diffs the object's *essence*, which leaves ``status`` out, so a
  field handler on ``status.revision`` would never fire for the status patch
  the reconcilers write.  The reconcilers also report their own status write
  directly (``ReloadTriggers.source_reconciled``), so a pass need not wait for
  kopf to deliver it back; the watch remains the level-triggered source of
  truth.  ``status.workloads``, which the passes write, is not part of what is
  compared: a pass never schedules another;
* a pass over a namespace where no workload opted in, none is targeted and
  no source lists workloads in its status is skipped before any API call;
* a workload's ``kstrata.dev/reload``, ``-strategy`` or ``-paused`` annotation
  changed, it became (or stopped being) a target of a source, or an opted-in
  workload went away (first sight included, so a restarted operator checks
  once).  Workloads are followed with ``kopf.on.event`` only: create/update/
  resume handlers would make kopf write its bookkeeping annotations (and
  possibly finalizers) onto users' Deployments.

* the data of a ConfigMap or Secret that kstrata does not produce changed,
  and a workload follows it (``kstrata.dev/reload: auto``, ``configmap/NAME``,
  ``secret/NAME``, or Reloader's annotations with
  ``settings.reloader_compatible``).  Every ConfigMap event arrives (kopf
  filters client-side, and there is no server-side way to select "the ones
  some workload references"); Secrets come from a metadata-only watch
  (``controller.followed_secrets``), which reads a followed one by name when
  its resourceVersion moves and never reads the others.  The handler drops
  one nobody follows after a dictionary lookup, and for followed ones keeps only
  a digest of the data under a per-process random key, to tell a data change
  from a metadata-only write.  Memory is therefore bounded by the followed
  sources, not by the cluster's ConfigMaps and Secrets (kopf's own
  per-object memory aside: docs/architecture.md).  A followed source's
  description (owner, keyed fingerprint under the operator's fingerprint
  key, opt-outs; never its data) is kept for the passes, which read by name
  only what the watch has not described, so a restart compares like with
  like and rolls nothing.  Where no kstrata source is in play, a pass takes
  the workloads from their watch too (``ReloadTriggers.watched_workloads``)
  and writes with their resourceVersion: one PATCH after the event.  So does
  a pass for such a change in a namespace with kstrata sources, for the
  workloads that follow plain sources only, when nothing else changed there
  since a pass covered the whole namespace (``plain_followers``).

When a workload rolls (the change-set question).  One ``kubectl apply -f
dir/`` that changes a ConfigProfile and a SealedSecret must roll a workload
that follows both once, yet a lone change should roll at once.  kubectl
writes the two objects one after the other, and the operator sees the two
spec writes 20-55 ms apart on a quiet 2-core machine but up to ~0.5 s apart
with both cores busy (docs/architecture.md, Reloads).  So:

* a pass runs as soon as it is triggered (an *eager* pass).  A workload that
  follows one source has nothing to merge: it rolls there, without waiting
  for anything;
* a workload that follows several sources is held by a pass that runs before
  the namespace has *settled*, and rolled by a *settled* pass that follows.
  Settled means: no source of the namespace is *in flight* (its
  ``metadata.generation``, bumped by every spec write, is ahead of its
  ``status.observedGeneration``, written by its reconciler on success and
  failure; a followed Secret whose change the metadata watch announced is in
  flight until its GET is back), and no spec write or data change was seen
  there for the quiet period (``settings.reload_quiet_seconds``, 1 s by
  default: twice the largest gap measured under load; a Secret's change
  counts from its announcement, not from its read).  That quiet period is
  the latency such a rollout pays for the guarantee, small beside the
  rollout itself (seconds);
* a settled pass never waits longer than the quiet period plus
  ``settings.reload_coalesce_seconds`` (at most 2 s) after its first
  trigger, so a source that never settles cannot hold reloads.

Changes applied by separate commands roll separately (for a workload that
follows several sources: when further apart than the quiet period): each one
is an effective change by itself.  Passes of one namespace never overlap (a
lock); a trigger during a pass schedules the next one, and a pass's own
writes void what the next one read ahead.  A failed pass is retried after
``settings.retry_backoff``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import kopf

from kstrata.app.reload_scheduling import (
    MAX_COALESCE_SECONDS,
    MAX_QUIET_SECONDS,
    MAX_RETRY_SECONDS,
    NamespaceCoalescer,
    ReloadTriggers,
    SourceReconciled,
)
from kstrata.app.reloads import (
    FingerprintKeySource,
    NamespaceState,
    ReloadReconciler,
)
from kstrata.controller.followed_secrets import FollowedSecrets, Interest
from kstrata.domain.reload_decision import SECRET_KIND
from kstrata.kube.api import (
    CONFIG_MAPS,
    CONFIG_PROFILES,
    RELOADABLE,
    SEALED_SECRETS,
    KubeApi,
    Resource,
    as_payload,
)
from kstrata.payloads import ConfigMap, OwnObject, Secret, Workload
from kstrata.settings import Settings
from kstrata.wellknown import (
    CONFIG_PROFILE_PLURAL,
    GROUP,
    SEALED_SECRET_PLURAL,
    VERSION,
)

logger = logging.getLogger(__name__)

#: A namespace read for a pass, and whether it covers every workload there.
ReadState = tuple[NamespaceState, bool]


def register(
    registry: kopf.OperatorRegistry,
    api: KubeApi,
    settings: Settings,
    followed_secrets: FollowedSecrets | None = None,
) -> SourceReconciled:
    """Register the reload handlers; returns what reconcilers call after writing a status.

    ``followed_secrets`` follows the Secrets workloads reload on (kopf's Secret watch
    sees only the ones kstrata manages); without it, no plain Secret is followed.
    """
    compatible = settings.reloader_compatible
    fingerprint_key = FingerprintKeySource(api, settings.operator_namespace)
    reconciler = ReloadReconciler(
        api,
        fingerprint_key=fingerprint_key,
        reloader_compatible=compatible,
        # Lambdas: ``watched`` is made below, around the coalescer.
        watched=lambda kind, namespace, name: watched.described(kind, namespace, name),  # noqa: PLW0108
        workload_kinds=lambda namespace: watched.workload_kinds(namespace),  # noqa: PLW0108
        reported_revision=lambda *source: watched.reported_revision(*source),  # noqa: PLW0108
    )

    passes = _Passes(reconciler)
    window = min(max(settings.reload_coalesce_seconds, 0.0), MAX_COALESCE_SECONDS)
    in_flight: dict[str, set[tuple[str, str]]] = {}
    coalescer = NamespaceCoalescer(
        passes.run,
        read_ahead=passes.read,
        window=window,
        quiet=min(max(settings.reload_quiet_seconds, 0.0), MAX_QUIET_SECONDS),
        retry_delay=min(max(settings.retry_backoff, 0.1), MAX_RETRY_SECONDS),
        busy=lambda namespace: bool(in_flight.get(namespace)),
        # A lambda: ``watched`` is made below, around this coalescer.
        needed=lambda namespace: watched.needs_pass(namespace),  # noqa: PLW0108
    )
    watched = ReloadTriggers(
        coalescer, in_flight, reloader_compatible=compatible, fingerprint_key=fingerprint_key
    )
    passes.watched = watched

    @kopf.on.startup(id="reload_loop", registry=registry)
    async def remember_loop(**_: object) -> None:
        watched.loop = asyncio.get_running_loop()

    def source_event(resource: Resource[OwnObject]) -> Callable[..., Awaitable[None]]:
        kind = resource.kind

        async def handler(
            *, type: str | None, namespace: str | None, name: str, body: kopf.Body, **_: object
        ) -> None:
            if namespace is None:
                return
            if type == "DELETED":
                watched.source_deleted(kind, namespace, name)
            else:
                watched.source_seen(kind, namespace, name, as_payload(resource, dict(body)))

        return handler

    kopf.on.event(GROUP, VERSION, CONFIG_PROFILE_PLURAL, id="reload_profiles", registry=registry)(
        source_event(CONFIG_PROFILES)
    )
    kopf.on.event(
        GROUP, VERSION, SEALED_SECRET_PLURAL, id="reload_sealed_secrets", registry=registry
    )(source_event(SEALED_SECRETS))

    def workload_event(resource: Resource[Workload]) -> Callable[..., Awaitable[None]]:
        kind = resource.kind

        async def handler(
            *,
            type: str | None,
            namespace: str | None,
            uid: str | None,
            body: kopf.Body,
            **_: object,
        ) -> None:
            if namespace is None or uid is None:
                return
            if type == "DELETED":
                watched.workload_deleted(namespace, uid)
            else:
                workload = as_payload(resource, dict(body, kind=kind))
                watched.workload_seen(namespace, uid, workload)

        return handler

    # Rollouts (argoproj.io) may have no CRD: kopf then logs one warning
    # ("Unresolved resources cannot be served"), repeated only when a CRD
    # changes, and starts the watch once the CRD appears (it watches CRDs).
    for resource in RELOADABLE:
        kopf.on.event(
            resource.group,
            resource.version,
            resource.plural,
            id=f"reload_{resource.plural}",
            registry=registry,
        )(workload_event(resource))

    def plain_event(resource: Resource[ConfigMap | Secret]) -> Callable[..., Awaitable[None]]:
        kind = resource.kind

        async def handler(
            *, type: str | None, namespace: str | None, name: str, body: kopf.Body, **_: object
        ) -> None:
            if namespace is None:
                return
            if type == "DELETED":
                watched.plain_deleted(kind, namespace, name)
            else:
                watched.plain_seen(kind, namespace, name, as_payload(resource, dict(body)))

        return handler

    kopf.on.event("", "v1", "configmaps", id="reload_configmaps", registry=registry)(
        plain_event(CONFIG_MAPS)
    )
    if followed_secrets is not None:
        _follow_secrets(watched, followed_secrets)

    @kopf.on.cleanup(id="reload_timers", registry=registry)
    async def stop_timers(**_: object) -> None:
        watched.loop = None
        await coalescer.close()

    return watched.source_reconciled


class _Passes:
    """A pass over one namespace (run in a thread) and what it reads.

    It reads the watch's copies where they are all a pass needs: a
    namespace without kstrata sources (``watched_workloads``), or the
    followers of plain sources when nothing else changed since a pass
    covered the whole namespace (``plain_followers``); otherwise it lists.
    """

    def __init__(self, reconciler: ReloadReconciler) -> None:
        self.reconciler = reconciler
        self.watched: ReloadTriggers | None = None

    def read(self, namespace: str) -> ReadState:
        """What a pass decides on, and whether that is the whole namespace."""
        watched, reconciler = self.watched, self.reconciler
        assert watched is not None  # set before kopf starts
        workloads = watched.watched_workloads(namespace)
        if workloads is not None:
            return reconciler.state_from_watch(namespace, workloads), True
        followers = watched.plain_followers(namespace)
        if followers is not None:
            return reconciler.state_from_watch(namespace, followers), False
        return reconciler.read_namespace(namespace), True

    def run(
        self, namespace: str, changed_at: float, state: ReadState | None, settled: bool
    ) -> bool:
        watched = self.watched
        assert watched is not None
        triggers = watched.full_triggers(namespace)
        # Read here unless read ahead (a pass that need not wait reads in its own thread).
        read, whole = state if state is not None else self.read(namespace)
        outcome = self.reconciler.reconcile_namespace(
            namespace, changed_at=changed_at, state=read, settled=settled
        )
        if whole and not outcome.held:
            watched.covered(namespace, triggers)
        if outcome.rolled or outcome.paused:
            logger.info(
                "reload pass in %s: rolled %s, held by pause %s",
                namespace,
                ", ".join(outcome.rolled) or "-",
                ", ".join(outcome.paused) or "-",
            )
        if outcome.held:
            logger.debug(
                "reload pass in %s: %s wait for the rest of a change set",
                namespace,
                ", ".join(outcome.held),
            )
        return bool(outcome.held)


def _follow_secrets(watched: ReloadTriggers, followed_secrets: FollowedSecrets) -> None:
    """Followed Secrets from the metadata watch, not kopf's (it sees only what kstrata manages).

    The metadata watch reads a followed Secret by name when it changes; it
    starts when the first workload follows a Secret.
    """

    def changed(namespace: str, name: str, body: Secret | None) -> None:
        if body is None:
            watched.plain_deleted(SECRET_KIND, namespace, name)
        else:
            watched.plain_seen(SECRET_KIND, namespace, name, body)

    followed_secrets.add(
        Interest(
            wants=lambda namespace, name: watched.follows(SECRET_KIND, namespace, name),
            keys=lambda: watched.followed(SECRET_KIND),
            changed=changed,
            fetch=True,
            reading=lambda namespace, name, now: watched.plain_reading(
                SECRET_KIND, namespace, name, now
            ),
        )
    )
    demand = followed_secrets.demand
    watched.on_follow = lambda kind: demand() if kind == SECRET_KIND else None
