"""Reloader parity, pure parts: the annotation grammar, Reloader's semantics, the
translation ``kstrata migrate reloader`` prints, plain-source decisions, CronJob
templates, keyed source fingerprints and the watch filter for plain sources."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

import pytest

from kstrata.app.reload_scheduling import ReloadTriggers
from kstrata.app.reloads import PlainSource, ReloadReconciler
from kstrata.crypto.fingerprint import FingerprintKey, source_fingerprint
from kstrata.domain import reload_annotations as ra
from kstrata.domain.reload_decision import (
    Sources,
    decide,
    dependencies,
    parse_revisions,
    recorded_revisions,
    template_patch,
    wanted_plain,
)
from kstrata.payloads import (
    ConfigMap,
    ConfigProfile,
    Opaque,
    PodTemplate,
    ProfileStatus,
    Workload,
    WorkloadSpec,
)
from support.fake_api import FakeApi

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def workload(
    annotations: dict[str, str],
    *,
    kind: str = "Deployment",
    config_maps: tuple[str, ...] = ("cfg",),
    secrets: tuple[str, ...] = ("creds",),
) -> Workload:
    pod: dict[str, Opaque] = {
        "containers": [{"name": "a", "envFrom": [{"secretRef": {"name": n}} for n in secrets]}],
        "volumes": [{"name": n, "configMap": {"name": n}} for n in config_maps],
    }
    template: PodTemplate = {"metadata": {}, "spec": pod}
    spec: WorkloadSpec = (
        {"jobTemplate": {"spec": {"template": template}}}
        if kind == "CronJob"
        else {"template": template}
    )
    return {"kind": kind, "metadata": {"name": "w", "annotations": annotations}, "spec": spec}


PLAIN = {("ConfigMap", "cfg"): "cfgFingerPr1", ("Secret", "creds"): "secFingerPr1"}


def test_kstrata_tokens() -> None:
    request = ra.parse_kstrata("auto-configmaps, secret/db ,payments,configmap/x,")
    assert request.auto_config_maps
    assert not request.auto_secrets
    assert request.secrets == {"db"}
    assert request.config_maps == {"x"}
    assert request.names == {"payments"}
    both = ra.parse_kstrata("auto")
    assert both.auto_config_maps
    assert both.auto_secrets
    assert ra.format_request(request) == "auto-configmaps,configmap/x,secret/db,payments"


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({"reloader.stakater.com/auto": "true"}, "auto"),
        ({"reloader.stakater.com/auto": "True"}, "auto"),
        ({"configmap.reloader.stakater.com/auto": "true"}, "auto-configmaps"),
        ({"secret.reloader.stakater.com/auto": "true"}, "auto-secrets"),
        ({"configmap.reloader.stakater.com/reload": "a, b"}, "configmap/a,configmap/b"),
        ({"secret.reloader.stakater.com/reload": "s"}, "secret/s"),
        # "false" switches auto off, named reloads still apply.
        (
            {"reloader.stakater.com/auto": "false", "secret.reloader.stakater.com/reload": "s"},
            "secret/s",
        ),
        ({"reloader.stakater.com/auto": "false"}, ""),
        # auto wins over search.
        ({"reloader.stakater.com/auto": "true", "reloader.stakater.com/search": "true"}, "auto"),
    ],
)
def test_reloader_semantics(annotations: dict[str, str], expected: str) -> None:
    assert ra.format_request(ra.parse_reloader(annotations)) == expected


def test_search_follows_matching_sources_only_and_kstrata_annotation_wins() -> None:
    search = ra.parse_reloader({"reloader.stakater.com/search": "true"})
    assert search.match_only
    assert search.auto
    both = {"reloader.stakater.com/auto": "true", "kstrata.dev/reload": "secret/only"}
    assert ra.format_request(ra.request_for(both, reloader_compatible=True)) == "secret/only"
    # Without the setting Reloader's annotations mean nothing.
    reloader_only = {"reloader.stakater.com/auto": "true"}
    assert ra.request_for(reloader_only, reloader_compatible=False).is_empty()
    assert not ra.opted_in(reloader_only, reloader_compatible=False)
    assert ra.opted_in(reloader_only, reloader_compatible=True)


def test_source_opt_outs() -> None:
    assert ra.source_ignored({"kstrata.dev/reload-ignore": "true"}, reloader_compatible=False)
    reloader = {"reloader.stakater.com/ignore": "true"}
    assert not ra.source_ignored(reloader, reloader_compatible=False)
    assert ra.source_ignored(reloader, reloader_compatible=True)


def test_migration_names_matching_sources_for_search_and_keeps_an_existing_kstrata_value() -> None:
    search = ra.migrate(
        "Deployment",
        "ns",
        "w",
        {"reloader.stakater.com/search": "true", "other": "x"},
        matching_sources=(frozenset({"cfg"}), frozenset({"creds"})),
    )
    assert search.reload == "configmap/cfg,secret/creds"
    assert search.found == {"reloader.stakater.com/search": "true"}
    assert search.notes
    kept = ra.migrate(
        "Deployment", "ns", "w", {"reloader.stakater.com/auto": "true", "kstrata.dev/reload": "x"}
    )
    assert kept.reload == "x"
    assert kept.notes


def test_plain_sources_are_followed_by_type_and_opt_out() -> None:
    sources = Sources(plain=PLAIN, ignored=frozenset({("Secret", "creds")}))
    auto = dependencies(workload({"kstrata.dev/reload": "auto"}), sources)
    assert auto == {"configmap/cfg": ("ConfigMap", "cfg")}
    sources = Sources(plain=PLAIN)
    typed = dependencies(workload({"kstrata.dev/reload": "auto-secrets"}), sources)
    assert typed == {"secret/creds": ("Secret", "creds")}
    # A ConfigMap kstrata renders stands for its profile's revision, not a fingerprint.
    owned = Sources(plain=PLAIN, profiles={"payments": 4}, config_maps={"cfg": "payments"})
    assert dependencies(workload({"kstrata.dev/reload": "auto"}), owned) == {
        "payments": ("ConfigProfile", "payments"),
        "secret/creds": ("Secret", "creds"),
    }
    # Not opted in at all: nothing, even with Reloader's annotations but no setting.
    assert dependencies(workload({"reloader.stakater.com/auto": "true"}), sources) is None
    compatible = Sources(plain=PLAIN, reloader_compatible=True)
    found = dependencies(workload({"reloader.stakater.com/auto": "true"}), compatible)
    assert found is not None
    assert set(found) == {"configmap/cfg", "secret/creds"}
    search = Sources(plain=PLAIN, matching=frozenset({("Secret", "creds")}), **_compat())
    found = dependencies(workload({"reloader.stakater.com/search": "true"}), search)
    assert found == {"secret/creds": ("Secret", "creds")}


def _compat() -> dict[str, Any]:
    return {"reloader_compatible": True}


def test_a_fingerprint_change_rolls_and_first_sight_or_same_data_does_not() -> None:
    w = workload({"kstrata.dev/reload": "auto"})
    assert decide(w, Sources(plain=PLAIN)).action == "record"
    w["metadata"]["annotations"]["kstrata.dev/revisions"] = (
        "configmap/cfg=cfgFingerPr1,secret/creds=secFingerPr1"
    )
    assert decide(w, Sources(plain=PLAIN)).action == "unchanged"
    changed = dict(PLAIN)
    changed[("ConfigMap", "cfg")] = "cfgFingerPr2"
    decision = decide(w, Sources(plain=changed))
    assert decision.action == "rollout"
    assert decision.changed == {"configmap/cfg": ("cfgFingerPr1", "cfgFingerPr2")}


def test_records_parse_numbers_and_fingerprints_and_drop_junk() -> None:
    assert parse_revisions("a=1,configmap/x=Ab-_9,secret/y=bad!,plain=abc,=3") == {
        "a": 1,
        "configmap/x": "Ab-_9",
    }


def test_cron_jobs_roll_their_job_template() -> None:
    cron = workload({"kstrata.dev/reload": "auto"}, kind="CronJob")
    assert wanted_plain(cron, ra.parse_kstrata("auto")) == {
        ("ConfigMap", "cfg"),
        ("Secret", "creds"),
    }
    patch = template_patch(cron, {"kstrata.dev/revisions": "x"}, now="2026-12-02T18:00:00Z")
    assert patch == {
        "spec": {
            "jobTemplate": {
                "spec": {"template": {"metadata": {"annotations": {"kstrata.dev/revisions": "x"}}}}
            }
        }
    }
    cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"] = {
        "annotations": {"kstrata.dev/revisions": "a=1"}
    }
    assert recorded_revisions(cron) == "a=1"


def test_source_fingerprints_are_keyed_bound_and_short() -> None:
    key, other = FingerprintKey.generate(created=NOW), FingerprintKey.generate(created=NOW)
    data = {"data:password": b"hunter2"}

    def fp(k: FingerprintKey, namespace: str = "ns", name: str = "db") -> str:
        return source_fingerprint(k, namespace=namespace, kind="Secret", name=name, entries=data)

    assert fp(key) == fp(key)
    assert len(fp(key)) == 12
    assert len({fp(key), fp(other), fp(key, namespace="ns2"), fp(key, name="db2")}) == 4
    assert fp(key) not in hashlib.sha256(b"hunter2").hexdigest()
    moved = {"data:passwor": b"dhunter2"}  # the same bytes split differently
    assert source_fingerprint(key, namespace="ns", kind="Secret", name="db", entries=moved) != fp(
        key
    )


class Recorder:
    def __init__(self) -> None:
        self.scheduled: list[str] = []
        self.changes: list[str] = []

    def schedule(self, namespace: str, **_: Any) -> None:
        self.scheduled.append(namespace)

    def note_change(self, namespace: str) -> None:
        self.changes.append(namespace)

    def poke(self, namespace: str) -> None:
        pass


def test_the_watch_keeps_only_followed_sources_and_ignores_metadata_only_writes() -> None:
    coalescer = Recorder()
    triggers = ReloadTriggers(coalescer, {})
    cm: ConfigMap = {"metadata": {"name": "cfg", "labels": {}}, "data": {"k": "v1"}}
    triggers.plain_seen("ConfigMap", "ns", "cfg", cm)  # nobody follows it yet
    assert coalescer.scheduled == []
    assert not triggers._digests
    triggers.workload_seen("ns", "uid-1", workload({"kstrata.dev/reload": "auto"}))
    coalescer.scheduled.clear()
    triggers.plain_seen("ConfigMap", "ns", "cfg", cm)  # first sight: a pass checks once
    assert coalescer.scheduled == ["ns"]
    assert coalescer.changes == ["ns"]  # it may be the first of a change set
    relabelled: ConfigMap = {**cm, "metadata": {"name": "cfg", "labels": {"x": "y"}}}
    triggers.plain_seen("ConfigMap", "ns", "cfg", relabelled)
    assert coalescer.scheduled == ["ns"]  # metadata only: nothing
    triggers.plain_seen("ConfigMap", "ns", "cfg", {**cm, "data": {"k": "v2"}})
    assert coalescer.scheduled == ["ns", "ns"]
    assert coalescer.changes == ["ns", "ns"]
    # No plain hash of the data is kept.
    assert hashlib.sha256(b"v2").digest()[:16] not in triggers._digests.values()
    triggers.workload_deleted("ns", "uid-1")
    assert not triggers._followers
    assert not triggers._digests


def test_the_migrate_command_parses_and_prints_a_stable_report() -> None:
    from kstrata.app.reloader_migration import MigrationReport, SourceMigration
    from kstrata.cli.main import build_parser
    from kstrata.cli.migrate_cmd import format_report

    args = build_parser().parse_args(["migrate", "reloader", "-A", "--apply"])
    assert args.all_namespaces
    assert args.apply
    migration = ra.migrate("Deployment", "shop", "api", {"reloader.stakater.com/auto": "true"})
    ignored = SourceMigration("ConfigMap", "shop", "noisy", done=False)
    report = MigrationReport((migration,), (ignored,), applied=False)
    assert format_report(report) == (
        "Deployment shop/api\n"
        "  reloader: reloader.stakater.com/auto=true\n"
        "  kstrata: kstrata.dev/reload=auto\n"
        "ConfigMap shop/noisy\n"
        "  kstrata: kstrata.dev/reload-ignore=true\n"
        "(dry run: nothing written; --apply writes these)\n"
    )
    assert format_report(MigrationReport((), (), applied=True)) == (
        "no workload uses Reloader's annotations\n"
    )


def test_a_pass_lists_only_the_workload_kinds_that_can_matter() -> None:
    triggers = ReloadTriggers(Recorder(), {})
    assert triggers.workload_kinds("ns") == frozenset()
    triggers.workload_seen("ns", "u1", workload({"kstrata.dev/reload": "auto"}, kind="CronJob"))
    triggers.workload_seen("ns", "u2", workload({}))  # not opted in: no list of its kind
    assert triggers.workload_kinds("ns") == frozenset({"CronJob"})
    source: ConfigProfile = {
        "metadata": {"generation": 1},
        "status": {"workloads": [{"kind": "StatefulSet", "name": "db", "revision": 1}]},
    }
    triggers.source_seen("ConfigProfile", "ns", "p", source)
    assert triggers.workload_kinds("ns") == frozenset({"CronJob", "StatefulSet"})
    triggers.workload_deleted("ns", "u1")
    triggers.source_deleted("ConfigProfile", "ns", "p")
    assert triggers.workload_kinds("ns") == frozenset()


def one_deployment(deployment: Workload) -> FakeApi:
    """The fake API holding one Deployment, ns/w (it refuses a stale guarded patch)."""
    return FakeApi({("deployments", "ns", "w"): dict(copy.deepcopy(deployment))})


def sent_versions(api: FakeApi) -> list[object]:
    """The resourceVersion each accepted patch of the Deployment carried (None: unguarded)."""
    versions: list[object] = []
    for plural, _, _, _, body in api.patches:
        if plural == "deployments":
            assert isinstance(body, Mapping)
            metadata = body.get("metadata")
            versions.append(metadata.get("resourceVersion") if isinstance(metadata, dict) else None)
    return versions


def test_a_pass_on_a_stale_watched_copy_writes_nothing_and_decides_again_on_lists() -> None:
    w = workload({"kstrata.dev/reload": "auto-configmaps"}, secrets=())
    w["metadata"].update({"namespace": "ns", "resourceVersion": "7"})
    w["metadata"]["annotations"]["kstrata.dev/revisions"] = "configmap/cfg=cfgFingerPr1"
    api = one_deployment(w)
    described = PlainSource(owner=None, fingerprint="cfgFingerPr2", ignored=False, matching=False)
    reconciler = ReloadReconciler(
        api, watched=lambda kind, namespace, name: described if name == "cfg" else None
    )
    stale = copy.deepcopy(w)
    stale["metadata"]["resourceVersion"] = "6"
    outcome = reconciler.reconcile_namespace(
        "ns", state=reconciler.state_from_watch("ns", [("Deployment", stale)])
    )
    assert api.conflicts == 1
    assert outcome.rolled == ("Deployment/w",)
    assert sent_versions(api) == [None]  # one rollout, decided on the list's copy
    fresh_api = one_deployment(w)
    fresh = ReloadReconciler(fresh_api, watched=lambda kind, namespace, name: described)
    state = fresh.state_from_watch("ns", [("Deployment", w)])
    fresh.reconcile_namespace("ns", state=state)
    assert sent_versions(fresh_api) == ["7"]  # a watched copy's write is guarded


def test_a_plain_change_needs_no_lists_where_nothing_else_changed() -> None:
    """``plain_followers``: in a namespace that also has ConfigProfiles, a followed
    ConfigMap's change is decided on the watch's copies of its followers alone, as
    long as no other trigger came since a pass covered the whole namespace and
    each follower follows plain sources only (no profile, no target, no status
    entry); otherwise the pass reads the namespace."""
    coalescer = Recorder()
    triggers = ReloadTriggers(coalescer, {})
    profile: ConfigProfile = {"metadata": {"generation": 1}, "spec": {}, "status": {"revision": 1}}
    profile["status"]["observedGeneration"] = 1
    triggers.source_seen("ConfigProfile", "ns", "p", profile)
    on_profile: Workload = {**workload({"kstrata.dev/reload": "p"}, config_maps=()), "metadata": {
        "name": "web", "annotations": {"kstrata.dev/reload": "p"}}}  # fmt: skip
    on_plain: Workload = {**workload({"kstrata.dev/reload": "configmap/cfg"}), "metadata": {
        "name": "plain", "annotations": {"kstrata.dev/reload": "configmap/cfg"}}}  # fmt: skip
    triggers.workload_seen("ns", "uid-web", on_profile)
    triggers.workload_seen("ns", "uid-plain", on_plain)
    triggers.plain_seen("ConfigMap", "ns", "cfg", {"metadata": {"name": "cfg"}, "data": {}})
    assert triggers.watched_workloads("ns") is None  # a profile is in play here

    # Workloads were seen, and no pass has covered the namespace since: read it.
    assert triggers.plain_followers("ns") is None
    triggers.covered("ns", triggers.full_triggers("ns"))
    found = triggers.plain_followers("ns")
    assert found is not None
    assert [body["metadata"]["name"] for _, body in found] == ["plain"]

    # A new revision of the profile: the next pass must decide on everything.
    triggers.source_seen("ConfigProfile", "ns", "p", {**profile, "status": {
        "observedGeneration": 1, "revision": 2}})  # fmt: skip
    assert triggers.plain_followers("ns") is None
    triggers.covered("ns", triggers.full_triggers("ns"))
    assert triggers.plain_followers("ns") is not None

    # A follower some source lists in its status.workloads: read (its entry may go).
    listing: ProfileStatus = {
        "observedGeneration": 1,
        "revision": 2,
        "workloads": [{"kind": "Deployment", "name": "plain", "revision": 1}],
    }
    triggers.source_seen("ConfigProfile", "ns", "p", {**profile, "status": listing})
    assert triggers.plain_followers("ns") is None
    triggers.source_seen("ConfigProfile", "ns", "p", {**profile, "status": {
        "observedGeneration": 1, "revision": 2}})  # fmt: skip
    assert triggers.plain_followers("ns") is not None

    # A follower of the ConfigMap that follows the profile too: read.
    both = {"kstrata.dev/reload": "p,configmap/cfg"}
    triggers.workload_seen("ns", "uid-plain", {**on_plain, "metadata": {
        "name": "plain", "annotations": both}})  # fmt: skip
    triggers.covered("ns", triggers.full_triggers("ns"))
    assert triggers.plain_followers("ns") is None
