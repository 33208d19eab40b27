"""spec.reload.targets and status.workloads: the pure rules and one pass over a fake API."""

from __future__ import annotations

import copy
import threading

from hypothesis import given
from hypothesis import strategies as st

from kstrata.app.reloads import ReloadReconciler
from kstrata.domain.reload_decision import (
    Decision,
    Sources,
    Target,
    decide,
    dependencies,
    effective_record,
    parse_targets,
    workload_statuses,
)
from kstrata.errors import InvalidInputError
from kstrata.kube.api import EVENTS, MERGE_PATCH, P, Patch, Resource
from support.fake_api import FakeApi
from support.reload_objects import source, workload


def test_parse_targets_keeps_well_formed_entries_only() -> None:
    spec = {
        "reload": {
            "targets": [
                {"kind": "Deployment", "name": "web"},
                {"kind": "DaemonSet", "selector": {"matchLabels": {"tier": "edge"}}},
                {"kind": "CronJob", "name": "nightly"},
                {"kind": "ReplicaSet", "name": "rs"},  # not a workload kstrata rolls
                {"name": "kindless"},
                {"kind": "Deployment"},  # neither name nor selector
                {"kind": "Deployment", "name": "both", "selector": {"matchLabels": {"a": "b"}}},
                {"kind": "Deployment", "selector": {"matchLabels": {}}},  # would match all
                {"kind": "Deployment", "selector": {"matchLabels": {"a": 1}}},
                "junk",
            ]
        }
    }
    assert parse_targets(spec) == (
        Target("Deployment", name="web"),
        Target("DaemonSet", match_labels={"tier": "edge"}),
        Target("CronJob", name="nightly"),
    )
    empties: list[object] = [None, {}, {"reload": None}, {"reload": {"targets": "web"}}, []]
    for empty in empties:
        assert parse_targets(empty) == ()


def test_a_target_matches_by_kind_and_name_or_all_selector_labels() -> None:
    by_name = Target("Deployment", name="web")
    assert by_name.matches(workload("web"))
    assert not by_name.matches(workload("web", kind="StatefulSet"))
    assert not by_name.matches(workload("api"))
    selector = Target("Deployment", match_labels={"tier": "backend", "team": "pay"})
    assert selector.matches(workload(labels={"tier": "backend", "team": "pay", "x": "y"}))
    assert not selector.matches(workload(labels={"tier": "backend"}))
    assert not selector.matches(workload(labels={"tier": "backend", "team": "other"}))


def sources(**targets: tuple[Target, ...]) -> Sources:
    return Sources(
        profiles={"payments": 7, "app": 2},
        sealed_secrets={"db": 3, "app": 5},
        profile_targets={k: v for k, v in targets.items() if k in ("payments", "app")},
        sealed_targets={k.removeprefix("s_"): v for k, v in targets.items() if k.startswith("s_")},
    )


def test_targeted_workloads_opt_in_without_an_annotation() -> None:
    found = sources(payments=(Target("Deployment", name="web"),))
    assert dependencies(workload("api"), found) is None
    assert decide(workload("api"), found).action == "ignore"
    assert dependencies(workload("web"), found) == {"payments": ("ConfigProfile", "payments")}
    first = decide(workload("web"), found)
    assert (first.action, first.desired) == ("record", "payments=7")
    recorded = workload("web", annotations={"kstrata.dev/revisions": "payments=6"})
    rolled = decide(recorded, found)
    assert (rolled.action, dict(rolled.changed)) == ("rollout", {"payments": (6, 7)})


def test_the_workloads_own_strategy_and_pause_still_decide() -> None:
    found = sources(s_db=(Target("Deployment", match_labels={"tier": "backend"}),))
    base = {"kstrata.dev/revisions": "db=2"}
    labels = {"tier": "backend"}
    for strategy, action in (("hot", "sync-pods"), ("none", "skip")):
        annotations = dict(base, **{"kstrata.dev/reload-strategy": strategy})
        assert decide(workload(annotations=annotations, labels=labels), found).action == action
    paused = dict(base, **{"kstrata.dev/reload-paused": "true"})
    assert decide(workload(annotations=paused, labels=labels), found).action == "paused"
    assert decide(workload(annotations=base, labels=labels), found).action == "rollout"


def test_annotation_and_targets_add_up_and_same_names_stay_apart() -> None:
    found = sources(s_app=(Target("Deployment", name="web"),))
    w = workload("web", annotations={"kstrata.dev/reload": "payments,app"})
    assert dependencies(w, found) == {
        "payments": ("ConfigProfile", "payments"),
        "app": ("ConfigProfile", "app"),
        "secret:app": ("SealedSecret", "app"),
    }
    targeted_only = dependencies(workload("web"), found)
    assert targeted_only == {"app": ("SealedSecret", "app")}


def test_status_lists_rolling_workloads_with_their_recorded_revision() -> None:
    found = {"payments": ("ConfigProfile", "payments"), "db": ("SealedSecret", "db")}
    evaluated = [
        (workload("web"), Decision("rollout", desired="db=3,payments=7"), found),
        (
            workload("agent", kind="DaemonSet"),
            Decision("unchanged", recorded="db=3,payments=7"),
            found,
        ),
        (
            workload("held"),
            Decision("paused", desired="db=3,payments=7", recorded="payments=5"),
            found,
        ),
        (workload("hot"), Decision("skip", strategy="hot"), found),
        (workload("odd"), Decision("ignore", strategy="bogus"), found),
    ]
    statuses = workload_statuses(evaluated)
    assert statuses[("ConfigProfile", "payments")] == [
        {"kind": "DaemonSet", "name": "agent", "revision": 7},
        {"kind": "Deployment", "name": "held", "revision": 5},
        {"kind": "Deployment", "name": "web", "revision": 7},
    ]
    # "held" records no db revision yet: listed, without a number.
    assert statuses[("SealedSecret", "db")][1] == {"kind": "Deployment", "name": "held"}


revision_maps = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 4), max_size=3)


@given(
    before=revision_maps,
    after=revision_maps,
    annotated=st.booleans(),
    targeted=st.booleans(),
    paused=st.booleans(),
)
def test_carrying_out_a_decision_leaves_nothing_to_do(
    before: dict[str, int], after: dict[str, int], annotated: bool, targeted: bool, paused: bool
) -> None:
    """No rollout loop: after the write the same sources decide 'unchanged' (or stay paused),
    and a first sight never rolls."""
    targets = {name: (Target("Deployment", name="web"),) for name in after} if targeted else {}
    annotations = {"kstrata.dev/reload": "a,b,c"} if annotated else {}
    if paused:
        annotations["kstrata.dev/reload-paused"] = "true"
    now = Sources(profiles=after, profile_targets=targets)
    w = workload("web", annotations=annotations)
    first = decide(w, now)
    assert first.action in ("ignore", "record")
    for old in (before, after):
        current = copy.deepcopy(w)
        current["metadata"]["annotations"]["kstrata.dev/revisions"] = ",".join(
            f"{k}={v}" for k, v in sorted(old.items())
        )
        decision = decide(current, now)
        record = effective_record(decision)
        if record is None:
            assert decision.action == "ignore"
            continue
        current["metadata"]["annotations"]["kstrata.dev/revisions"] = record
        again = decide(current, now)
        assert again.action in ("unchanged", "paused")
        assert again.action == "paused" or decision.action != "paused"


def test_a_pass_rolls_targets_writes_status_once_and_stays_in_its_namespace() -> None:
    target = [{"kind": "Deployment", "name": "web"}]
    objects = {
        ("configprofiles", "ns", "payments"): source("ConfigProfile", "payments", "ns", 1, target),
        ("deployments", "ns", "web"): workload("web"),
        ("deployments", "ns", "api"): workload("api"),
        ("deployments", "other", "web"): dict(
            workload("web"), metadata={"name": "web", "namespace": "other"}
        ),
    }
    api = FakeApi(objects)
    reconciler = ReloadReconciler(api)
    outcome = reconciler.reconcile_namespace("ns")
    assert (outcome.recorded, outcome.rolled, outcome.statuses) == (
        ("Deployment/web",),
        (),
        ("ConfigProfile/payments",),
    )
    assert objects[("configprofiles", "ns", "payments")]["status"]["workloads"] == [
        {"kind": "Deployment", "name": "web", "revision": 1}
    ]
    # Replaying the pass writes nothing at all: no record, no status, no event.
    api.patches.clear()
    assert reconciler.reconcile_namespace("ns").statuses == ()
    assert api.patches == []

    objects[("configprofiles", "ns", "payments")]["status"]["revision"] = 2
    outcome = reconciler.reconcile_namespace("ns")
    assert outcome.rolled == ("Deployment/web",)
    web = objects[("deployments", "ns", "web")]
    assert web["spec"]["template"]["metadata"]["annotations"] == {
        "kstrata.dev/revisions": "payments=2"
    }
    assert [e["reason"] for e in api.list(EVENTS, "ns")] == ["RollingRestart"]
    assert objects[("configprofiles", "ns", "payments")]["status"]["workloads"][0]["revision"] == 2
    assert all(ns == "ns" for _, ns, *_ in api.patches)
    assert objects[("deployments", "other", "web")]["metadata"].get("annotations") is None
    assert objects[("deployments", "ns", "api")]["metadata"]["annotations"] == {}

    # Dropping the target empties the status (the record stays: it is harmless).
    objects[("configprofiles", "ns", "payments")]["spec"] = {}
    assert reconciler.reconcile_namespace("ns").statuses == ("ConfigProfile/payments",)
    assert "workloads" not in objects[("configprofiles", "ns", "payments")]["status"]


class RefusingApi(FakeApi):
    """The apiserver refuses patches of one workload (422): its own spec is broken."""

    def patch(
        self,
        resource: Resource[P],
        namespace: str | None,
        name: str,
        patch: Patch,
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> P:
        if name == "broken":
            raise InvalidInputError("patch Deployment ns/broken: rejected by the API server")
        return super().patch(resource, namespace, name, patch, subresource=subresource)


def test_one_refused_workload_does_not_hold_the_others() -> None:
    reload = {"kstrata.dev/reload": "payments", "kstrata.dev/revisions": "payments=1"}
    objects = {
        ("configprofiles", "ns", "payments"): source("ConfigProfile", "payments", "ns", 2, []),
        ("deployments", "ns", "broken"): workload("broken", annotations=dict(reload)),
        ("deployments", "ns", "web"): workload("web", annotations=dict(reload)),
    }
    api = RefusingApi(objects)
    outcome = ReloadReconciler(api).reconcile_namespace("ns")
    assert outcome.rolled == ("Deployment/web",)
    assert objects[("deployments", "ns", "broken")]["spec"]["template"]["metadata"] == {}
    # The status still says where each one is: broken behind, web current.
    assert objects[("configprofiles", "ns", "payments")]["status"]["workloads"] == [
        {"kind": "Deployment", "name": "broken", "revision": 1},
        {"kind": "Deployment", "name": "web", "revision": 2},
    ]


class MeetingApi(FakeApi):
    """A rollout's Event and a status write each wait (bounded) for the other to start."""

    def __init__(self, objects: dict[tuple[str, str, str], dict[str, object]]) -> None:
        super().__init__(objects)
        self.meeting = threading.Barrier(2, timeout=5)

    def create(self, resource: Resource[P], namespace: str | None, body: P) -> P:
        if resource is EVENTS:
            self.meeting.wait()
        return super().create(resource, namespace, body)

    def patch(
        self,
        resource: Resource[P],
        namespace: str | None,
        name: str,
        patch: Patch,
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> P:
        if subresource == "status":
            self.meeting.wait()
        return super().patch(resource, namespace, name, patch, subresource=subresource)


def test_the_rollout_event_and_the_status_write_are_in_flight_together() -> None:
    """The pass's tail is one round trip, not two: a change arriving meanwhile waits for it.

    One after the other, the first of the two would wait for the second in
    vain (the barrier breaks after its timeout and the pass fails).
    """
    target = [{"kind": "Deployment", "name": "web"}]
    objects = {
        ("configprofiles", "ns", "payments"): source("ConfigProfile", "payments", "ns", 2, target),
        ("deployments", "ns", "web"): workload(
            "web", annotations={"kstrata.dev/revisions": "payments=1"}
        ),
    }
    api = MeetingApi(objects)
    outcome = ReloadReconciler(api).reconcile_namespace("ns")
    assert (outcome.rolled, outcome.statuses) == (("Deployment/web",), ("ConfigProfile/payments",))
    assert [e["reason"] for e in api.list(EVENTS, "ns")] == ["RollingRestart"]
    assert objects[("configprofiles", "ns", "payments")]["status"]["workloads"] == [
        {"kind": "Deployment", "name": "web", "revision": 2}
    ]


class EventRefusingApi(FakeApi):
    """The apiserver refuses every Event (422): the rollout's announcement cannot be posted."""

    def create(self, resource: Resource[P], namespace: str | None, body: P) -> P:
        if resource is EVENTS:
            raise InvalidInputError("create Event ns/web: rejected by the API server")
        return super().create(resource, namespace, body)


def test_a_refused_rollout_event_does_not_fail_the_pass() -> None:
    """The Event is best effort (as ``post_event`` is for cluster errors): the status is written."""
    target = [{"kind": "Deployment", "name": "web"}]
    objects = {
        ("configprofiles", "ns", "payments"): source("ConfigProfile", "payments", "ns", 2, target),
        ("deployments", "ns", "web"): workload(
            "web", annotations={"kstrata.dev/revisions": "payments=1"}
        ),
    }
    outcome = ReloadReconciler(EventRefusingApi(objects)).reconcile_namespace("ns")
    assert (outcome.rolled, outcome.statuses) == (("Deployment/web",), ("ConfigProfile/payments",))
    assert objects[("configprofiles", "ns", "payments")]["status"]["workloads"] == [
        {"kind": "Deployment", "name": "web", "revision": 2}
    ]
