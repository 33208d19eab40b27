"""KeyStore rules on an in-memory API: keys are only added, and nothing is written twice.

The in-memory API (tests/support/fake_api.py) keeps the one API behaviour these
rules rely on: create fails on an existing name and PUT fails on a stale
resourceVersion (ConflictError).
The same rules are exercised on the real control plane in
tests/cluster/test_sealing_keys.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest

from kstrata.app.sealed_secrets import SealedSecretReconciler
from kstrata.app.sealing_keys import (
    FINGERPRINT_ENTRY,
    KEY_SECRET_NAME,
    PUBLIC_KEYS_CONFIG_MAP,
    PUBLIC_KEYS_DATA_KEY,
    KeyStore,
    parse_key_secret,
)
from kstrata.crypto import PublicKeyBundle, Scope, SealingContext, Suite, generate_keypair, seal
from kstrata.errors import ConflictError, NotFoundError, UnknownKeyError
from kstrata.kube.api import CONFIG_MAPS, SECRETS, P, Resource, as_payload
from kstrata.payloads import Secret
from kstrata.settings import Settings
from support.fake_api import FakeApi

NS = "ops"
DAY0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def key_secret(api: FakeApi) -> Secret:
    return as_payload(SECRETS, api.stored(SECRETS, NS, KEY_SECRET_NAME))


def bundle(api: FakeApi) -> PublicKeyBundle:
    cm = api.stored(CONFIG_MAPS, NS, PUBLIC_KEYS_CONFIG_MAP)
    return PublicKeyBundle.parse(cm["data"][PUBLIC_KEYS_DATA_KEY])


def make_store(api: FakeApi, **settings: Any) -> KeyStore:
    return KeyStore(api, Settings(operator_namespace=NS, **settings))


def test_first_start_creates_one_key_pair_and_a_fingerprint_key_then_nothing() -> None:
    api = FakeApi()
    store = make_store(api)
    assert store.ensure_keys(DAY0) is True
    assert store.publish_public_keys() is True
    keys = store.load()
    assert len(keys.ring) == 1
    assert keys.fingerprint_key is not None
    assert set(key_secret(api)["data"]) == {keys.ring.newest.secret_entry_name, FINGERPRINT_ENTRY}
    assert bundle(api).newest.key_id == keys.ring.newest.key_id

    writes = list(api.writes)
    assert store.ensure_keys(DAY0 + dt.timedelta(days=400)) is False
    assert store.publish_public_keys() is False
    assert api.writes == writes


def test_rotation_adds_a_newest_key_and_keeps_every_old_one() -> None:
    api = FakeApi()
    store = make_store(api)
    store.ensure_keys(DAY0)
    first = store.load().ring.newest
    # A clock behind the newest key must still yield the newest key.
    second = store.rotate(DAY0 - dt.timedelta(days=1))
    assert second.created > first.created
    ring = store.load().ring
    assert set(ring.key_ids) == {first.key_id, second.key_id}
    assert ring.newest.key_id == second.key_id
    store.publish_public_keys()
    assert [k.key_id for k in bundle(api)] == [first.key_id, second.key_id]


def test_rotation_is_due_after_the_interval_and_can_be_disabled() -> None:
    api = FakeApi()
    store = make_store(api, key_rotation_days=30.0)
    assert store.due_for_rotation(DAY0) is False  # no Secret: never start a new ring
    store.ensure_keys(DAY0)
    assert store.due_for_rotation(DAY0 + dt.timedelta(days=29)) is False
    assert store.due_for_rotation(DAY0 + dt.timedelta(days=30)) is True
    assert make_store(api, key_rotation_days=0).due_for_rotation(DAY0 + dt.timedelta(days=999)) is (
        False
    )


def test_rotation_needs_the_key_secret() -> None:
    with pytest.raises(NotFoundError, match=KEY_SECRET_NAME):
        make_store(FakeApi()).rotate(DAY0)


def test_a_concurrent_write_is_a_conflict_not_a_lost_key() -> None:
    api = FakeApi()
    store = make_store(api)
    store.ensure_keys(DAY0)
    stale = store.read_secret()
    store.rotate(DAY0 + dt.timedelta(days=1))
    assert stale is not None
    with pytest.raises(ConflictError):
        store._add_entries(stale, {"x.json": "e30="})
    assert len(store.load().ring) == 2


def test_missing_pieces_are_added_to_an_existing_secret_without_replacing_anything() -> None:
    api = FakeApi()
    store = make_store(api)
    store.ensure_keys(DAY0)
    secret = key_secret(api)
    key_entry = next(n for n in secret["data"] if n != FINGERPRINT_ENTRY)
    huge = base64.b64encode(b"x" * 5000).decode()
    secret["data"] = {
        key_entry: secret["data"][key_entry],
        "damaged.json": "bm90IGpzb24=",
        "huge.json": huge,
    }
    assert store.ensure_keys(DAY0) is True
    data = key_secret(api)["data"]
    assert set(data) == {key_entry, "damaged.json", "huge.json", FINGERPRINT_ENTRY}
    assert (data["damaged.json"], data["huge.json"]) == ("bm90IGpzb24=", huge)
    keys = parse_key_secret(key_secret(api))
    assert keys.invalid_entries == ("damaged.json", "huge.json")
    assert len(keys.ring) == 1


def test_the_configured_suite_is_used_for_new_keys() -> None:
    api = FakeApi()
    store = make_store(api, sealing_suite="mlkem768-x25519")
    store.ensure_keys(DAY0)
    assert store.load().ring.newest.suite is Suite.MLKEM768_X25519
    entry = next(v for n, v in key_secret(api)["data"].items() if n != FINGERPRINT_ENTRY)
    assert json.loads(base64.b64decode(entry))["suite"] == "mlkem768-x25519"


# --- the keys a reconcile uses: the watched copy, re-read once for a new key ----


class CountingApi(FakeApi):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get_or_none(self, resource: Resource[P], namespace: str | None, name: str) -> P | None:
        self.reads += 1
        return super().get_or_none(resource, namespace, name)


def test_current_keys_come_from_the_watch_once_it_has_reported() -> None:
    api = CountingApi()
    store = make_store(api)
    store.ensure_keys(DAY0)
    api.reads = 0
    # Before the watch reports, every call reads the Secret.
    assert store.current().ring.newest.key_id == store.load().ring.newest.key_id
    assert api.reads == 2
    watched = store.observe(key_secret(api))
    api.reads = 0
    assert store.current() is watched
    assert store.current() is watched
    assert api.reads == 0
    # A deletion reported by the watch: no keys, still without a read.
    assert store.observe(None).present is False
    assert store.current().present is False
    assert api.reads == 0


def test_a_token_for_a_key_the_watch_has_not_reported_yet_is_opened_after_one_reread() -> None:
    api = CountingApi()
    store = make_store(api)
    store.ensure_keys(DAY0)
    store.observe(key_secret(api))  # the watch saw the first key only
    newest = store.rotate(DAY0 + dt.timedelta(days=1))
    context = SealingContext.bind(Scope.STRICT, item="password", namespace="ns", name="db")
    token = seal(b"value", newest.public, context)
    reconciler = SealedSecretReconciler(api, store.settings, keys=store)

    api.reads = 0
    keys, opened = reconciler._unseal(None, {"password": token}, Scope.STRICT, "ns", "db")
    assert opened == {"password": b"value"}
    assert newest.key_id in keys.ring.key_ids
    assert api.reads == 1

    # A key nobody holds stays a missing key, after exactly one more read.
    stranger = seal(b"value", generate_keypair(created=DAY0).public, context)
    api.reads = 0
    with pytest.raises(UnknownKeyError):
        reconciler._unseal(None, {"password": stranger}, Scope.STRICT, "ns", "db")
    assert api.reads == 1
