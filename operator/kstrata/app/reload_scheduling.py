"""When a reload pass runs over a namespace: coalescing and the watches' memory.

Why here and not in ``kstrata.controller``: this is scheduling logic with
rules worth testing on their own (an eager pass at once, a settled pass once
no source is in flight and the quiet period has passed, at most one of each
pending per namespace, passes of one namespace never overlapping; which watch
events call for a pass at all), and none of it needs kopf.  The controller
(``kstrata.controller.reloads``) stays a thin adapter: it feeds kopf's events
into ``ReloadTriggers`` and runs the passes ``NamespaceCoalescer`` schedules
on kopf's event loop.  What a pass does is ``kstrata.app.reloads``; which
workloads roll is ``kstrata.domain.reload_decision``.

The module is the reloads use case's timing half, built on ``app.reloads``,
so it is not in the independence contract between use cases
(``.importlinter``); nothing but the controller imports it.  Everything here
runs on the event loop without I/O, except the action and the read-ahead,
which run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from kstrata import metrics
from kstrata.app.reloads import FingerprintKeySource, PlainSource, describe_plain
from kstrata.domain.reload_annotations import opted_in
from kstrata.domain.reload_decision import (
    Target,
    needs_attention,
    parse_targets,
    reload_request,
    wanted_plain,
)
from kstrata.errors import KstrataError
from kstrata.payloads import (
    ConfigMap,
    ConfigProfile,
    Opaque,
    OwnObject,
    Secret,
    Workload,
)
from kstrata.wellknown import REVISIONS_ANNOTATION

logger = logging.getLogger(__name__)

MAX_COALESCE_SECONDS: Final = 2.0
#: Cap of ``settings.reload_quiet_seconds``.
MAX_QUIET_SECONDS: Final = 5.0
#: Retry delay cap for a failed pass, so a long backoff setting cannot stall reloads.
MAX_RETRY_SECONDS: Final = 30.0

_State = TypeVar("_State")


#: A pass: ``(namespace, changed_at, state read ahead or None, settled) -> held``.
#: ``held``: it left something for a pass once the namespace has settled.
Action = Callable[[str, float, _State | None, bool], bool]


class NamespaceCoalescer(Generic[_State]):
    """Per-namespace runner of a blocking action: at once, and again once the namespace settles.

    ``schedule(namespace)`` runs an *eager* pass: no wait.  The action is told
    whether the namespace is *settled* right now: nothing in flight there
    (``busy(namespace)`` is false) and ``quiet`` seconds since the last spec
    write (``note_change``).  If it was not and the action answers True (it
    held something back for the rest of a change set), a *settled* pass
    follows: it waits until the namespace has settled, or at most ``quiet +
    window`` after its first trigger, and runs the action with ``settled``
    True.  At most one eager and one settled pass per namespace are pending,
    and passes of one namespace never overlap (a lock).

    ``needed(namespace)``, asked before a pass runs, says whether the action
    could do anything there (if not, it is skipped).  Call ``poke`` when
    ``busy`` or ``needed`` may have changed.  Everything runs on kopf's event
    loop; the action runs in a thread.

    ``read_ahead(namespace)``, if given, runs (in a thread) as soon as a
    settled pass is scheduled, overlapping its wait for the quiet period, and
    its result is handed to the action, which then need not read again (an
    eager pass reads in the action's own thread).  It is handed over only if
    nothing was scheduled or changed in the namespace since the read began;
    otherwise the action gets None and reads for itself.  A pass waiting only
    for the lock does not read ahead: the pass holding it always voids such a
    read when it ends (its own writes), so it would only load that pass.
    """

    def __init__(
        self,
        action: Action[_State],
        *,
        window: float,
        retry_delay: float,
        quiet: float = 0.0,
        busy: Callable[[str], bool] = lambda _: False,
        needed: Callable[[str], bool] = lambda _: True,
        read_ahead: Callable[[str], _State] | None = None,
    ) -> None:
        self._action = action
        self._needed = needed
        self._read_ahead = read_ahead
        self._window = max(window, 0.0)
        self._quiet = max(quiet, 0.0)
        self._retry_delay = retry_delay
        self._busy = busy
        #: (namespace, settled) -> the pass not yet started.
        self._pending: dict[tuple[str, bool], asyncio.Task[None]] = {}
        #: Monotonic time of the first trigger of each pending pass (latency, window).
        self._first_trigger: dict[tuple[str, bool], float] = {}
        self._last_change: dict[str, float] = {}
        #: Bumped by every trigger and spec write: a read ahead is stale once it moved.
        self._versions: dict[str, int] = {}
        self._wakers: dict[str, asyncio.Event] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _bump(self, namespace: str) -> None:
        self._versions[namespace] = self._versions.get(namespace, 0) + 1

    def schedule(self, namespace: str, *, delay: float | None = None) -> None:
        """Join the pending eager pass of ``namespace`` or start one.  Loop thread only."""
        self._bump(namespace)
        self._start(namespace, settled=False, delay=delay)

    def note_change(self, namespace: str) -> None:
        """A spec write was seen in ``namespace``: restart its quiet period."""
        self._bump(namespace)
        self._last_change[namespace] = time.monotonic()
        self.poke(namespace)

    def poke(self, namespace: str) -> None:
        """Let a waiting settled pass re-check whether the namespace has settled."""
        if waker := self._wakers.get(namespace):
            waker.set()

    def settled(self, namespace: str) -> bool:
        """Nothing in flight in ``namespace``, and quiet for the quiet period."""
        quiet_until = self._last_change.get(namespace, -math.inf) + self._quiet
        return time.monotonic() >= quiet_until and not self._busy(namespace)

    def _start(
        self,
        namespace: str,
        *,
        settled: bool,
        delay: float | None = None,
        changed_at: float | None = None,
    ) -> None:
        key = (namespace, settled)
        if changed_at is not None:
            self._first_trigger.setdefault(key, changed_at)
        if key in self._pending:
            self.poke(namespace)
            return
        self._first_trigger.setdefault(key, time.monotonic())
        task = asyncio.get_running_loop().create_task(self._run(namespace, settled, delay))
        self._pending[key] = task

    async def _settle(self, namespace: str) -> None:
        """Return once the namespace has settled, or at the settled pass's deadline."""
        first = self._first_trigger.get((namespace, True), time.monotonic())
        deadline = first + self._quiet + self._window
        waker = self._wakers.setdefault(namespace, asyncio.Event())
        while True:
            now = time.monotonic()
            if now >= deadline or self.settled(namespace):
                return
            waker.clear()
            quiet_until = self._last_change.get(namespace, -math.inf) + self._quiet
            until = min(quiet_until if now < quiet_until else deadline, deadline)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), timeout=until - now)

    def _start_read_ahead(self, namespace: str) -> asyncio.Future[_State] | None:
        if self._read_ahead is None or not self._needed(namespace):
            return None
        ahead = asyncio.ensure_future(asyncio.to_thread(self._read_ahead, namespace))
        # A read that is not used (stale, or the pass was cancelled) must not
        # log "exception never retrieved": its failure is the action's to meet.
        ahead.add_done_callback(lambda done: done.cancelled() or done.exception())
        return ahead

    async def _run(self, namespace: str, settled: bool, delay: float | None) -> None:
        key = (namespace, settled)
        version = self._versions.get(namespace, 0)
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        # A read ahead pays only while a settled pass waits for the quiet period;
        # an eager pass reads in its own thread, one hop to a thread and back
        # less before the rollout.  Not while a pass waits for the lock: the
        # pass holding it bumps the version when it ends (below), so that read
        # was never used, and its LISTs slowed the holder's last writes.
        ahead = self._start_read_ahead(namespace) if delay is None and settled else None
        if delay is not None:
            await asyncio.sleep(delay)
        if settled:
            await self._settle(namespace)
        async with lock:
            # From here on a new trigger starts a new pass: this one may have
            # read the namespace before that change.
            self._pending.pop(key, None)
            changed_at = self._first_trigger.pop(key, time.monotonic())
            if not self._needed(namespace):
                return
            state: _State | None = None
            if ahead is not None and self._versions.get(namespace, 0) == version:
                with contextlib.suppress(KstrataError):
                    state = await ahead
            # A settled pass past its deadline goes ahead as settled: a source
            # that never settles cannot hold reloads.
            calm = settled or self.settled(namespace)
            held: bool | None = None
            try:
                held = await asyncio.to_thread(self._action, namespace, changed_at, state, calm)
            except KstrataError as error:
                metrics.RELOAD_PASSES.labels(result="error").inc()
                logger.warning("reload pass in %s failed: %s", namespace, error)
            except Exception:
                metrics.RELOAD_PASSES.labels(result="error").inc()
                logger.exception("reload pass in %s failed unexpectedly", namespace)
            finally:
                # This pass's own writes make stale what a settled pass may have
                # read ahead meanwhile.
                self._bump(namespace)
        if held is None:
            self._start(namespace, settled=settled, delay=self._retry_delay, changed_at=changed_at)
            return
        metrics.RELOAD_PASSES.labels(result="ok").inc()
        if held and not calm:
            self._start(namespace, settled=True, changed_at=changed_at)

    async def close(self) -> None:
        tasks = list(self._pending.values())
        self._pending.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class PassScheduler(Protocol):
    """What ``ReloadTriggers`` asks of the coalescer, whatever state its passes read ahead."""

    def schedule(self, namespace: str) -> None: ...

    def note_change(self, namespace: str) -> None: ...

    def poke(self, namespace: str) -> None: ...


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


Annotations = tuple[str | None, ...]
Followed = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class SourceStatus:
    """What a reload pass needs to know of a status a reconciler just wrote."""

    kind: str
    namespace: str
    name: str
    generation: int
    revision: int
    spec: dict[str, Opaque]


SourceReconciled = Callable[[SourceStatus], None]


class ReloadTriggers:
    """What the watches have seen, and which events call for a pass (no I/O, no kopf)."""

    def __init__(
        self,
        coalescer: PassScheduler,
        in_flight: dict[str, set[tuple[str, str]]],
        *,
        reloader_compatible: bool = False,
        fingerprint_key: FingerprintKeySource | None = None,
    ) -> None:
        self.coalescer = coalescer
        self.reloader_compatible = reloader_compatible
        self._fingerprint_key = fingerprint_key
        #: (kind, namespace, name) -> the last watched description of a followed source,
        #: so a pass need not read it again (fingerprint, owner, opt-outs; never data).
        self._described: dict[tuple[str, str, str], PlainSource] = {}
        #: (kind, namespace, name) of a plain ConfigMap/Secret -> uids of workloads following it.
        self._followers: dict[tuple[str, str, str], set[str]] = {}
        #: (kind, namespace, name) -> keyed digest of its data as last seen (followed ones only).
        self._digests: dict[tuple[str, str, str], bytes] = {}
        #: A per-process key: the digests above are never a plain hash of a Secret's data.
        self._digest_key = secrets.token_bytes(32)
        #: namespace -> sources whose spec write is not reconciled yet, as (kind, name),
        #: and followed Secrets whose new version is being read (``plain_reading``).
        self.in_flight = in_flight
        #: (kind, namespace, name) -> (status.revision, spec.reload.targets) last seen.
        self._sources: dict[tuple[str, str, str], tuple[object, tuple[Target, ...]]] = {}
        #: (kind, namespace, name) -> metadata.generation last seen.
        self._generations: dict[tuple[str, str, str], int | None] = {}
        #: namespace -> (source kind, source name) -> its targets, for workload events.
        self._targets: dict[str, dict[tuple[str, str], tuple[Target, ...]]] = {}
        #: workload uid -> (reload annotations, targeted by a source, followed) last seen.
        self._workloads: dict[str, tuple[Annotations, bool, Followed]] = {}
        #: namespace -> uids of workloads that opted in or that a source targets.
        self._interested: dict[str, set[str]] = {}
        #: namespace -> uid -> kind, of those interested workloads.
        self._interested_kinds: dict[str, dict[str, str]] = {}
        #: namespace -> uid -> (kind, the watch's last copy) of interested workloads, so a
        #: pass in a namespace with no kstrata sources needs no LIST (``watched_workloads``).
        self._bodies: dict[str, dict[str, tuple[str, Workload]]] = {}
        #: namespace -> ConfigProfiles and SealedSecrets the watches have seen there.
        self._kstrata_sources: dict[str, set[tuple[str, str]]] = {}
        #: namespace -> (source kind, name) -> workload kinds its status.workloads lists.
        self._listed_kinds: dict[str, dict[tuple[str, str], frozenset[str]]] = {}
        #: namespace -> sources whose status.workloads lists workloads, as (kind, name).
        self._listing: dict[str, set[tuple[str, str]]] = {}
        #: (kind, namespace, name) -> (generation, revision) a reconciler reported
        #: before the watch delivered its status (see ``source_reconciled``).
        self._reported: dict[tuple[str, str, str], tuple[int, int]] = {}
        #: The same, kept after the watch has caught up (until a newer report or the
        #: deletion): a pass may have listed the old status just before it did.
        self._reported_revisions: dict[tuple[str, str, str], tuple[int, int]] = {}
        #: kopf's event loop, once running: reconcile threads reach it through this.
        self.loop: asyncio.AbstractEventLoop | None = None
        #: Told the kind of every ConfigMap or Secret that gains its first follower.
        self.on_follow: Callable[[str], None] | None = None
        #: namespace -> triggers so far that need a pass over the whole namespace (all
        #: but a followed ConfigMap's or Secret's data change), and how many of them
        #: the last complete pass covered (``plain_followers``).
        self._full_triggers: dict[str, int] = {}
        self._full_covered: dict[str, int] = {}
        #: namespace -> (source kind, name) -> (kind, name) of the workloads its
        #: status.workloads lists.
        self._listed_workloads: dict[str, dict[tuple[str, str], frozenset[tuple[str, str]]]] = {}

    def _schedule_full(self, namespace: str) -> None:
        self._full_triggers[namespace] = self._full_triggers.get(namespace, 0) + 1
        self.coalescer.schedule(namespace)

    def full_triggers(self, namespace: str) -> int:
        """How many whole-namespace triggers ``namespace`` has had (any thread).

        Read before a pass reads the namespace; handed to ``covered`` once
        that pass has decided on every workload there.
        """
        return self._full_triggers.get(namespace, 0)

    def covered(self, namespace: str, triggers: int) -> None:
        """A pass that read the whole namespace after ``triggers`` triggers held nothing back."""
        self._full_covered[namespace] = max(self._full_covered.get(namespace, 0), triggers)

    def needs_pass(self, namespace: str) -> bool:
        """Whether a pass over ``namespace`` could write anything at all.

        Only workloads that opted in or that a source targets are ever
        written, and a source's ``status.workloads`` only while it lists
        some; a namespace with neither is skipped without its five lists (most
        namespaces: a profile change there would otherwise cost a pass).  A
        workload seen later schedules its own pass, so a skip loses nothing.
        """
        return bool(
            self._interested.get(namespace)
            or self._targets.get(namespace)
            or self._listing.get(namespace)
        )

    def source_deleted(self, kind: str, namespace: str, name: str) -> None:
        key = (kind, namespace, name)
        self._sources.pop(key, None)
        self._generations.pop(key, None)
        self._reported.pop(key, None)
        self._reported_revisions.pop(key, None)
        self._targets.get(namespace, {}).pop((kind, name), None)
        self._listing.get(namespace, set()).discard((kind, name))
        self._listed_kinds.get(namespace, {}).pop((kind, name), None)
        self._listed_workloads.get(namespace, {}).pop((kind, name), None)
        self._kstrata_sources.get(namespace, set()).discard((kind, name))
        self.in_flight.get(namespace, set()).discard((kind, name))
        # The workloads keep what they run: nothing rolls.  A pending pass may go on.
        self.coalescer.poke(namespace)

    def source_seen(self, kind: str, namespace: str, name: str, body: OwnObject) -> None:
        key = (kind, namespace, name)
        status = body.get("status") or {}
        if (found := self._reported.get(key)) is not None:
            reported = found[0]
            generation = _as_int((body.get("metadata") or {}).get("generation"))
            observed = _as_int(status.get("observedGeneration")) or 0
            if generation == reported and observed < reported:
                # Written before the status its reconciler already reported
                # (our own index patch, say): old news, and not "in flight".
                return
            if observed >= reported:
                del self._reported[key]  # the watch has caught up
        listing = self._listing.setdefault(namespace, set())
        entries = status.get("workloads")
        listed = self._listed_kinds.setdefault(namespace, {})
        listed_workloads = self._listed_workloads.setdefault(namespace, {})
        if entries:
            listing.add((kind, name))
            listed[(kind, name)] = frozenset(
                str(e.get("kind")) for e in entries if isinstance(e, dict)
            )
            listed_workloads[(kind, name)] = frozenset(
                (str(e.get("kind")), str(e.get("name"))) for e in entries if isinstance(e, dict)
            )
        else:
            listing.discard((kind, name))
            listed.pop((kind, name), None)
            listed_workloads.pop((kind, name), None)
        self._observe(kind, namespace, name, body)

    def source_reconciled(self, written: SourceStatus) -> None:
        """A reconcile thread served this revision: act on it now, not when the watch brings it.

        Saves the round of kopf delivering our own status write (~20-30 ms of
        the change-to-rollout latency), and, where the reconciler reports
        before writing its status, that write too (``reported_revision``).
        The watch event that follows is the same news and schedules nothing
        more.  Safe to call from any thread.
        """
        loop = self.loop
        if loop is None:
            return
        # The status as the watch will bring it (same shape for a SealedSecret).
        body: ConfigProfile = {
            "metadata": {"generation": written.generation},
            "spec": written.spec,
            "status": {"observedGeneration": written.generation, "revision": written.revision},
        }
        # The loop may be closing (operator shutdown): then the watch of the
        # next start brings the status, and the reconcile must not fail for it.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(
                self._reconciled, written.kind, written.namespace, written.name, body
            )

    def _reconciled(self, kind: str, namespace: str, name: str, body: OwnObject) -> None:
        key = (kind, namespace, name)
        generation = body["metadata"]["generation"]
        known = self._generations.get(key)
        if known is not None and known > generation:
            return  # a newer spec write is already in flight: this news is stale
        self._reported[key] = (generation, body["status"]["revision"])
        self._reported_revisions[key] = self._reported[key]
        self._observe(kind, namespace, name, body)

    def reported_revision(
        self, kind: str, namespace: str, name: str, generation: int
    ) -> int | None:
        """The revision a reconciler reported for this generation, not yet in a status read.

        A reconciler reports once the output serves (the ConfigMap written),
        before its status write, and a pass's LIST may not show that status
        yet: for such a generation the pass takes the reported revision (any
        thread).  Only for the same generation: a report of an older spec, or
        of a deleted object, never stands in for what a list says.  Kept after
        the watch has delivered that status: a pass that listed just before
        it landed asks after the watch caught up (an entry per source).
        """
        found = self._reported_revisions.get((kind, namespace, name))
        return found[1] if found is not None and found[0] == generation else None

    def _observe(self, kind: str, namespace: str, name: str, body: OwnObject) -> None:
        key = (kind, namespace, name)
        self._kstrata_sources.setdefault(namespace, set()).add((kind, name))
        meta, status = body.get("metadata") or {}, body.get("status") or {}
        generation = _as_int(meta.get("generation"))
        observed = _as_int(status.get("observedGeneration"))
        pending = self.in_flight.setdefault(namespace, set())
        if generation is not None and (observed is None or observed < generation):
            pending.add((kind, name))
        else:
            pending.discard((kind, name))
        if key in self._generations and self._generations[key] != generation:
            self.coalescer.note_change(namespace)
        else:
            self.coalescer.poke(namespace)
        self._generations[key] = generation
        found = parse_targets(body.get("spec"))
        if found:
            self._targets.setdefault(namespace, {})[(kind, name)] = found
        else:
            self._targets.get(namespace, {}).pop((kind, name), None)
        revision = status.get("revision")
        previous = self._sources.get(key)
        known = _as_int(previous[0]) if previous is not None else None
        if known and (_as_int(revision) or 0) < known:
            revision = known  # revisions only grow: a lower one is old news delivered late
        seen = (revision, found)
        if previous == seen:
            return
        self._sources[key] = seen
        if revision:
            self._schedule_full(namespace)

    def _targeted(self, namespace: str, workload: Workload) -> bool:
        return any(
            target.matches(workload)
            for entries in self._targets.get(namespace, {}).values()
            for target in entries
        )

    def _follow(self, namespace: str, uid: str, before: Followed, after: Followed) -> None:
        for kind, name in before - after:
            key = (kind, namespace, name)
            followers = self._followers.get(key, set())
            followers.discard(uid)
            if not followers:
                self._followers.pop(key, None)
                self._digests.pop(key, None)
                self._described.pop(key, None)
        for kind, name in after - before:
            self._followers.setdefault((kind, namespace, name), set()).add(uid)
            if self.on_follow is not None:
                self.on_follow(kind)

    def workload_kinds(self, namespace: str) -> frozenset[str] | None:
        """Workload kinds a pass over ``namespace`` must list (any thread).

        Kinds of workloads that opted in or that a source targets, and kinds a
        source's ``status.workloads`` lists (so an entry that must go is
        seen).  A workload the watch has not delivered yet is evaluated by
        the pass its own first sight schedules.
        """
        kinds = set(self._interested_kinds.get(namespace, {}).values())
        for entries in list(self._targets.get(namespace, {}).values()):
            kinds |= {target.kind for target in entries}
        for listed in list(self._listed_kinds.get(namespace, {}).values()):
            kinds |= listed
        return frozenset(kinds)

    def workload_deleted(self, namespace: str, uid: str) -> None:
        previous = self._workloads.pop(uid, None)
        self._interested.get(namespace, set()).discard(uid)
        self._interested_kinds.get(namespace, {}).pop(uid, None)
        self._bodies.get(namespace, {}).pop(uid, None)
        if previous is not None:
            self._follow(namespace, uid, previous[2], frozenset())
        # Its entry must leave the sources' status.workloads.
        if previous is not None and (previous[0][0] is not None or previous[1] or previous[2]):
            self._schedule_full(namespace)

    def workload_seen(self, namespace: str, uid: str, workload: Workload) -> None:
        annotations = (workload.get("metadata") or {}).get("annotations") or {}
        compatible = self.reloader_compatible
        opted = opted_in(annotations, reloader_compatible=compatible)
        request = reload_request(workload, reloader_compatible=compatible)
        followed = frozenset(wanted_plain(workload, request))
        seen = (needs_attention(annotations), self._targeted(namespace, workload), followed)
        previous = self._workloads.get(uid)
        self._workloads[uid] = seen
        self._follow(namespace, uid, previous[2] if previous else frozenset(), followed)
        interested = self._interested.setdefault(namespace, set())
        kinds = self._interested_kinds.setdefault(namespace, {})
        bodies = self._bodies.setdefault(namespace, {})
        if opted or seen[1]:
            interested.add(uid)
            kinds[uid] = str(workload.get("kind", ""))
            bodies[uid] = (
                kinds[uid],
                {"metadata": workload.get("metadata") or {}, "spec": workload.get("spec") or {}},
            )
        else:
            interested.discard(uid)
            kinds.pop(uid, None)
            bodies.pop(uid, None)
        # Not opted in and never was: nothing to do (keeps passes off busy namespaces).
        if previous == seen or (previous is None and not opted and not seen[1]):
            return
        self._schedule_full(namespace)

    def _digest(self, body: ConfigMap | Secret) -> bytes:
        digest = hashlib.blake2b(key=self._digest_key, digest_size=16)
        # A Secret has no binaryData field: its second section is empty.
        sections: tuple[tuple[str, object], ...] = (
            ("data", body.get("data")),
            ("binaryData", body.get("binaryData")),
        )
        for section, found in sections:
            values = found if isinstance(found, Mapping) else {}
            for key in sorted(values):
                for part in (section, str(key), str(values[key])):
                    encoded = part.encode("utf-8")
                    digest.update(len(encoded).to_bytes(8, "big") + encoded)
        return digest.digest()

    def plain_seen(self, kind: str, namespace: str, name: str, body: ConfigMap | Secret) -> None:
        """A ConfigMap or Secret event: a pass if a followed one's data changed.

        Unfollowed ones cost one dictionary lookup.  A followed one seen for
        the first time (start-up, or followed only now) schedules a pass too:
        the pass compares with the workloads' records, so it rolls nothing
        unless the data really differs from what they run.  A metadata-only
        write (same data) does nothing at all.
        """
        key = (kind, namespace, name)
        if key not in self._followers:
            return
        fingerprint_key = self._fingerprint_key.loaded if self._fingerprint_key else None
        self._described[key] = describe_plain(
            kind,
            namespace,
            name,
            body,
            fingerprint_key,
            reloader_compatible=self.reloader_compatible,
        )
        digest = self._digest(body)
        previous = self._digests.get(key)
        if previous == digest:
            return  # a metadata-only write: no pass (an opt-out edit counts at the next one)
        self._digests[key] = digest
        # A data change (or the first sight of a followed source, which may be
        # one: at start-up its event can come before its followers'): part of
        # a change set the quiet period gathers.  Costs a workload that
        # follows several sources the quiet period at start-up, nothing more.
        # One read after its announcement counts from the announcement.
        if (kind, name) not in self.in_flight.get(namespace, ()):
            self.coalescer.note_change(namespace)
        self.coalescer.schedule(namespace)

    def plain_reading(self, kind: str, namespace: str, name: str, reading: bool) -> None:
        """A followed source's new version was announced and is being read (``reading``
        True), or that read is over, whatever its outcome (False).

        A Secret's change is announced by the metadata watch and read by a GET
        before ``plain_seen``: the operator knows of it from the announcement.
        So its quiet period counts from then, and the namespace is in flight
        until the read is back, so a pass holding the rest of a change set
        waits for it: the read's own latency (a thread hop and a round trip,
        longer under load) must not split one change set in two.
        """
        pending = self.in_flight.setdefault(namespace, set())
        if not reading:
            pending.discard((kind, name))
            self.coalescer.poke(namespace)
        elif (kind, namespace, name) in self._followers:
            pending.add((kind, name))
            self.coalescer.note_change(namespace)

    def plain_deleted(self, kind: str, namespace: str, name: str) -> None:
        # The workloads keep what they run: nothing rolls.
        self._digests.pop((kind, namespace, name), None)
        self._described.pop((kind, namespace, name), None)

    def watched_workloads(self, namespace: str) -> list[tuple[str, Workload]] | None:
        """The watch's copies of the namespace's interested workloads, when they are all a
        pass needs; None when it must LIST (any thread).

        Only where the watches saw no ConfigProfile or SealedSecret and no
        source targets or lists a workload, and every interested workload
        follows only plain sources the ConfigMap/Secret watch has described
        (not owned by a kstrata source) and records nothing else: then the
        lists could add nothing.  The pass writes with the copies'
        resourceVersion, so a copy older than its object writes nothing.
        """
        if (
            self._kstrata_sources.get(namespace)
            or self._targets.get(namespace)
            or self._listing.get(namespace)
        ):
            return None
        found = list(self._bodies.get(namespace, {}).items())
        result: list[tuple[str, Workload]] = []
        for uid, (kind, body) in found:
            if not self._plain_only(namespace, uid, body):
                return None
            result.append((kind, body))
        return result

    def plain_followers(self, namespace: str) -> list[tuple[str, Workload]] | None:
        """The watch's copies of the workloads that follow only plain sources, when a pass
        need decide on nothing else; None when it must read the namespace (any thread).

        That is when nothing but followed ConfigMaps' and Secrets' data changed
        since the last pass that decided on the whole namespace
        (``full_triggers``, ``covered``), and every interested workload that
        follows a plain source follows nothing else, is no source's target and
        is listed in no source's ``status.workloads``: then the other
        workloads have nothing new to decide and no source's status can
        change, so the pass needs neither the lists nor the sources.  A
        ConfigMap change in a namespace that also has ConfigProfiles rolls
        its followers on one PATCH after the event, as where it has none.
        """
        if self._full_triggers.get(namespace, 0) > self._full_covered.get(namespace, 0):
            return None
        listed: set[tuple[str, str]] = set()
        for names in list(self._listed_workloads.get(namespace, {}).values()):
            listed |= names
        result: list[tuple[str, Workload]] = []
        for uid, (kind, body) in list(self._bodies.get(namespace, {}).items()):
            previous = self._workloads.get(uid)
            if previous is None or not previous[2]:
                continue  # follows no plain source: nothing new for it
            name = str((body.get("metadata") or {}).get("name"))
            if previous[1] or (kind, name) in listed or not self._plain_only(namespace, uid, body):
                return None
            result.append((kind, body))
        return result

    def _plain_only(self, namespace: str, uid: str, body: Workload) -> bool:
        """Whether a watched workload follows only plain sources the watch has described
        (none owned by a kstrata source) and records nothing else."""
        previous = self._workloads.get(uid)
        followed = previous[2] if previous is not None else frozenset()
        for source_kind, source_name in followed:
            seen = self._described.get((source_kind, namespace, source_name))
            if seen is None or seen.owner is not None:
                return False
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        record = annotations.get(REVISIONS_ANNOTATION) or ""
        keys = [entry.partition("=")[0].strip() for entry in str(record).split(",") if entry]
        if any(not key.startswith(("configmap/", "secret/")) for key in keys):
            return False
        request = reload_request(body, reloader_compatible=self.reloader_compatible)
        return not request.names

    def follows(self, kind: str, namespace: str, name: str) -> bool:
        """Whether a workload follows this ConfigMap or Secret (one lookup)."""
        return (kind, namespace, name) in self._followers

    def followed(self, kind: str) -> list[tuple[str, str]]:
        """(namespace, name) of every followed source of ``kind``."""
        return [(ns, name) for k, ns, name in list(self._followers) if k == kind]

    def described(self, kind: str, namespace: str, name: str) -> PlainSource | None:
        """The watch's description of a followed source, for a pass (any thread)."""
        return self._described.get((kind, namespace, name))


def status_reporter(
    reconciled: SourceReconciled | None, kind: str, obj: OwnObject
) -> Callable[[int], None] | None:
    """What a reconciler calls with the revision its status now reports."""
    if reconciled is None:
        return None
    meta = obj["metadata"]

    def report(revision: int) -> None:
        generation = meta.get("generation", 0)
        spec = obj.get("spec") or {}
        reconciled(SourceStatus(kind, meta["namespace"], meta["name"], generation, revision, spec))

    return report
