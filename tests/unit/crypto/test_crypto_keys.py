"""Key pairs, their Secret entries, the public key bundle and the key ring."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from kstrata.crypto import (
    KeyPair,
    KeyRing,
    PublicKey,
    PublicKeyBundle,
    SealingContext,
    Suite,
    generate_keypair,
    seal,
)
from kstrata.crypto.keys import MAX_BUNDLE_BYTES, MAX_BUNDLE_KEYS, MAX_KEY_ENTRY_BYTES
from kstrata.errors import InputLimitError, SealingError, UnknownKeyError

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CTX = SealingContext.bind("namespace", namespace="ns", item="k")


@pytest.fixture(scope="module")
def pairs() -> dict[Suite, KeyPair]:
    return {suite: generate_keypair(suite=suite, created=T0) for suite in Suite}


# --- key pairs -------------------------------------------------------------------


def test_default_suite_is_x25519() -> None:
    assert generate_keypair(created=T0).suite is Suite.X25519


@pytest.mark.parametrize("suite", list(Suite))
def test_secret_entry_round_trip(suite: Suite, pairs: dict[Suite, KeyPair]) -> None:
    pair = pairs[suite]
    entry = pair.to_secret_entry()
    doc = json.loads(entry)
    assert set(doc) == {"format", "keyId", "suite", "created", "privateKey"}
    assert doc["suite"] == suite.value
    assert doc["created"] == "2025-03-01T12:00:00Z"
    back = KeyPair.from_secret_entry(entry)
    assert back.key_id == pair.key_id
    assert back.private_bytes == pair.private_bytes
    assert back.created == pair.created
    assert back.public == pair.public
    assert KeyPair.from_secret_entry(entry.decode()).key_id == pair.key_id
    # The restored key opens what was sealed to the original.
    assert KeyRing([back]).open(seal(b"v", pair.public, CTX), CTX) == b"v"
    assert pair.secret_entry_name == f"{pair.key_id}.json"


def test_key_ids_are_distinct_and_short(pairs: dict[Suite, KeyPair]) -> None:
    ids = {p.key_id for p in pairs.values()} | {generate_keypair(created=T0).key_id}
    assert len(ids) == 3
    for key_id in ids:
        assert len(key_id) == 32
        assert set(key_id) <= set("0123456789abcdef")


def test_created_is_normalised_to_utc_seconds() -> None:
    cet = timezone(timedelta(hours=1))
    pair = generate_keypair(created=datetime(2025, 3, 1, 13, 0, 0, 999_999, tzinfo=cet))
    assert pair.created == T0
    assert pair.created.tzinfo is UTC
    with pytest.raises(SealingError):
        generate_keypair(created=datetime(2025, 3, 1))  # naive: ambiguous
    with pytest.raises(SealingError):
        generate_keypair(suite="x25519", created=T0)  # type: ignore[arg-type]


def _entry(pair: KeyPair, **changes: Any) -> bytes:
    doc = json.loads(pair.to_secret_entry())
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "changes",
    [
        {"format": "kstrata.dev/sealing-key/v2"},
        {"suite": "rsa"},
        {"suite": "mlkem768-x25519"},  # private key of the wrong length for the suite
        {"created": "2025-03-01T12:00:00+00:00"},
        {"created": "2025-03-01"},
        {"created": 1740830400},
        {"keyId": "00" * 16},
        {"keyId": None},
        {"privateKey": None},
        {"privateKey": "not base64!"},
        {"privateKey": "AAAA"},
        {"extra": "member"},
    ],
)
def test_bad_secret_entries(changes: dict[str, Any], pairs: dict[Suite, KeyPair]) -> None:
    pair = pairs[Suite.X25519]
    with pytest.raises(SealingError) as info:
        KeyPair.from_secret_entry(_entry(pair, **changes))
    assert info.value.reason == "InvalidKeyMaterial"


def test_secret_entry_strict_json(pairs: dict[Suite, KeyPair]) -> None:
    pair = pairs[Suite.X25519]
    good = pair.to_secret_entry().decode()
    duplicated = good.replace('"suite"', '"suite": "x25519", "suite"', 1)
    non_canonical_b64 = good.replace('=",', '",', 1)  # padding dropped
    for text in [
        duplicated,
        non_canonical_b64,
        "[]",
        "null",
        "{",
        good.replace('"x25519"', "NaN"),
        b"\xff\xfe".decode("latin-1"),
    ]:
        with pytest.raises(SealingError):
            KeyPair.from_secret_entry(text)
    with pytest.raises(SealingError):
        KeyPair.from_secret_entry(b"\xff" + good.encode())
    with pytest.raises(InputLimitError):
        KeyPair.from_secret_entry(good + " " * MAX_KEY_ENTRY_BYTES)


def test_entry_errors_do_not_echo_key_material(pairs: dict[Suite, KeyPair]) -> None:
    pair = pairs[Suite.X25519]
    b64 = json.loads(pair.to_secret_entry())["privateKey"]
    for entry in (
        _entry(pair, keyId="ff" * 16),
        _entry(pair, suite="mlkem768-x25519"),
        _entry(pair, format=b64),
        _entry(pair, **{b64: "x"}),
    ):
        with pytest.raises(SealingError) as info:
            KeyPair.from_secret_entry(entry)
        assert b64 not in str(info.value)
        assert b64[:16] not in repr(info.value)
        assert pair.private_bytes.hex() not in str(info.value)


# --- public key bundle ------------------------------------------------------------


def _bundle(n: int, suite: Suite = Suite.X25519) -> list[KeyPair]:
    return [generate_keypair(suite=suite, created=T0 + timedelta(days=30 * i)) for i in range(n)]


def test_bundle_round_trip_and_newest(pairs: dict[Suite, KeyPair]) -> None:
    keys = [*_bundle(3), pairs[Suite.MLKEM768_X25519]]
    bundle = PublicKeyBundle.of(reversed(keys))
    text = bundle.serialize()
    parsed = PublicKeyBundle.parse(text)
    assert parsed == bundle
    assert PublicKeyBundle.parse(text.encode()) == bundle
    assert [k.key_id for k in parsed] == [k.key_id for k in sorted(keys, key=_order)]
    assert parsed.newest.key_id == keys[2].key_id
    assert parsed.get(keys[0].key_id).public_bytes == keys[0].public.public_bytes
    assert len(parsed) == 4
    doc = json.loads(text)
    assert doc["format"] == "kstrata.dev/sealing-public-keys/v1"
    assert set(doc["keys"][0]) == {"keyId", "suite", "publicKey", "created"}
    # Sealing to the parsed newest key opens with the private ring.
    token = seal(b"v", parsed.newest, CTX)
    assert KeyRing(keys).open(token, CTX) == b"v"


def _order(k: KeyPair) -> tuple[datetime, str]:
    return (k.created, k.key_id)


def test_newest_ties_are_broken_by_key_id() -> None:
    a, b = generate_keypair(created=T0), generate_keypair(created=T0)
    expected = max(a.key_id, b.key_id)
    assert PublicKeyBundle.of([a, b]).newest.key_id == expected
    assert PublicKeyBundle.of([b, a]).newest.key_id == expected
    assert KeyRing([a, b]).newest.key_id == expected
    assert KeyRing([b, a]).newest.key_id == expected


def test_empty_bundle_and_ring() -> None:
    empty = PublicKeyBundle.parse('{"format": "kstrata.dev/sealing-public-keys/v1", "keys": []}')
    with pytest.raises(UnknownKeyError):
        _ = empty.newest
    with pytest.raises(UnknownKeyError):
        _ = KeyRing().newest
    with pytest.raises(UnknownKeyError):
        empty.get("00" * 16)


def _bundle_doc(keys: list[KeyPair]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(PublicKeyBundle.of(keys).serialize())
    return result


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format="kstrata.dev/sealing-public-keys/v2"),
        lambda d: d.update(keys={}),
        lambda d: d.update(extra=1),
        lambda d: d.pop("keys"),
        lambda d: d["keys"][0].update(keyId="00" * 16),
        lambda d: d["keys"][0].update(keyId=d["keys"][0]["keyId"].upper()),
        lambda d: d["keys"][0].update(suite="mlkem768-x25519"),
        lambda d: d["keys"][0].update(publicKey=d["keys"][0]["publicKey"].rstrip("=")),
        lambda d: d["keys"][0].update(publicKey="AAAA"),
        lambda d: d["keys"][0].update(created="yesterday"),
        lambda d: d["keys"][0].pop("created"),
        lambda d: d["keys"].append(d["keys"][0]),
        lambda d: d["keys"].append("key"),
    ],
)
def test_bad_bundles(mutate: Any) -> None:
    doc = _bundle_doc(_bundle(2))
    mutate(doc)
    with pytest.raises(SealingError) as info:
        PublicKeyBundle.parse(json.dumps(doc))
    assert info.value.reason == "InvalidPublicKeyBundle"


def test_invalid_mlkem_public_key_is_refused(pairs: dict[Suite, KeyPair]) -> None:
    # ML-KEM public keys carry coefficients mod q; 0xff bytes are out of range.
    with pytest.raises(SealingError):
        PublicKey(Suite.MLKEM768_X25519, b"\xff" * 1216, T0)
    doc = _bundle_doc([pairs[Suite.MLKEM768_X25519]])
    doc["keys"][0]["publicKey"] = __import__("base64").b64encode(b"\xff" * 1216).decode()
    with pytest.raises(SealingError):
        PublicKeyBundle.parse(json.dumps(doc))


def test_bundle_bounds() -> None:
    with pytest.raises(InputLimitError):
        PublicKeyBundle.parse(" " * (MAX_BUNDLE_BYTES + 1))
    # Counted before any key is decoded.
    doc = {"format": "kstrata.dev/sealing-public-keys/v1", "keys": [{}] * (MAX_BUNDLE_KEYS + 1)}
    with pytest.raises(InputLimitError):
        PublicKeyBundle.parse(json.dumps(doc))
    with pytest.raises(SealingError):
        PublicKeyBundle.parse("[" * 100_000 + "]" * 100_000)


def test_bundle_errors_do_not_echo_values() -> None:
    doc = _bundle_doc(_bundle(1))
    doc["format"] = "hunter2-PASSWORD"
    doc["hunter2-PASSWORD"] = 1
    with pytest.raises(SealingError) as info:
        PublicKeyBundle.parse(json.dumps(doc))
    assert "hunter2" not in str(info.value)


def test_bundle_refuses_duplicates_in_constructor() -> None:
    pair = generate_keypair(created=T0)
    with pytest.raises(SealingError):
        PublicKeyBundle.of([pair, pair.public])


# --- key ring -----------------------------------------------------------------------


def test_ring_basics() -> None:
    keys = _bundle(3)
    ring = KeyRing(keys)
    assert len(ring) == 3
    assert keys[0].key_id in ring
    assert "nope" not in ring
    assert ring.key_ids == tuple(sorted(k.key_id for k in keys))
    assert ring.newest is keys[2]
    assert ring.get(keys[1].key_id) is keys[1]
    assert ring.public_bundle() == PublicKeyBundle.of(keys)


def test_ring_unknown_key_message() -> None:
    ring = KeyRing(_bundle(1))
    with pytest.raises(UnknownKeyError, match="ab" * 16):
        ring.get("ab" * 16)
    with pytest.raises(UnknownKeyError) as info:
        ring.get("password=hunter2")
    assert "hunter2" not in str(info.value)


def test_ring_refuses_duplicates_and_non_keys() -> None:
    pair = generate_keypair(created=T0)
    with pytest.raises(SealingError):
        KeyRing([pair, KeyPair.from_secret_entry(pair.to_secret_entry())])
    with pytest.raises(SealingError):
        KeyRing([pair.public])  # type: ignore[list-item]


def test_rotation_keeps_old_keys_opening() -> None:
    old = generate_keypair(created=T0)
    ring = KeyRing([old])
    old_token = seal(b"old", ring.public_bundle().newest, CTX)
    new = generate_keypair(suite=Suite.MLKEM768_X25519, created=T0 + timedelta(days=30))
    rotated = ring.with_key(new)
    assert len(ring) == 1  # immutable
    assert rotated.newest is new
    new_token = seal(b"new", rotated.public_bundle().newest, CTX)
    assert rotated.open(old_token, CTX) == b"old"
    assert rotated.open(new_token, CTX) == b"new"
    with pytest.raises(UnknownKeyError):
        ring.open(new_token, CTX)


def test_ring_secret_data_round_trip() -> None:
    keys = [*_bundle(2), generate_keypair(suite=Suite.MLKEM768_X25519, created=T0)]
    data = KeyRing(keys).to_secret_data()
    assert set(data) == {f"{k.key_id}.json" for k in keys}
    restored = KeyRing.from_secret_data(data)
    assert restored.key_ids == KeyRing(keys).key_ids
    token = seal(b"v", keys[2].public, CTX)
    assert restored.open(token, CTX) == b"v"
