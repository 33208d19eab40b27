"""Which rollouts wait for the rest of a change set: only those of workloads following several.

One ``kubectl apply -f dir/`` may change several sources, and the operator
sees them one after the other.  A pass that runs before the namespace has
settled rolls every workload that follows one source and holds the others;
the settled pass that follows rolls those once.  Driven on the fake API of
support.fake_api.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kstrata.app.reloads import ReloadReconciler
from kstrata.domain.reload_decision import Decision, waits_for_change_set
from kstrata.kube.api import EVENTS
from support.fake_api import FakeApi
from support.reload_objects import source, workload

SOURCES = ("payments", "db", "cache")


def rollouts(api: FakeApi) -> dict[str, int]:
    """Pod-template patches per workload: each one is a rollout."""
    counted: dict[str, int] = {}
    for plural, _, name, subresource, patch in api.patches:
        if plural == "deployments" and subresource is None and "spec" in patch:
            counted[name] = counted.get(name, 0) + 1
    return counted


def namespace(followers: dict[str, tuple[str, ...]]) -> dict[tuple[str, str, str], Any]:
    """Sources at revision 1 and Deployments that follow them and already record it."""
    objects: dict[tuple[str, str, str], Any] = {
        ("configprofiles", "ns", name): source("ConfigProfile", name, "ns", 1, [])
        for name in SOURCES
    }
    for name, follows in followers.items():
        record = ",".join(f"{s}=1" for s in sorted(follows))
        annotations = {"kstrata.dev/reload": ",".join(follows), "kstrata.dev/revisions": record}
        objects[("deployments", "ns", name)] = workload(name, annotations=annotations)
    return objects


def test_only_rollouts_of_workloads_following_several_sources_wait() -> None:
    one = {"payments": ("ConfigProfile", "payments")}
    two = {**one, "db": ("SealedSecret", "db")}
    assert not waits_for_change_set(Decision("rollout"), one)
    assert waits_for_change_set(Decision("rollout"), two)
    for action in ("record", "paused", "unchanged", "skip", "ignore"):
        assert not waits_for_change_set(Decision(action), two)
    # The same name as a profile and as a sealed secret: two sources.
    same = {"db": ("ConfigProfile", "db"), "secret:db": ("SealedSecret", "db")}
    assert waits_for_change_set(Decision("rollout"), same)


def test_a_change_set_rolls_single_source_workloads_at_once_and_the_others_once() -> None:
    objects = namespace({"single": ("payments",), "both": ("payments", "db")})
    api = FakeApi(objects)
    reconciler = ReloadReconciler(api)

    # The profile of the apply is reconciled; the secret is not written yet.
    objects[("configprofiles", "ns", "payments")]["status"]["revision"] = 2
    outcome = reconciler.reconcile_namespace("ns", settled=False)
    assert (outcome.rolled, outcome.held) == (("Deployment/single",), ("Deployment/both",))
    both = objects[("deployments", "ns", "both")]
    assert both["metadata"]["annotations"]["kstrata.dev/revisions"] == "db=1,payments=1"
    assert both["spec"]["template"]["metadata"] == {}
    # The status tells the truth meanwhile: 'both' still runs revision 1.
    assert objects[("configprofiles", "ns", "payments")]["status"]["workloads"] == [
        {"kind": "Deployment", "name": "both", "revision": 1},
        {"kind": "Deployment", "name": "single", "revision": 2},
    ]

    # The secret arrives; the namespace settles; one rollout carries both.
    objects[("configprofiles", "ns", "db")]["status"]["revision"] = 2
    outcome = reconciler.reconcile_namespace("ns", settled=True)
    assert (outcome.rolled, outcome.held) == (("Deployment/both",), ())
    both = objects[("deployments", "ns", "both")]  # a write stores a new object, as the API does
    assert both["spec"]["template"]["metadata"]["annotations"] == {
        "kstrata.dev/revisions": "db=2,payments=2"
    }
    assert rollouts(api) == {"single": 1, "both": 1}
    assert [e["reason"] for e in api.list(EVENTS, "ns")] == ["RollingRestart", "RollingRestart"]


followers = st.dictionaries(
    st.sampled_from([f"w{n}" for n in range(6)]),
    st.lists(st.sampled_from(SOURCES), min_size=1, max_size=3, unique=True).map(tuple),
    min_size=1,
    max_size=6,
)


# Each example runs a few passes, with a thread pool for their patches: no per-example deadline.
@settings(deadline=None, max_examples=60)
@given(
    followed=followers,
    changed=st.lists(st.sampled_from(SOURCES), min_size=1, max_size=3, unique=True),
    eager_passes=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_one_change_set_rolls_each_workload_once_however_the_passes_fall(
    followed: dict[str, tuple[str, ...]], changed: list[str], eager_passes: list[bool]
) -> None:
    """Sources of one apply reconciled one by one, an eager pass after any of them, then
    the settled pass: every workload that follows a changed source rolls exactly once, to
    the new revisions; one that follows a single source rolls in the first pass after it."""
    objects = namespace(followed)
    api = FakeApi(objects)
    reconciler = ReloadReconciler(api)
    for name, eager in zip(changed, eager_passes, strict=False):
        objects[("configprofiles", "ns", name)]["status"]["revision"] = 2
        if eager:
            outcome = reconciler.reconcile_namespace("ns", settled=False)
            for label in outcome.rolled:
                assert len(followed[label.removeprefix("Deployment/")]) == 1
            for workload_name, follows in followed.items():
                if follows == (name,):
                    assert rollouts(api).get(workload_name) == 1  # it did not wait
    reconciler.reconcile_namespace("ns", settled=True)

    expected = {w: 1 for w, follows in followed.items() if set(follows) & set(changed)}
    assert rollouts(api) == expected
    for workload_name, follows in followed.items():
        record = objects[("deployments", "ns", workload_name)]["metadata"]["annotations"]
        revisions = {s: 2 if s in changed else 1 for s in follows}
        assert record["kstrata.dev/revisions"] == ",".join(
            f"{s}={revisions[s]}" for s in sorted(revisions)
        )
    # A further pass finds nothing to do.
    api.patches.clear()
    assert reconciler.reconcile_namespace("ns", settled=False).held == ()
    assert rollouts(api) == {}


def test_a_revision_reported_before_its_status_write_rolls_at_once() -> None:
    """The profile reconciler reports once its ConfigMap serves, then writes the status.

    A pass that lists the profile in between sees the old status: it takes
    the reported revision for that generation (and only for it), so the
    rollout does not wait for the status write.
    """
    objects = namespace({"single": ("payments",)})
    payments = objects[("configprofiles", "ns", "payments")]
    payments["metadata"]["generation"] = 2
    payments["status"]["observedGeneration"] = 1  # the status write is still on its way
    reported = {("ConfigProfile", "ns", "payments", 2): 2}
    api = FakeApi(objects)

    stale = ReloadReconciler(api, reported_revision=lambda *key: reported.get(key))
    reported_for_an_older_spec = {("ConfigProfile", "ns", "payments", 1): 2}
    older = ReloadReconciler(
        api,
        reported_revision=lambda *key: reported_for_an_older_spec.get(key),
    )
    assert older.reconcile_namespace("ns").rolled == ()
    assert stale.reconcile_namespace("ns").rolled == ("Deployment/single",)
    record = objects[("deployments", "ns", "single")]["metadata"]["annotations"]
    assert record["kstrata.dev/revisions"] == "payments=2"

    # The status lands; the report is gone by then: nothing rolls again.
    objects[("configprofiles", "ns", "payments")]["status"].update(observedGeneration=2, revision=2)
    assert ReloadReconciler(api).reconcile_namespace("ns").rolled == ()
    assert rollouts(api) == {"single": 1}
