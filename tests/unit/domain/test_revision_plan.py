"""``plan_revision``, the pure decision of revision bookkeeping, against a model of the cluster.

The model keeps what the operator writes (ControllerRevisions by number, the
served object's revision label and digest, the status, the index
annotations) and runs a plan the way ``kstrata.app.revisions`` does: it
answers lookups, creates snapshots (a taken name is a 409), and writes the
steps in order, optionally dying after any of them; for a SealedSecret (no
digests in its index, and here no hints) it has to read.  Hypothesis drives it
through content changes, changes back, lowered and raised limits and
crashes; the properties are the module's promises: numbers never go back,
repeat or skip, pruning keeps the served revision and the configured
history, the index names what is kept, and a plan replayed on its own result
is empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from kstrata.domain.revisions import (
    HistoryEntry,
    ListRevisions,
    LostRace,
    Prune,
    ReadRevision,
    RevisionFacts,
    RevisionPlan,
    Serve,
    Snapshot,
    StoreSnapshot,
    WriteIndex,
    decode_history,
    decode_snapshot,
    encode_history,
    encode_snapshot,
    plan_revision,
    retained_numbers,
    short_digest,
)
from kstrata.wellknown import CHANGE_CAUSE_ANNOTATION, HISTORY_ANNOTATION, REVISION_ANNOTATION

NOW = "2026-12-02T12:00:00Z"


def digest_of(content: int) -> str:
    return "sha256:" + hashlib.sha256(str(content).encode()).hexdigest()


class Died(Exception):
    """The operator died between two writes."""


@dataclass
class Cluster:
    """What the operator wrote for one ConfigProfile or SealedSecret."""

    #: A SealedSecret's index carries no digests, and its hints here none either
    #: (its Secret deleted by hand): the plan has to read the current revision.
    kind: str = "ConfigProfile"

    stored: dict[int, object] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    #: The ConfigMap's revision label and data digest; the status's revision and digest.
    target: tuple[int, str] | None = None
    status: tuple[int, str] | None = None
    #: Every number ever created, in order (a create of a taken name fails).
    created: list[int] = field(default_factory=list)

    def facts(self, content: int, limit: int) -> RevisionFacts:
        hints: list[tuple[int, str | None]] = []
        if self.kind == "ConfigProfile" and self.status is not None:
            hints.append(self.status)
        if self.kind == "ConfigProfile" and self.target is not None:
            hints.append(self.target)
        hints.append((self.status[0] if self.status else 0, None))
        return RevisionFacts(
            kind=self.kind,
            digest=digest_of(content),
            limit=limit,
            annotations=dict(self.annotations),
            hints=tuple(hints),
            now=NOW,
        )

    def decide(self, facts: RevisionFacts) -> RevisionPlan | LostRace:
        """``plan_revision``, its lookups answered from what is stored (reads, no writes)."""
        for _ in range(5):
            plan = plan_revision(facts)
            if isinstance(plan, ReadRevision):
                facts = replace(
                    facts, read={**facts.read, plan.number: self.stored.get(plan.number)}
                )
            elif isinstance(plan, ListRevisions):
                facts = replace(facts, stored=dict(self.stored))
            else:
                return plan
        raise AssertionError("the plan kept asking")

    def reconcile(self, content: int, limit: int, die_after: int | None = None) -> RevisionPlan:
        """Run the app's loop on the model; ``die_after``: writes done before dying."""
        facts = self.facts(content, limit)
        writes = 0

        def write() -> None:
            nonlocal writes
            if die_after is not None and writes >= die_after:
                raise Died
            writes += 1

        for _ in range(10):
            plan = self.decide(facts)
            assert not isinstance(plan, LostRace), "one writer never loses a race"
            store = next((s for s in plan.steps if isinstance(s, StoreSnapshot)), None)
            if store is not None and store.number in self.stored:
                taken = {**facts.taken, store.number: self.stored[store.number]}
                facts = replace(facts, taken=taken)
                continue
            self.run(plan, content, write)
            return plan
        raise AssertionError("the plan never settled")

    def run(self, plan: RevisionPlan, content: int, write: Callable[[], None]) -> None:
        for step in plan.steps:
            if isinstance(step, StoreSnapshot):
                write()
                snapshot = Snapshot(
                    kind=self.kind,
                    number=step.number,
                    spec={"content": content},
                    environment="dev",
                    rendered={"config": str(content)},
                    fingerprints={},
                    digest=digest_of(content),
                    change_cause=step.change_cause,
                    created=step.created,
                )
                self.stored[step.number] = encode_snapshot(snapshot)
                self.created.append(step.number)
            elif isinstance(step, Serve):
                write()
                self.target = (step.number, digest_of(content))
                write()
                self.status = (step.number, digest_of(content))
            elif isinstance(step, Prune):
                for number in step.numbers:
                    write()
                    self.stored.pop(number, None)
            else:
                write()
                self.annotations.update(step.annotations)


#: One reconcile: (content, history limit, writes before dying or None).
Reconcile = tuple[int, int, int | None]

reconciles = st.lists(
    st.tuples(
        st.integers(0, 4),  # few contents, so changes back to earlier content happen
        st.integers(1, 4),
        st.one_of(st.none(), st.integers(0, 6)),
    ),
    min_size=1,
    max_size=25,
)


kinds = st.sampled_from(["ConfigProfile", "SealedSecret"])


def drive(script: list[Reconcile], kind: str) -> Cluster:
    """Run ``script``, then one uninterrupted reconcile of its last content; check each plan."""
    cluster = Cluster(kind=kind)
    served = 0
    for content, limit, die_after in [*script, (script[-1][0], script[-1][1], None)]:
        try:
            plan = cluster.reconcile(content, limit, die_after)
        except Died:
            continue
        check_plan(cluster, plan, served, limit)
        served = plan.number
    return cluster


def check_plan(cluster: Cluster, plan: RevisionPlan, served: int, limit: int) -> None:
    # Numbers never go back, and a new one is the next one: no repeat, no skip.
    assert plan.number >= served
    assert cluster.created == list(range(1, len(cluster.created) + 1))
    assert plan.number in cluster.stored, "a served number always has its snapshot"
    stored = decode_snapshot(cluster.stored[plan.number], plan.number)
    assert cluster.target is not None
    assert stored.digest == cluster.target[1]
    # Pruning keeps the served revision and the configured history.
    keep = retained_numbers(plan.number, limit)
    for step in plan.steps:
        if isinstance(step, Prune):
            assert all(n < keep.start for n in step.numbers), (step.numbers, plan.number, limit)
    # The index names the revision and every kept snapshot (pruning goes by
    # it), and nothing beyond the limit.  It may name a kept number whose
    # snapshot a prune deleted just before a crash (the index is written
    # after the prune), until that number leaves the window.
    assert cluster.annotations[REVISION_ANNOTATION] == str(plan.number)
    index = {e.number for e in decode_history(cluster.annotations[HISTORY_ANNOTATION])}
    assert {n for n in cluster.stored if n in keep} <= index <= set(keep)
    # The steps come in the crash-safe order.
    kinds = [step.kind for step in plan.steps]
    assert kinds == sorted(kinds, key=["store", "serve", "prune", "index"].index)


@settings(max_examples=500, deadline=None)
@given(reconciles, kinds)
def test_numbers_never_go_back_repeat_or_skip_and_pruning_keeps_the_history(
    script: list[Reconcile], kind: str
) -> None:
    cluster = drive(script, kind)
    # Everything stored is named by the index or is the unserved leftover of a
    # crash between the snapshot and the served object (above the served number).
    assert cluster.target is not None
    index = {e.number for e in decode_history(cluster.annotations[HISTORY_ANNOTATION])}
    assert all(n in index or n > cluster.target[0] for n in cluster.stored)


@settings(max_examples=500, deadline=None)
@given(reconciles, kinds)
def test_a_plan_replayed_on_its_own_result_is_empty(script: list[Reconcile], kind: str) -> None:
    cluster = drive(script, kind)
    content, limit, _ = script[-1]
    again = cluster.decide(cluster.facts(content, limit))
    assert isinstance(again, RevisionPlan)
    assert cluster.target is not None
    assert (again.number, again.new, again.steps) == (
        cluster.target[0],
        False,
        (Serve(cluster.target[0]),),
    )


@given(st.integers(1, 100), st.integers(1, 100))
def test_a_steady_state_needs_no_lookup_and_writes_nothing(number: int, limit: int) -> None:
    """What a restart of the operator costs: one decision, no API call, no write."""
    digest = digest_of(number)
    keep = retained_numbers(number, limit)
    entries = [HistoryEntry(n, NOW, "", short_digest(digest_of(n))) for n in keep]
    annotations = {
        REVISION_ANNOTATION: str(number),
        HISTORY_ANNOTATION: encode_history(entries, limit=limit + 1),
    }
    facts = RevisionFacts("ConfigProfile", digest, limit, annotations, ((number, digest),), NOW)
    assert plan_revision(facts) == RevisionPlan(number, False, (Serve(number),))


def test_a_new_revision_with_a_complete_index_is_planned_without_a_lookup() -> None:
    entries = [(n, digest_of(n)) for n in (1, 2, 3)]
    annotations = {
        REVISION_ANNOTATION: "3",
        HISTORY_ANNOTATION: encode_history(
            [HistoryEntry(n, NOW, "", short_digest(d)) for n, d in entries]
        ),
        CHANGE_CAUSE_ANNOTATION: "kstrata set port=443",
    }
    facts = RevisionFacts("ConfigProfile", digest_of(4), 2, annotations, ((3, None),), NOW)
    plan = plan_revision(facts)
    assert isinstance(plan, RevisionPlan)
    assert (plan.number, plan.new) == (4, True)
    assert [step.kind for step in plan.steps] == ["store", "serve", "prune", "index"]
    assert plan.steps[0] == StoreSnapshot(4, "kstrata set port=443", NOW)
    assert plan.steps[2] == Prune((1,))
    index = plan.steps[3]
    assert isinstance(index, WriteIndex)
    assert [e.number for e in decode_history(index.annotations[HISTORY_ANNOTATION])] == [2, 3, 4]
    assert plan.after_serve() == plan.steps[2:]


def test_a_listed_plan_drops_index_entries_whose_snapshots_are_gone() -> None:
    """A prune interrupted before the index leaves it naming a deleted revision.

    Once the revisions are listed anyway, the index is rewritten from what is
    stored: revision 1 (pruned, then the limit raised) is named no more.
    """

    def data(number: int) -> object:
        snapshot = Snapshot("ConfigProfile", number, {}, "dev", {}, {}, digest_of(number), "", NOW)
        return encode_snapshot(snapshot)

    annotations = {
        REVISION_ANNOTATION: "2",
        HISTORY_ANNOTATION: encode_history(
            [HistoryEntry(n, NOW, "", short_digest(digest_of(n))) for n in (1, 2)]
        ),
    }
    facts = RevisionFacts(
        "ConfigProfile",
        digest_of(3),
        3,
        annotations,
        ((3, digest_of(3)),),
        NOW,
        stored={2: data(2), 3: data(3)},
    )
    plan = plan_revision(facts)
    assert isinstance(plan, RevisionPlan)
    index = plan.steps[-1]
    assert isinstance(index, WriteIndex)
    assert [e.number for e in decode_history(index.annotations[HISTORY_ANNOTATION])] == [2, 3]


def test_a_number_another_writer_took_with_other_content_is_a_lost_race() -> None:
    """Listed, planned N+1, and the create met N+1 with other content: retry, never N+2 now."""

    def data(number: int, content: int) -> object:
        snapshot = Snapshot("SealedSecret", number, {}, "dev", {}, {}, digest_of(content), "", NOW)
        return encode_snapshot(snapshot)

    annotations = {
        REVISION_ANNOTATION: "1",
        HISTORY_ANNOTATION: encode_history([HistoryEntry(1, NOW, "", None)]),
    }
    facts = RevisionFacts(
        "SealedSecret",
        digest_of(2),
        10,
        annotations,
        ((1, digest_of(1)),),
        NOW,
        stored={1: data(1, 1)},
    )
    assert plan_revision(facts) == RevisionPlan(
        2,
        True,
        (
            StoreSnapshot(2, "", NOW),
            Serve(2),
            WriteIndex(
                2,
                {
                    REVISION_ANNOTATION: "2",
                    HISTORY_ANNOTATION: encode_history(
                        [HistoryEntry(1, NOW, "", None), HistoryEntry(2, NOW, "", None)]
                    ),
                },
            ),
        ),
    )
    raced = replace(facts, taken={2: data(2, 3)})
    assert plan_revision(raced) == LostRace(2)
    # The same content there is an earlier attempt of ours: reused, not stored again.
    resumed = replace(facts, taken={2: data(2, 2)})
    plan = plan_revision(resumed)
    assert isinstance(plan, RevisionPlan)
    assert (plan.number, plan.new, [step.kind for step in plan.steps]) == (
        2,
        True,
        ["serve", "index"],
    )
