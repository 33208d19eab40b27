"""kopf wiring for rolling restarts: *when* to run a reload pass over a namespace.

The decision itself (``kstrata.app.reloads``) is level-triggered, so this
module only has to make sure a pass runs soon after anything that may matter:

* a ConfigProfile's or SealedSecret's ``status.revision`` changed.  Followed
  with ``kopf.on.event`` and an in-memory map of the last revision seen, not
  ``kopf.on.field``: kopf's change detection diffs the object's *essence*,
  which leaves ``status`` out, so a field handler on ``status.revision`` would
  never fire for the status patch the reconcilers write;
* a workload's ``kstrata.dev/reload``, ``-strategy`` or ``-paused`` annotation
  changed (first sight included, so a restarted operator checks once).
  Workloads are followed with ``kopf.on.event`` only: create/update/resume
  handlers would make kopf write its bookkeeping annotations (and possibly
  finalizers) onto users' Deployments.

Passes are coalesced per namespace: the first trigger opens a window of
``settings.reload_coalesce_seconds`` (at most 2 s) and every trigger inside it
joins the same pass, so a ConfigProfile and a SealedSecret changed together
cause one rollout.  Passes of one namespace never overlap (a lock); a trigger
during a pass schedules the next one.  A failed pass is retried after
``settings.retry_backoff``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import kopf

from kstrata import metrics
from kstrata.app.reloads import RELOAD_ANNOTATION, ReloadReconciler, needs_attention
from kstrata.errors import KstrataError
from kstrata.kube.api import KubeApi
from kstrata.settings import Settings

logger = logging.getLogger(__name__)

GROUP, VERSION = "kstrata.dev", "v1alpha1"
MAX_COALESCE_SECONDS = 2.0
#: Retry delay cap for a failed pass, so a long backoff setting cannot stall reloads.
MAX_RETRY_SECONDS = 30.0


class NamespaceCoalescer:
    """Per-namespace debounced runner of a blocking action, on kopf's event loop."""

    def __init__(
        self,
        action: Callable[[str, float], None],
        *,
        window: float,
        retry_delay: float,
    ) -> None:
        self._action = action
        self._window = window
        self._retry_delay = retry_delay
        self._pending: dict[str, asyncio.Task[None]] = {}
        #: Monotonic time of the first trigger of the pending batch (for latency).
        self._first_trigger: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def schedule(self, namespace: str, *, delay: float | None = None) -> None:
        """Join the pending pass of ``namespace`` or open a new window.  Loop thread only."""
        if namespace in self._pending:
            return
        self._first_trigger.setdefault(namespace, time.monotonic())
        task = asyncio.get_running_loop().create_task(
            self._run(namespace, self._window if delay is None else delay)
        )
        self._pending[namespace] = task

    async def _run(self, namespace: str, delay: float) -> None:
        await asyncio.sleep(delay)
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            # From here on a new trigger opens a new window: this pass may have
            # read the namespace before that change.
            self._pending.pop(namespace, None)
            changed_at = self._first_trigger.pop(namespace, time.monotonic())
            try:
                await asyncio.to_thread(self._action, namespace, changed_at)
            except KstrataError as error:
                metrics.RELOAD_PASSES.labels(result="error").inc()
                logger.warning("reload pass in %s failed: %s", namespace, error)
                self._first_trigger.setdefault(namespace, changed_at)
                self.schedule(namespace, delay=self._retry_delay)
                return
            except Exception:
                metrics.RELOAD_PASSES.labels(result="error").inc()
                logger.exception("reload pass in %s failed unexpectedly", namespace)
                self.schedule(namespace, delay=self._retry_delay)
                return
        metrics.RELOAD_PASSES.labels(result="ok").inc()

    async def close(self) -> None:
        tasks = list(self._pending.values())
        self._pending.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def register(registry: kopf.OperatorRegistry, api: KubeApi, settings: Settings) -> None:
    reconciler = ReloadReconciler(api)

    def run_pass(namespace: str, changed_at: float) -> None:
        outcome = reconciler.reconcile_namespace(namespace, changed_at=changed_at)
        if outcome.rolled or outcome.paused:
            logger.info(
                "reload pass in %s: rolled %s, held by pause %s",
                namespace,
                ", ".join(outcome.rolled) or "-",
                ", ".join(outcome.paused) or "-",
            )

    window = min(max(settings.reload_coalesce_seconds, 0.0), MAX_COALESCE_SECONDS)
    coalescer = NamespaceCoalescer(
        run_pass,
        window=window,
        retry_delay=min(max(settings.retry_backoff, 0.1), MAX_RETRY_SECONDS),
    )
    #: (kind, namespace, name) -> last status.revision seen.
    revisions: dict[tuple[str, str, str], object] = {}
    #: workload uid -> the reload annotations last seen.
    workload_annotations: dict[str, tuple[str | None, str | None, str | None]] = {}

    def source_event(kind: str) -> Callable[..., Any]:
        async def handler(
            *, type: str | None, namespace: str | None, name: str, status: kopf.Status, **_: Any
        ) -> None:
            if namespace is None:
                return
            key = (kind, namespace, name)
            if type == "DELETED":
                # The workloads keep what they run; nothing to roll to.
                revisions.pop(key, None)
                return
            revision = status.get("revision")
            if key in revisions and revisions[key] == revision:
                return
            revisions[key] = revision
            if revision:
                coalescer.schedule(namespace)

        return handler

    kopf.on.event(GROUP, VERSION, "configprofiles", id="reload_profiles", registry=registry)(
        source_event("ConfigProfile")
    )
    kopf.on.event(GROUP, VERSION, "sealedsecrets", id="reload_sealed_secrets", registry=registry)(
        source_event("SealedSecret")
    )

    async def workload_event(
        *,
        type: str | None,
        namespace: str | None,
        uid: str | None,
        annotations: kopf.Annotations,
        **_: Any,
    ) -> None:
        if namespace is None or uid is None:
            return
        if type == "DELETED":
            workload_annotations.pop(uid, None)
            return
        seen = needs_attention(annotations)
        previous = workload_annotations.get(uid)
        workload_annotations[uid] = seen
        # Not opted in and never was: nothing to do (keeps passes off busy namespaces).
        if previous == seen or (previous is None and annotations.get(RELOAD_ANNOTATION) is None):
            return
        coalescer.schedule(namespace)

    for plural in ("deployments", "statefulsets", "daemonsets"):
        kopf.on.event("apps", "v1", plural, id=f"reload_{plural}", registry=registry)(
            workload_event
        )

    @kopf.on.cleanup(id="reload_timers", registry=registry)
    async def stop_timers(**_: Any) -> None:
        await coalescer.close()
