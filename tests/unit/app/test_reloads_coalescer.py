"""When reload passes run: at once, and again once the namespace has settled (capped).

These drive ``kstrata.app.reload_scheduling`` on a private event loop with an
in-memory action.  Timings are only ever bounded from below (the clock is
monotonic) or by a window many times longer than the wait, never measured.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kstrata.app.reload_scheduling import NamespaceCoalescer, ReloadTriggers, SourceStatus
from kstrata.errors import TransientClusterError
from kstrata.payloads import Workload


class Recorder:
    """The action: records each pass; holds something back whenever it is not settled."""

    def __init__(self, fail_first: int = 0, *, holds: bool = False) -> None:
        self.calls: list[tuple[str, float]] = []
        self.states: list[Any] = []
        self.settled: list[bool] = []
        self.times: list[float] = []
        self.fail_first = fail_first
        self.holds = holds
        self.done = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def __call__(
        self, namespace: str, changed_at: float, state: Any = None, settled: bool = True
    ) -> bool:
        if self.fail_first:
            self.fail_first -= 1
            raise TransientClusterError("list deployments in ns: API server unavailable")
        self.calls.append((namespace, changed_at))
        self.states.append(state)
        self.settled.append(settled)
        self.times.append(time.monotonic())
        self.loop.call_soon_threadsafe(self.done.set)
        return self.holds and not settled

    async def next_pass(self) -> None:
        await asyncio.wait_for(self.done.wait(), timeout=10)
        self.done.clear()


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=20))


def test_a_lone_trigger_runs_at_once_and_is_told_whether_the_namespace_settled() -> None:
    async def scenario() -> None:
        action = Recorder()
        coalescer = NamespaceCoalescer(action, window=60.0, quiet=30.0, retry_delay=0.1)
        coalescer.schedule("ns")  # no spec write seen: settled
        await action.next_pass()
        coalescer.note_change("ns")
        coalescer.schedule("ns")  # far inside the 30 s quiet period: runs all the same
        await action.next_pass()
        assert ([ns for ns, _ in action.calls], action.settled) == (["ns", "ns"], [True, False])
        await asyncio.sleep(0.1)
        assert len(action.calls) == 2  # nothing held back: no second pass
        await coalescer.close()

    run(scenario())


def test_an_eager_pass_does_not_wait_for_sources_in_flight() -> None:
    async def scenario() -> None:
        action = Recorder()
        coalescer = NamespaceCoalescer(action, window=60.0, retry_delay=0.1, busy=lambda _: True)
        coalescer.schedule("ns")
        await action.next_pass()
        assert action.settled == [False]
        await coalescer.close()

    run(scenario())


def test_what_was_held_waits_for_sources_in_flight_and_later_triggers_do_not() -> None:
    async def scenario() -> None:
        action = Recorder(holds=True)
        busy = {"ns": True}
        coalescer = NamespaceCoalescer(
            action, window=60.0, retry_delay=0.1, busy=lambda ns: busy.get(ns, False)
        )
        coalescer.schedule("ns")
        await action.next_pass()  # eager: holds something back
        # Another trigger meanwhile (say a single-source workload's change)
        # runs at once; it does not queue behind the held change set.
        coalescer.schedule("ns")
        await action.next_pass()
        coalescer.poke("ns")  # still busy: the settled pass keeps waiting
        await asyncio.sleep(0.2)
        assert action.settled == [False, False]
        busy["ns"] = False
        coalescer.poke("ns")
        await action.next_pass()
        assert action.settled == [False, False, True]
        first_trigger = action.calls[0][1]
        assert action.calls[2][1] == first_trigger  # latency counts from the first trigger
        await asyncio.sleep(0.1)
        assert len(action.calls) == 3  # one settled pass for both eager ones
        await coalescer.close()

    run(scenario())


def test_the_window_caps_the_wait_for_a_source_that_never_settles() -> None:
    async def scenario() -> None:
        action = Recorder(holds=True)
        coalescer = NamespaceCoalescer(
            action, window=0.2, quiet=0.1, retry_delay=0.1, busy=lambda _: True
        )
        started = time.monotonic()
        coalescer.schedule("ns")
        await action.next_pass()
        await action.next_pass()
        assert action.settled == [False, True]
        assert action.times[1] - started >= 0.3  # quiet + window after the first trigger
        await coalescer.close()

    run(scenario())


def test_a_spec_write_restarts_the_quiet_period_of_what_was_held() -> None:
    async def scenario() -> None:
        action = Recorder(holds=True)
        coalescer = NamespaceCoalescer(action, window=60.0, quiet=0.3, retry_delay=0.1)
        coalescer.note_change("ns")
        coalescer.schedule("ns")
        await action.next_pass()
        await asyncio.sleep(0.1)
        coalescer.note_change("ns")  # the next object of the same apply
        noted = time.monotonic()
        await action.next_pass()
        assert action.settled == [False, True]
        assert action.times[1] - noted >= 0.3
        await coalescer.close()

    run(scenario())


def test_a_pass_held_in_a_settled_namespace_is_not_held() -> None:
    """Long after the last spec write (an unpause, say), the eager pass is already settled."""

    async def scenario() -> None:
        action = Recorder(holds=True)
        coalescer = NamespaceCoalescer(action, window=60.0, quiet=0.05, retry_delay=0.1)
        coalescer.note_change("ns")
        await asyncio.sleep(0.1)
        coalescer.schedule("ns")
        await action.next_pass()
        await asyncio.sleep(0.1)
        assert action.settled == [True]
        await coalescer.close()

    run(scenario())


def test_a_pass_that_could_change_nothing_is_skipped() -> None:
    async def scenario() -> None:
        action = Recorder()
        asked: list[str] = []

        def needed(namespace: str) -> bool:
            asked.append(namespace)
            return namespace == "used"

        coalescer = NamespaceCoalescer(action, window=60.0, retry_delay=0.1, needed=needed)
        coalescer.schedule("unused")
        await coalescer._pending[("unused", False)]
        assert (asked, action.calls) == (["unused"], [])
        coalescer.schedule("used")
        await action.next_pass()
        assert asked == ["unused", "used"]
        assert [ns for ns, _ in action.calls] == ["used"]
        await coalescer.close()

    run(scenario())


async def until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never met")


def test_what_was_read_while_waiting_is_used_only_if_nothing_moved() -> None:
    """The reads overlap the wait; a trigger or spec write meanwhile voids them.

    An eager pass that can start at once does not read ahead: it reads in the
    action's own thread, one hop less before the rollout.
    """

    async def scenario() -> None:
        reads: list[str] = []

        def read(namespace: str) -> str:
            reads.append(namespace)
            return f"read #{len(reads)}"

        action = Recorder(holds=True)
        busy = {"ns": False}
        coalescer = NamespaceCoalescer(
            action,
            window=60.0,
            quiet=0.3,
            retry_delay=0.1,
            busy=lambda ns: busy[ns],
            read_ahead=read,
        )
        coalescer.note_change("ns")
        coalescer.schedule("ns")
        await action.next_pass()  # eager, held: nothing to wait for, so no read ahead
        await action.next_pass()  # settled, after the quiet period: used its read
        assert (reads, action.states) == (["ns"], [None, "read #1"])
        await until(lambda: not coalescer._locks["ns"].locked())  # that pass is over

        busy["ns"] = True  # another source in flight holds the settled pass
        coalescer.schedule("ns")
        await action.next_pass()  # eager: read for itself
        await until(lambda: len(reads) == 2)  # the settled pass's read, during its wait
        coalescer.note_change("ns")  # its spec write: what was read ahead is stale
        busy["ns"] = False
        coalescer.poke("ns")
        await action.next_pass()
        assert action.states == [None, "read #1", None, None]  # it read for itself
        assert action.settled == [False, True, False, True]
        await coalescer.close()

    run(scenario())


def test_a_pass_waiting_for_another_does_not_read_ahead() -> None:
    """A trigger during a pass does not read ahead: that pass's writes would void the read.

    Deciding on it would roll (and announce) the workloads the running pass
    just rolled again, so it was never used; its LISTs only slowed the running
    pass's last writes (its status), which the waiting pass waits for.
    """

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        release = asyncio.Event()
        in_action = asyncio.Event()
        reads: list[str] = []

        def read(namespace: str) -> str:
            reads.append(namespace)
            return f"read #{len(reads)}"

        action = Recorder()
        first = True

        def blocking(namespace: str, changed_at: float, state: Any, settled: bool) -> bool:
            nonlocal first
            if first:
                first = False
                loop.call_soon_threadsafe(in_action.set)
                asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=10)
            return action(namespace, changed_at, state, settled)

        coalescer = NamespaceCoalescer(blocking, window=60.0, retry_delay=0.1, read_ahead=read)
        coalescer.schedule("ns")  # nothing to wait for: reads in its own thread
        await asyncio.wait_for(in_action.wait(), timeout=10)  # the first pass is writing
        coalescer.schedule("ns")  # say, the second source of an apply reconciled
        # It waits for the lock: past the point where it would have read ahead.
        await until(lambda: getattr(coalescer._locks["ns"], "_waiters", None))
        release.set()
        await action.next_pass()
        await action.next_pass()
        assert reads == []  # nothing read ahead while the first pass held the lock
        assert action.states == [None, None]  # both passes read for themselves
        await coalescer.close()

    run(scenario())


def test_a_failed_pass_is_retried_as_what_it_was() -> None:
    async def scenario() -> None:
        action = Recorder(fail_first=1)
        coalescer = NamespaceCoalescer(action, window=0.0, retry_delay=0.05)
        coalescer.schedule("ns")
        await action.next_pass()
        assert len(action.calls) == 1

        held = Recorder(holds=True)
        coalescer = NamespaceCoalescer(
            held, window=60.0, quiet=0.5, retry_delay=0.05, busy=lambda _: False
        )
        coalescer.note_change("ns")
        coalescer.schedule("ns")
        await held.next_pass()
        held.fail_first = 1  # the settled pass fails once, and is retried settled
        await held.next_pass()
        assert held.settled == [False, True]
        await coalescer.close()

    run(scenario())


class FakeCoalescer:
    def __init__(self) -> None:
        self.scheduled: list[str] = []
        self.changes: list[str] = []
        self.pokes: list[str] = []

    def schedule(self, namespace: str) -> None:
        self.scheduled.append(namespace)

    def note_change(self, namespace: str) -> None:
        self.changes.append(namespace)

    def poke(self, namespace: str) -> None:
        self.pokes.append(namespace)


def profile(generation: int, observed: int | None, revision: int | None, **spec: Any) -> Any:
    status = {} if observed is None else {"observedGeneration": observed, "revision": revision}
    return {"metadata": {"generation": generation}, "spec": spec, "status": status}


def test_sources_are_in_flight_until_their_generation_is_observed() -> None:
    fake = FakeCoalescer()
    in_flight: dict[str, set[tuple[str, str]]] = {}
    triggers = ReloadTriggers(fake, in_flight)
    triggers.source_seen("ConfigProfile", "ns", "p", profile(1, None, None))
    assert in_flight["ns"] == {("ConfigProfile", "p")}
    assert fake.scheduled == []
    triggers.source_seen("ConfigProfile", "ns", "p", profile(1, 1, 1))
    assert in_flight["ns"] == set()
    assert fake.scheduled == ["ns"]
    # A spec write: in flight again, and the quiet period restarts.
    triggers.source_seen("ConfigProfile", "ns", "p", profile(2, 1, 1))
    assert in_flight["ns"] == {("ConfigProfile", "p")}
    assert fake.changes == ["ns"]
    # Only a new revision or new targets schedule a pass; status.workloads does not.
    triggers.source_seen("ConfigProfile", "ns", "p", profile(2, 2, 1))
    written = profile(2, 2, 1)
    written["status"]["workloads"] = [{"kind": "Deployment", "name": "web", "revision": 1}]
    triggers.source_seen("ConfigProfile", "ns", "p", written)
    assert fake.scheduled == ["ns"]
    triggers.source_seen("ConfigProfile", "ns", "p", profile(2, 2, 2))
    assert fake.scheduled == ["ns", "ns"]
    triggers.source_deleted("ConfigProfile", "ns", "p")
    assert fake.scheduled == ["ns", "ns"]


def test_workload_events_schedule_only_what_may_matter() -> None:
    fake = FakeCoalescer()
    triggers = ReloadTriggers(fake, {})
    target = {"kind": "Deployment", "selector": {"matchLabels": {"tier": "backend"}}}
    triggers.source_seen("SealedSecret", "ns", "db", profile(1, 1, 1, reload={"targets": [target]}))
    fake.scheduled.clear()

    def deployment(labels: dict[str, str], annotations: dict[str, str] | None = None) -> Any:
        meta = {"name": "web", "labels": labels, "annotations": annotations or {}}
        return {"kind": "Deployment", "metadata": meta}

    triggers.workload_seen("ns", "u1", deployment({"tier": "frontend"}))
    assert fake.scheduled == []  # neither opted in nor targeted
    triggers.workload_seen("ns", "u1", deployment({"tier": "backend"}))
    assert fake.scheduled == ["ns"]  # became a target
    triggers.workload_seen("ns", "u1", deployment({"tier": "backend"}))
    assert fake.scheduled == ["ns"]  # nothing new
    triggers.workload_seen("other", "u2", deployment({"tier": "backend"}))
    assert fake.scheduled == ["ns"]  # the target lives in ns only
    triggers.workload_seen(
        "ns", "u1", deployment({"tier": "backend"}, {"kstrata.dev/reload-paused": "true"})
    )
    assert fake.scheduled == ["ns", "ns"]
    triggers.workload_deleted("ns", "u1")
    assert fake.scheduled == ["ns", "ns", "ns"]  # its status entry must go
    triggers.workload_deleted("other", "u2")
    assert fake.scheduled == ["ns", "ns", "ns"]


def test_passes_are_needed_only_where_something_reloads() -> None:
    fake = FakeCoalescer()
    triggers = ReloadTriggers(fake, {})
    triggers.source_seen("ConfigProfile", "ns", "p", profile(1, 1, 1))
    assert not triggers.needs_pass("ns")  # a profile nobody uses

    opted_in: Workload = {"metadata": {"name": "web", "annotations": {"kstrata.dev/reload": "p"}}}
    triggers.workload_seen("ns", "u1", opted_in)
    assert triggers.needs_pass("ns")
    assert not triggers.needs_pass("other")
    triggers.workload_seen("ns", "u1", {"metadata": {"name": "web", "annotations": {}}})
    assert not triggers.needs_pass("ns")  # opted out again

    # A source that still lists a workload in its status needs a pass to clear it.
    listing = profile(1, 1, 1)
    listing["status"]["workloads"] = [{"kind": "Deployment", "name": "web", "revision": 1}]
    triggers.source_seen("ConfigProfile", "ns", "p", listing)
    assert triggers.needs_pass("ns")
    triggers.source_seen("ConfigProfile", "ns", "p", profile(1, 1, 1))
    assert not triggers.needs_pass("ns")

    # Targets may match a workload seen before they were: always a pass.
    target = {"kind": "Deployment", "name": "web"}
    triggers.source_seen("SealedSecret", "ns", "db", profile(1, 1, 1, reload={"targets": [target]}))
    assert triggers.needs_pass("ns")
    triggers.source_deleted("SealedSecret", "ns", "db")
    assert not triggers.needs_pass("ns")

    triggers.workload_seen("ns", "u2", opted_in)
    triggers.workload_deleted("ns", "u2")
    assert not triggers.needs_pass("ns")


def test_a_reported_status_schedules_at_once_and_the_watch_adds_nothing() -> None:
    """A reconciler's own report runs the pass; the watch's late copies are old news."""

    async def scenario() -> None:
        fake = FakeCoalescer()
        in_flight: dict[str, set[tuple[str, str]]] = {}
        triggers = ReloadTriggers(fake, in_flight)
        triggers.loop = asyncio.get_running_loop()
        triggers.source_seen("ConfigProfile", "ns", "p", profile(1, 1, 1))
        triggers.source_seen("ConfigProfile", "ns", "p", profile(2, 1, 1))  # the spec write
        assert (fake.scheduled, in_flight["ns"]) == (["ns"], {("ConfigProfile", "p")})

        written = SourceStatus("ConfigProfile", "ns", "p", generation=2, revision=2, spec={})
        await asyncio.to_thread(triggers.source_reconciled, written)  # from a reconcile thread
        await asyncio.sleep(0)  # the loop runs what the thread handed over
        assert (fake.scheduled, in_flight["ns"]) == (["ns", "ns"], set())
        # Reported before the status write: a pass takes it for that generation only.
        assert triggers.reported_revision("ConfigProfile", "ns", "p", 2) == 2
        assert triggers.reported_revision("ConfigProfile", "ns", "p", 1) is None

        # The index patch made before that status: neither in flight nor new.
        triggers.source_seen("ConfigProfile", "ns", "p", profile(2, 1, 1))
        assert (fake.scheduled, in_flight["ns"]) == (["ns", "ns"], set())
        # The status itself: already known.
        triggers.source_seen("ConfigProfile", "ns", "p", profile(2, 2, 2))
        assert fake.scheduled == ["ns", "ns"]
        # Still there: a pass may have listed the old status just before it landed.
        assert triggers.reported_revision("ConfigProfile", "ns", "p", 2) == 2

        # A report overtaken by a newer spec write changes nothing.
        triggers.source_seen("ConfigProfile", "ns", "p", profile(3, 2, 2))
        stale = SourceStatus("ConfigProfile", "ns", "p", generation=2, revision=2, spec={})
        triggers.source_reconciled(stale)
        await asyncio.sleep(0)
        assert (fake.scheduled, in_flight["ns"]) == (["ns", "ns"], {("ConfigProfile", "p")})

    run(scenario())


def test_no_report_reaches_a_stopped_loop() -> None:
    fake = FakeCoalescer()
    triggers = ReloadTriggers(fake, {})
    report = SourceStatus("ConfigProfile", "ns", "p", 1, 1, {})
    triggers.source_reconciled(report)  # before start-up: no loop yet
    closed = asyncio.new_event_loop()
    closed.close()
    triggers.loop = closed
    triggers.source_reconciled(report)  # at shutdown: must not fail the reconcile
    assert fake.scheduled == []


#: A workload that follows a plain ConfigMap and a plain Secret (one change set: one rollout).
PAIR: Workload = {
    "kind": "Deployment",
    "metadata": {
        "name": "pair",
        "annotations": {"kstrata.dev/reload": "configmap/cfg,secret/creds"},
    },
}


def test_a_secret_being_read_is_in_flight_and_its_change_counts_from_its_announcement() -> None:
    fake = FakeCoalescer()
    in_flight: dict[str, set[tuple[str, str]]] = {}
    triggers = ReloadTriggers(fake, in_flight)
    triggers.workload_seen("ns", "u1", PAIR)
    fake.scheduled.clear()

    triggers.plain_reading("Secret", "ns", "other", True)  # followed by nobody
    assert (in_flight["ns"], fake.changes) == (set(), [])
    triggers.plain_reading("Secret", "ns", "creds", True)  # the metadata watch's event
    assert (in_flight["ns"], fake.changes) == ({("Secret", "creds")}, ["ns"])
    triggers.plain_seen("Secret", "ns", "creds", {"data": {"token": "dg=="}})  # the GET's answer
    # A pass for it; the quiet period already counts from the announcement.
    assert (fake.scheduled, fake.changes) == (["ns"], ["ns"])
    assert in_flight["ns"] == {("Secret", "creds")}  # until the read is over
    triggers.plain_reading("Secret", "ns", "creds", False)
    assert (in_flight["ns"], fake.pokes) == (set(), ["ns"])  # a waiting pass looks again

    # A ConfigMap's watch event carries its data: its change counts from there.
    triggers.plain_seen("ConfigMap", "ns", "cfg", {"data": {"v": "1"}})
    assert (fake.scheduled, fake.changes) == (["ns", "ns"], ["ns", "ns"])


def test_a_change_set_waits_for_a_secret_read_that_is_still_out() -> None:
    """A ConfigMap's change, then a Secret's announced within the quiet period: what was
    held is decided only once the Secret's read is back, however long after the quiet
    period (under load, the GET's own latency used to split such a change set in two)."""

    async def scenario() -> None:
        action = Recorder(holds=True)
        in_flight: dict[str, set[tuple[str, str]]] = {}
        coalescer = NamespaceCoalescer(
            action,
            window=60.0,
            quiet=0.1,
            retry_delay=0.1,
            busy=lambda namespace: bool(in_flight.get(namespace)),
        )
        triggers = ReloadTriggers(coalescer, in_flight)
        triggers.workload_seen("ns", "u1", PAIR)
        await action.next_pass()  # first sight
        triggers.plain_seen("ConfigMap", "ns", "cfg", {"data": {"v": "1"}})
        await action.next_pass()  # eager, not settled: holds the pair
        triggers.plain_reading("Secret", "ns", "creds", True)
        await asyncio.sleep(0.4)  # four quiet periods: the read is still out
        assert action.settled == [True, False]
        triggers.plain_seen("Secret", "ns", "creds", {"data": {"token": "dg=="}})
        triggers.plain_reading("Secret", "ns", "creds", False)
        await action.next_pass()
        await action.next_pass()
        # Both passes after the read decide on the whole change set, settled.
        assert action.settled == [True, False, True, True]

        # A read that fails ends the wait too, at once (not at the 60 s window).
        triggers.plain_seen("ConfigMap", "ns", "cfg", {"data": {"v": "2"}})
        await action.next_pass()
        triggers.plain_reading("Secret", "ns", "creds", True)
        await asyncio.sleep(0.3)
        assert action.settled == [True, False, True, True, False]
        triggers.plain_reading("Secret", "ns", "creds", False)
        await action.next_pass()
        assert action.settled[-1] is True
        await coalescer.close()

    run(scenario())
