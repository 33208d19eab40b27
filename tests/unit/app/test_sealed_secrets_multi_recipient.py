"""The operator's unseal path with multi-recipient tokens: its own slot, or a clear error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kstrata.app.sealed_secrets import unseal_all
from kstrata.crypto import KeyRing, Scope, SealingContext, generate_keypair, seal, seal_multi
from kstrata.errors import UnknownKeyError

NOW = datetime(2025, 6, 1, tzinfo=UTC)
CANARY = b"multi-recipient-operator-canary"


def _ctx(item: str) -> SealingContext:
    return SealingContext.bind("strict", namespace="ns", name="db", item=item)


def test_a_foreign_recipient_next_to_ours_is_not_an_error() -> None:
    ours, theirs = generate_keypair(created=NOW), generate_keypair(created=NOW)
    tokens = {
        "password": seal_multi(CANARY, [theirs.public, ours.public], _ctx("password")),
        "username": seal(b"app", ours.public, _ctx("username")),  # old tokens keep opening
    }
    opened = unseal_all(KeyRing([ours]), tokens, Scope.STRICT, namespace="ns", name="db")
    assert opened == {"password": CANARY, "username": b"app"}
    assert KeyRing([ours]).key_id_for(tokens["password"]) == ours.key_id


def test_no_recipient_for_this_cluster_is_reported_by_key_ids_only() -> None:
    ours = generate_keypair(created=NOW)
    staging, prod = generate_keypair(created=NOW), generate_keypair(created=NOW)
    tokens = {"password": seal_multi(CANARY, [staging.public, prod.public], _ctx("password"))}
    with pytest.raises(UnknownKeyError) as caught:
        unseal_all(KeyRing([ours]), tokens, Scope.STRICT, namespace="ns", name="db")
    message = caught.value.message
    assert "sealed to a key the operator does not hold: item password" in message
    assert staging.key_id in message
    assert prod.key_id in message
    assert ours.key_id not in message
    assert caught.value.reason == "SealingKeyMissing"
    assert CANARY.decode() not in message
    assert tokens["password"][5:40] not in message
