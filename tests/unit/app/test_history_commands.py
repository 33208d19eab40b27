"""history, diff and rollback use cases on an in-memory API, with the real RevisionStore.

The API is support.fake_api's (the one fake), with ``put`` to arrange state.
It keeps the API behaviours these use cases rely on: PUT fails on a
stale resourceVersion (ConflictError), a spec change bumps
metadata.generation, and ControllerRevisions are listed by label selector.
Snapshots are stored through the operator's own ``RevisionStore.record``, so
the CLI reads exactly the format the operator writes.  The same flows run
through the real operator in tests/cluster/test_cli_history.py.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.app.history_commands import DiffRequest, compute_diff, revision_history
from kstrata.app.history_toolkit import ConfigDiff, SecretDiff
from kstrata.app.revisions import RevisionStore
from kstrata.app.rollback import rollback
from kstrata.domain.profile import parse_profile_spec, render_profile
from kstrata.domain.revisions import Snapshot
from kstrata.errors import (
    ClusterError,
    ConflictError,
    KstrataError,
    NotFoundError,
    RevisionNotFoundError,
    UsageError,
)
from kstrata.kube.api import (
    CONFIG_MAPS,
    CONFIG_PROFILES,
    NAMESPACES,
    SEALED_SECRETS,
    KubeClient,
    P,
    Patch,
    Resource,
)
from support.fake_api import FakeApi as SharedFakeApi

NS = "shop"
API_VERSION = "kstrata.dev/v1alpha1"
#: What the API server fills in (the CRD's defaults), as on the real cluster.
SEALED_DEFAULTS: dict[str, Any] = {"scope": "strict", "revisionHistoryLimit": 10}


class FakeApi(SharedFakeApi):
    """The one fake API, with a way to arrange state, and no patch or delete allowed."""

    def put(
        self,
        resource: Resource[Mapping[str, object]],
        namespace: str | None,
        body: Mapping[str, object],
    ) -> None:
        """Arrange state directly (not counted as a write)."""
        self._version += 1
        stored: dict[str, Any] = {}
        stored.update(copy.deepcopy(body))
        meta = stored.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._version)
        meta.setdefault("uid", f"uid-{resource.plural}-{meta['name']}")
        meta.setdefault("generation", 1)
        meta.setdefault("namespace", namespace)
        stored.setdefault("kind", resource.kind)
        stored.setdefault("apiVersion", resource.api_version)
        self.objects[(resource.plural, namespace or "", meta["name"])] = stored

    def obj(self, resource: Resource[Mapping[str, object]], name: str) -> dict[str, Any]:
        return self.objects[(resource.plural, NS, name)]

    def patch(
        self, resource: Resource[P], namespace: str | None, name: str, patch: Patch, **_: object
    ) -> P:
        raise AssertionError("history, diff and rollback never patch")

    def delete(self, resource: Resource[P], namespace: str | None, name: str) -> None:
        raise AssertionError("history, diff and rollback never delete")


def as_api(fake: FakeApi) -> KubeClient:
    return fake


# --- arranging profiles, secrets and their revisions ---------------------------


def rendered(spec: dict[str, Any], name: str, environment: str, api: FakeApi) -> dict[str, str]:
    def lookup(base: str) -> Any:
        found = api.get_or_none(CONFIG_PROFILES, NS, base)
        return parse_profile_spec(found["spec"]) if found else None

    return render_profile(parse_profile_spec(spec), name, environment, lookup).rendered.data


def profile_revision(
    api: FakeApi,
    name: str,
    number: int,
    spec: dict[str, Any],
    *,
    cause: str = "",
    environment: str = "dev",
) -> Snapshot:
    """Make ``spec`` revision ``number`` as the operator would: snapshot, ConfigMap, status."""
    live = api.get_or_none(CONFIG_PROFILES, NS, name)
    body = live or {"metadata": {"name": name, "namespace": NS}}
    body["spec"] = copy.deepcopy(spec)
    if live is not None and live.get("spec") != spec:
        body["metadata"]["generation"] += 1
    api.put(CONFIG_PROFILES, NS, body)
    data = rendered(spec, name, environment, api)
    snapshot = Snapshot(
        kind="ConfigProfile",
        number=number,
        spec=copy.deepcopy(spec),
        environment=environment,
        rendered=data,
        fingerprints={},
        digest=f"sha256:{number:064x}",
        change_cause=cause,
        created=f"2026-11-24T01:{number:02d}:00Z",
    )
    owner = api.get(CONFIG_PROFILES, NS, name)
    RevisionStore(as_api(api)).record(owner, snapshot)
    api.writes.clear()  # arranging, not what the use cases under test wrote
    api.put(CONFIG_MAPS, NS, {"metadata": {"name": name}, "data": data})
    report(api, CONFIG_PROFILES, name, revision=number, environment=environment)
    return snapshot


def report(
    api: FakeApi,
    resource: Resource[Mapping[str, object]],
    name: str,
    *,
    revision: int,
    environment: str = "dev",
    ready: bool = True,
    extra: dict[str, Any] | None = None,
) -> None:
    """What the operator writes into status after handling the current generation."""
    obj = api.obj(resource, name)
    obj["status"] = {
        "observedGeneration": obj["metadata"]["generation"],
        "revision": revision,
        "environment": environment,
        "environmentSource": "default",
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "Rendered" if ready else "SchemaViolation",
                "message": "ok" if ready else "schema validation failed: $.port: too large",
            }
        ],
        **(extra or {}),
    }


def sealed_revision(
    api: FakeApi,
    name: str,
    number: int,
    spec: dict[str, Any],
    fingerprints: dict[str, str],
    *,
    environment: str = "dev",
    cause: str = "",
) -> Snapshot:
    spec = {**SEALED_DEFAULTS, **spec}
    live = api.get_or_none(SEALED_SECRETS, NS, name)
    body = live or {"metadata": {"name": name, "namespace": NS}}
    if live is not None and live.get("spec") != spec:
        body["metadata"]["generation"] += 1
    body["spec"] = copy.deepcopy(spec)
    api.put(SEALED_SECRETS, NS, body)
    snapshot = Snapshot(
        kind="SealedSecret",
        number=number,
        spec=copy.deepcopy(spec),
        environment=environment,
        rendered={},
        fingerprints=dict(fingerprints),
        digest=f"sha256:{number:064x}",
        change_cause=cause,
        created=f"2026-11-24T02:{number:02d}:00Z",
    )
    RevisionStore(as_api(api)).record(api.get(SEALED_SECRETS, NS, name), snapshot)
    api.writes.clear()
    items = [{"key": k, "keyId": "0" * 32, "fingerprint": v} for k, v in fingerprints.items()]
    report(
        api, SEALED_SECRETS, name, revision=number, environment=environment, extra={"items": items}
    )
    return snapshot


SPEC_1: dict[str, Any] = {"base": {"port": 8080, "log": {"level": "info"}}}
SPEC_2: dict[str, Any] = {
    "base": {"port": 8080, "log": {"level": "info"}},
    "environments": {"dev": {"log": {"level": "debug"}}},
}
SPEC_3: dict[str, Any] = {
    "base": {"port": 9090, "log": {"level": "info"}},
    "environments": {"dev": {"log": {"level": "debug"}}, "prod": {"port": 443}},
}


@pytest.fixture
def api() -> FakeApi:
    fake = FakeApi()
    fake.put(NAMESPACES, None, {"metadata": {"name": NS}})
    return fake


@pytest.fixture
def payments(api: FakeApi) -> FakeApi:
    profile_revision(api, "payments", 1, SPEC_1)
    profile_revision(api, "payments", 2, SPEC_2, cause="kstrata set --env dev log.level")
    profile_revision(api, "payments", 3, SPEC_3, cause="kubectl apply")
    return api


# Ciphertexts are opaque strings here: the use cases never open them.
TOKENS_1 = {"password": "tok-pw-1", "db-url": "tok-url-1", "old-key": "tok-old-1"}
TOKENS_2 = {"password": "tok-pw-2", "db-url": "tok-url-2", "api-token": "tok-api-1"}
FP_1 = {"password": "fp-pw-a", "db-url": "fp-url-a", "old-key": "fp-old-a"}
FP_2 = {"password": "fp-pw-b", "db-url": "fp-url-a", "api-token": "fp-api-a"}


@pytest.fixture
def db(api: FakeApi) -> FakeApi:
    sealed_revision(api, "db", 1, {"encryptedData": TOKENS_1}, FP_1)
    sealed_revision(
        api,
        "db",
        2,
        {"encryptedData": TOKENS_2, "template": {"type": "Opaque"}},
        FP_2,
        cause="kstrata seal",
    )
    return api


# --- history -----------------------------------------------------------------


def test_history_lists_retained_revisions_oldest_first_with_the_current_one(
    payments: FakeApi,
) -> None:
    found = revision_history(as_api(payments), NS, "payments")
    assert (found.kind, found.current) == ("ConfigProfile", 3)
    assert [(r.number, r.created, r.change_cause, r.current) for r in found.rows] == [
        (1, "2026-11-24T01:01:00Z", "", False),
        (2, "2026-11-24T01:02:00Z", "kstrata set --env dev log.level", False),
        (3, "2026-11-24T01:03:00Z", "kubectl apply", True),
    ]
    assert found.rows[1].as_data() == {
        "revision": 2,
        "created": "2026-11-24T01:02:00Z",
        "changeCause": "kstrata set --env dev log.level",
        "current": False,
    }
    assert payments.writes == []


def test_history_finds_the_kind_and_refuses_to_guess(payments: FakeApi, db: FakeApi) -> None:
    api = as_api(payments)
    assert revision_history(api, NS, "db").kind == "SealedSecret"
    assert revision_history(api, NS, "db", kind="secret").current == 2
    with pytest.raises(NotFoundError):
        revision_history(api, NS, "db", kind="profile")
    with pytest.raises(NotFoundError, match="no ConfigProfile or SealedSecret named nothing"):
        revision_history(api, NS, "nothing")
    payments.put(CONFIG_PROFILES, NS, {"metadata": {"name": "db"}, "spec": SPEC_1})
    with pytest.raises(UsageError, match="--kind profile or --kind secret"):
        revision_history(api, NS, "db")
    with pytest.raises(UsageError, match="--kind"):
        revision_history(api, NS, "db", kind="deployment")
    with pytest.raises(UsageError, match="valid Kubernetes object name"):
        revision_history(api, NS, "../secrets/x")


# --- diff: revisions -----------------------------------------------------------


def test_profile_diff_defaults_to_the_previous_revision_against_the_current(
    payments: FakeApi,
) -> None:
    found = compute_diff(as_api(payments), None, NS, DiffRequest(name="payments"))
    assert isinstance(found, ConfigDiff)
    assert (found.old_label, found.new_label) == ("revision 2", "revision 3")
    assert found.old == rendered(SPEC_2, "payments", "dev", payments)
    assert found.new == rendered(SPEC_3, "payments", "dev", payments)
    assert found.differs

    explicit = compute_diff(
        as_api(payments), NS, "elsewhere", DiffRequest(name="payments", revision=1, to_revision=2)
    )
    assert (explicit.old_label, explicit.new_label) == ("revision 1", "revision 2")
    same = compute_diff(
        as_api(payments), NS, NS, DiffRequest(name="payments", revision=2, to_revision=2)
    )
    assert not same.differs


def test_profile_diff_of_a_revision_not_retained(payments: FakeApi) -> None:
    retained = "revision 7 is not in the retained history; kstrata history payments -n shop lists"
    with pytest.raises(RevisionNotFoundError, match=retained):
        compute_diff(as_api(payments), NS, NS, DiffRequest(name="payments", revision=7))
    with pytest.raises(RevisionNotFoundError, match="keeps no revision before 1"):
        compute_diff(as_api(payments), NS, NS, DiffRequest(name="payments", to_revision=1))


def test_secret_diff_uses_fingerprints_and_never_carries_ciphertext(db: FakeApi) -> None:
    found = compute_diff(as_api(db), NS, NS, DiffRequest(name="db"))
    assert found == SecretDiff(
        "db",
        "revision 1",
        "revision 2",
        added=("api-token",),
        removed=("old-key",),
        changed=("password",),
        resealed=("db-url",),
        undetermined=(),
        spec_fields=("template",),
    )
    text = repr(found)
    for secret_ish in [*TOKENS_1.values(), *TOKENS_2.values(), *FP_1.values(), *FP_2.values()]:
        assert secret_ish not in text


def test_secret_diff_without_fingerprints_says_changed_or_resealed(api: FakeApi) -> None:
    # An operator without a fingerprint key records none: a new ciphertext
    # cannot be told apart from a new value, and is not guessed at.
    sealed_revision(api, "db", 1, {"encryptedData": TOKENS_1}, {})
    sealed_revision(api, "db", 2, {"encryptedData": {**TOKENS_1, "password": "tok-pw-2"}}, {})
    found = compute_diff(as_api(api), NS, NS, DiffRequest(name="db", kind="secret"))
    assert isinstance(found, SecretDiff)
    assert (found.undetermined, found.changed, found.resealed) == (("password",), (), ())


# --- diff: environments --------------------------------------------------------


def test_profile_environment_diff_renders_the_live_spec_for_both(payments: FakeApi) -> None:
    found = compute_diff(
        as_api(payments),
        NS,
        NS,
        DiffRequest(name="payments", environment="dev", to_environment="prod"),
    )
    assert isinstance(found, ConfigDiff)
    assert (found.old_label, found.new_label) == ("environment dev", "environment prod")
    assert found.old == {"config.yaml": "log:\n  level: debug\nport: 9090\n"}
    assert found.new == {"config.yaml": "log:\n  level: info\nport: 443\n"}


def test_secret_environment_diff_compares_ciphertexts(api: FakeApi) -> None:
    spec = {
        "encryptedData": {"password": "tok-pw", "db-url": "tok-url"},
        "environments": {
            "prod": {"encryptedData": {"password": "tok-pw-prod", "replica": "tok-rep"}}
        },
    }
    sealed_revision(api, "db", 1, spec, {"password": "fp-a", "db-url": "fp-b"})
    found = compute_diff(
        as_api(api), NS, NS, DiffRequest(name="db", environment="dev", to_environment="prod")
    )
    # Only dev was unsealed: prod's value has no fingerprint to compare with.
    assert found == SecretDiff(
        "db",
        "environment dev",
        "environment prod",
        added=("replica",),
        undetermined=("password",),
    )


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (DiffRequest(), "give NAME, or -f FILE"),
        (DiffRequest(name="x", environment="dev"), "--env and --to-env go together"),
        (
            DiffRequest(name="x", environment="dev", to_environment="prod", revision=1),
            "not both",
        ),
        (DiffRequest(name="x", environment="Prod!", to_environment="dev"), "--env: not a valid"),
        (DiffRequest(name="x", revision=0), "start at 1"),
        (DiffRequest(name="x", file=Path("f.yaml")), "takes no NAME"),
        (DiffRequest(file=Path("f.yaml"), kind="profile"), "drop --kind"),
    ],
)
def test_diff_flags_that_make_no_single_comparison(request_: DiffRequest, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        request_.check()


# --- diff: a file against the cluster -----------------------------------------------


def write_manifest(tmp_path: Path, *documents: dict[str, Any]) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return path


def manifest(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None) -> Any:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


def test_profile_file_diff_renders_the_file_against_the_live_config_map(
    payments: FakeApi, tmp_path: Path
) -> None:
    edited = copy.deepcopy(SPEC_3)
    edited["environments"]["dev"]["log"]["level"] = "warning"
    path = write_manifest(
        tmp_path, {"kind": "Namespace"}, manifest("ConfigProfile", "payments", edited)
    )
    found = compute_diff(as_api(payments), None, NS, DiffRequest(file=path))
    assert isinstance(found, ConfigDiff)
    assert (found.old_label, found.new_label) == ("live, revision 3", str(path))
    assert found.old == payments.obj(CONFIG_MAPS, "payments")["data"]
    assert found.new == {"config.yaml": "log:\n  level: warning\nport: 9090\n"}

    unchanged = write_manifest(tmp_path, manifest("ConfigProfile", "payments", SPEC_3, NS))
    assert not compute_diff(as_api(payments), NS, "other", DiffRequest(file=unchanged)).differs

    new = write_manifest(tmp_path, manifest("ConfigProfile", "checkout", SPEC_1))
    created = compute_diff(as_api(payments), None, NS, DiffRequest(file=new))
    assert isinstance(created, ConfigDiff)
    assert (created.old_label, created.old) == ("not on the cluster", {})


def test_secret_file_diff_cannot_tell_a_change_from_a_reseal(db: FakeApi, tmp_path: Path) -> None:
    spec = {
        "encryptedData": {**TOKENS_2, "password": "tok-pw-3", "new": "tok-new"},
        "template": {"type": "Opaque"},
    }
    spec["encryptedData"].pop("api-token")
    path = write_manifest(tmp_path, manifest("SealedSecret", "db", spec))
    found = compute_diff(as_api(db), NS, NS, DiffRequest(file=path))
    assert found == SecretDiff(
        "db",
        "live, revision 2",
        str(path),
        added=("new",),
        removed=("api-token",),
        undetermined=("password",),
    )


def test_file_diff_refuses_ambiguous_files(payments: FakeApi, tmp_path: Path) -> None:
    two = write_manifest(
        tmp_path,
        manifest("ConfigProfile", "a", SPEC_1),
        manifest("ConfigProfile", "b", SPEC_1),
    )
    with pytest.raises(UsageError, match="exactly one ConfigProfile or SealedSecret"):
        compute_diff(as_api(payments), None, NS, DiffRequest(file=two))
    elsewhere = write_manifest(tmp_path, manifest("ConfigProfile", "payments", SPEC_1, "prod"))
    with pytest.raises(UsageError, match="is for namespace prod, but -n names shop"):
        compute_diff(as_api(payments), NS, NS, DiffRequest(file=elsewhere))
    with pytest.raises(UsageError, match="cannot read"):
        compute_diff(as_api(payments), NS, NS, DiffRequest(file=tmp_path / "missing.yaml"))


# --- rollback ----------------------------------------------------------------


class Operator:
    """Stands in for the operator: each wait step it reports on the written generation."""

    def __init__(
        self,
        api: FakeApi,
        resource: Resource[Mapping[str, object]],
        name: str,
        *,
        ready: bool = True,
    ) -> None:
        self.api, self.resource, self.name, self.ready = api, resource, name, ready
        self.steps = 0

    def sleep(self, _seconds: float) -> None:
        self.steps += 1
        obj = self.api.obj(self.resource, self.name)
        revision = int(obj["status"]["revision"]) + 1
        report(self.api, self.resource, self.name, revision=revision, ready=self.ready)


def test_rollback_restores_the_previous_spec_as_a_new_revision(payments: FakeApi) -> None:
    before = copy.deepcopy(payments.obj(CONFIG_PROFILES, "payments"))
    before["metadata"]["labels"] = {"team": "shop"}
    payments.objects[("configprofiles", NS, "payments")] = before
    operator = Operator(payments, CONFIG_PROFILES, "payments")
    result = rollback(as_api(payments), NS, "payments", sleep=operator.sleep)

    assert (result.target, result.previous, result.revision) == (2, 3, 4)
    assert (result.changed, result.written, result.warnings) == (True, True, ())
    assert operator.steps == 1
    live = payments.obj(CONFIG_PROFILES, "payments")
    assert live["spec"] == SPEC_2
    assert live["metadata"]["annotations"] == {"kubernetes.io/change-cause": "rollback to 2"}
    assert live["metadata"]["labels"] == {"team": "shop"}
    assert payments.writes == ["replace configprofiles"]
    assert isinstance(result.diff, ConfigDiff)
    assert (result.diff.old_label, result.diff.new_label) == (
        "live, revision 3",
        "revision 2, restored",
    )
    assert result.diff.new == rendered(SPEC_2, "payments", "dev", payments)
    assert result.manifest == {
        "apiVersion": API_VERSION,
        "kind": "ConfigProfile",
        "metadata": {
            "name": "payments",
            "namespace": NS,
            "annotations": {"kubernetes.io/change-cause": "rollback to 2"},
        },
        "spec": SPEC_2,
    }


def test_rollback_without_writing_changes_nothing(payments: FakeApi) -> None:
    result = rollback(as_api(payments), NS, "payments", to_revision=1, write=False)
    assert (result.target, result.changed, result.written) == (1, True, False)
    assert result.manifest["spec"] == SPEC_1
    assert result.diff.differs
    assert payments.writes == []
    assert payments.obj(CONFIG_PROFILES, "payments")["spec"] == SPEC_3


def test_rollback_to_the_spec_already_live_writes_nothing(payments: FakeApi) -> None:
    result = rollback(as_api(payments), NS, "payments", to_revision=3)
    assert (result.changed, result.written) == (False, False)
    assert payments.writes == []


def test_rollback_loses_no_concurrent_update(
    payments: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_get = payments.get_or_none
    raced: list[bool] = []

    def get_then_someone_writes(
        resource: Resource[P], namespace: str | None, name: str
    ) -> P | None:
        found = real_get(resource, namespace, name)
        if found and resource is CONFIG_PROFILES and name == "payments" and not raced:
            # Another writer changes the profile right after kstrata read it.
            payments.put(CONFIG_PROFILES, NS, {**found, "spec": SPEC_1})
            raced.append(True)
        return found

    monkeypatch.setattr(payments, "get_or_none", get_then_someone_writes)
    with pytest.raises(ConflictError, match="nothing was written"):
        rollback(as_api(payments), NS, "payments", wait=False)
    assert payments.obj(CONFIG_PROFILES, "payments")["spec"] == SPEC_1
    assert payments.writes == []


def test_rollback_reports_an_operator_that_refuses_the_restored_spec(payments: FakeApi) -> None:
    operator = Operator(payments, CONFIG_PROFILES, "payments", ready=False)
    with pytest.raises(
        KstrataError,
        match="was written, but the operator did not apply it: "
        "SchemaViolation: schema validation failed",
    ) as caught:
        rollback(as_api(payments), NS, "payments", sleep=operator.sleep)
    assert caught.value.reason == "RollbackNotApplied"


def test_rollback_gives_up_waiting_at_the_timeout(payments: FakeApi) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(ClusterError, match="did not report on it within 2s"):
        rollback(as_api(payments), NS, "payments", timeout=2, sleep=sleep, clock=lambda: now[0])
    assert payments.obj(CONFIG_PROFILES, "payments")["spec"] == SPEC_2
    assert 1.8 <= now[0] <= 2.2


def test_rollback_warns_when_a_base_profile_changed_since(api: FakeApi) -> None:
    api.put(
        CONFIG_PROFILES, NS, {"metadata": {"name": "platform"}, "spec": {"base": {"tz": "UTC"}}}
    )
    spec_1 = {"extends": ["platform"], "base": {"port": 1}}
    spec_2 = {"extends": ["platform"], "base": {"port": 2}}
    profile_revision(api, "app", 1, spec_1)
    profile_revision(api, "app", 2, spec_2)
    api.put(
        CONFIG_PROFILES, NS, {"metadata": {"name": "platform"}, "spec": {"base": {"tz": "CET"}}}
    )
    result = rollback(as_api(api), NS, "app", write=False)
    assert result.warnings == (
        "revision 1 will render differently than it did: its base profiles (platform) "
        "changed since; the diff shows what it renders now",
    )
    assert isinstance(result.diff, ConfigDiff)
    assert result.diff.new == {"config.yaml": "port: 1\ntz: CET\n"}


def test_rollback_with_nothing_to_go_back_to(api: FakeApi) -> None:
    profile_revision(api, "solo", 1, SPEC_1)
    # The error names the object and the next step.
    kept = "keeps no revision before 1 to roll back to; kstrata history solo -n shop lists"
    with pytest.raises(RevisionNotFoundError, match=kept):
        rollback(as_api(api), NS, "solo")
    with pytest.raises(RevisionNotFoundError, match="revision 5 is not in the retained"):
        rollback(as_api(api), NS, "solo", to_revision=5)


def test_secret_rollback_lists_keys_and_restores_ciphertext(db: FakeApi) -> None:
    operator = Operator(db, SEALED_SECRETS, "db")
    result = rollback(as_api(db), NS, "db", sleep=operator.sleep)
    assert (result.kind, result.target, result.revision) == ("SealedSecret", 1, 3)
    assert db.obj(SEALED_SECRETS, "db")["spec"] == {**SEALED_DEFAULTS, "encryptedData": TOKENS_1}
    assert result.diff == SecretDiff(
        "db",
        "live, revision 2",
        "revision 1, restored",
        added=("old-key",),
        removed=("api-token",),
        changed=("password",),
        resealed=("db-url",),
        spec_fields=("template",),
    )


def test_rollback_reports_its_wait_through_the_progress_callback(payments: FakeApi) -> None:
    # The app layer never writes to a terminal: it tells the callback, the CLI decides.
    now = [0.0]
    heard: list[str] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(ClusterError):
        rollback(
            as_api(payments),
            NS,
            "payments",
            timeout=1,
            sleep=sleep,
            clock=lambda: now[0],
            progress=heard.append,
        )
    assert heard[0] == (
        "waiting for the operator to apply ConfigProfile shop/payments at revision 2: "
        "0s of 1s (Ctrl-C stops waiting)"
    )
    assert len(heard) >= 5  # once per poll
    assert heard[-1].endswith("1s of 1s (Ctrl-C stops waiting)")
    operator = Operator(payments, CONFIG_PROFILES, "payments")
    heard.clear()
    rollback(
        as_api(payments), NS, "payments", to_revision=1, sleep=operator.sleep, progress=heard.append
    )
    assert len(heard) == operator.steps + 1  # each look at the status, the last one included
