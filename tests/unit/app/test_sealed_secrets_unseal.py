"""The pure parts of unsealing: all-or-nothing opening, label values (spec parsing: domain)."""

from __future__ import annotations

import datetime as dt

import pytest

from kstrata.app.sealed_secrets import label_value, unseal_all
from kstrata.crypto import KeyRing, Scope, SealingContext, generate_keypair, seal
from kstrata.errors import (
    SealingError,
    TokenFormatError,
    UnknownKeyError,
    UnsealError,
)

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
SECRET_VALUE = b"canary-4f1e-do-not-print"


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing([generate_keypair(created=NOW)])


def sealed(
    ring: KeyRing,
    value: bytes,
    item: str,
    *,
    scope: Scope = Scope.STRICT,
    namespace: str = "ns",
    name: str = "db",
) -> str:
    context = SealingContext.bind(scope, item=item, namespace=namespace, name=name)
    return seal(value, ring.newest.public, context)


def test_every_item_opens_at_its_own_place(ring: KeyRing) -> None:
    tokens = {
        "user": sealed(ring, b"admin", "user"),
        "password": sealed(ring, SECRET_VALUE, "password"),
    }
    opened = unseal_all(ring, tokens, Scope.STRICT, namespace="ns", name="db")
    assert opened == {"user": b"admin", "password": SECRET_VALUE}


@pytest.mark.parametrize(
    ("namespace", "name"),
    [("other", "db"), ("ns", "renamed")],
    ids=["replayed-into-another-namespace", "renamed-under-strict-scope"],
)
def test_a_strict_token_does_not_open_elsewhere(ring: KeyRing, namespace: str, name: str) -> None:
    tokens = {"password": sealed(ring, SECRET_VALUE, "password")}
    with pytest.raises(UnsealError) as caught:
        unseal_all(ring, tokens, Scope.STRICT, namespace=namespace, name=name)
    assert "password" in caught.value.message
    assert ring.newest.key_id in caught.value.message


def test_namespace_scope_allows_a_rename_and_cluster_scope_a_move(ring: KeyRing) -> None:
    by_namespace = {"k": sealed(ring, b"v", "k", scope=Scope.NAMESPACE)}
    assert unseal_all(ring, by_namespace, Scope.NAMESPACE, namespace="ns", name="other") == {
        "k": b"v"
    }
    anywhere = {"k": sealed(ring, b"v", "k", scope=Scope.CLUSTER)}
    assert unseal_all(ring, anywhere, Scope.CLUSTER, namespace="elsewhere", name="x") == {"k": b"v"}
    # The scope comes from the caller: a strict token does not open under "cluster".
    strict = {"k": sealed(ring, b"v", "k")}
    with pytest.raises(UnsealError):
        unseal_all(ring, strict, Scope.CLUSTER, namespace="ns", name="db")


def test_swapped_items_fail_together_and_name_both(ring: KeyRing) -> None:
    tokens = {
        "user": sealed(ring, SECRET_VALUE, "password"),
        "password": sealed(ring, b"admin", "user"),
    }
    with pytest.raises(UnsealError) as caught:
        unseal_all(ring, tokens, Scope.STRICT, namespace="ns", name="db")
    message = caught.value.message
    assert "2 of 2 item(s)" in message
    assert "user" in message
    assert "password" in message
    assert SECRET_VALUE.decode() not in message
    assert "admin" not in message


def test_one_bad_item_fails_everything(ring: KeyRing) -> None:
    foreign = KeyRing([generate_keypair(created=NOW)])
    tokens = {
        "good": sealed(ring, SECRET_VALUE, "good"),
        "foreign": sealed(foreign, b"x", "foreign"),
    }
    with pytest.raises(UnknownKeyError) as caught:
        unseal_all(ring, tokens, Scope.STRICT, namespace="ns", name="db")
    assert caught.value.reason == "SealingKeyMissing"
    assert foreign.newest.key_id in caught.value.message
    assert "1 of 2 item(s)" in caught.value.message
    assert SECRET_VALUE.decode() not in str(caught.value)


def test_reasons_that_need_a_new_spec_win_over_a_missing_key(ring: KeyRing) -> None:
    foreign = KeyRing([generate_keypair(created=NOW)])
    missing = {"a": sealed(foreign, b"x", "a")}
    malformed = {**missing, "b": "kss3:AAAA"}
    with pytest.raises(TokenFormatError) as caught:
        unseal_all(ring, malformed, Scope.STRICT, namespace="ns", name="db")
    assert "unsupported sealed token version 3" in caught.value.message
    assert caught.value.reason == "MalformedToken"
    not_opening = {**missing, "b": sealed(ring, b"x", "c")}
    with pytest.raises(UnsealError) as unsealed:
        unseal_all(ring, not_opening, Scope.STRICT, namespace="ns", name="db")
    assert unsealed.value.reason == "DecryptionFailed"


def test_an_empty_ring_reports_every_key_as_missing() -> None:
    ring = KeyRing([generate_keypair(created=NOW)])
    tokens = {"a": sealed(ring, b"x", "a")}
    with pytest.raises(UnknownKeyError) as caught:
        unseal_all(KeyRing(), tokens, Scope.STRICT, namespace="ns", name="db")
    assert ring.newest.key_id in caught.value.message


def test_many_failures_are_summarised(ring: KeyRing) -> None:
    tokens = {f"k{i:02d}": "kss1:" for i in range(20)}
    with pytest.raises(TokenFormatError) as caught:
        unseal_all(ring, tokens, Scope.STRICT, namespace="ns", name="db")
    assert "(and 12 more)" in caught.value.message


def test_long_names_become_valid_label_values() -> None:
    assert label_value("db") == "db"
    long = "a." * 100 + "b"
    value = label_value(long)
    assert len(value) <= 63
    assert value[-1].isalnum()
    assert value != label_value("a." * 100 + "c")


def test_an_invalid_item_key_is_an_invalid_context(ring: KeyRing) -> None:
    with pytest.raises(SealingError) as caught:
        unseal_all(ring, {"..bad": "kss1:AAAA"}, Scope.STRICT, namespace="ns", name="db")
    assert caught.value.reason == "InvalidSealingContext"
