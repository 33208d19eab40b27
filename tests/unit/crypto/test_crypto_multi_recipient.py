"""Multi-recipient (kss2) tokens: each cluster opens its own slot, nothing else opens anything.

The properties of docs/crypto.md §4a: every recipient opens the same value
under the same context; a recipient that is not this ring's is skipped, not an
error; a token with no recipient here is ``UnknownKeyError`` naming every key
id and nothing else; every bit of the body is authenticated (a flip never opens
and never raises anything but the three open errors); the context is bound in
both the recipient seal and the payload.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kstrata.crypto import (
    MAX_PLAINTEXT_BYTES,
    MAX_RECIPIENTS,
    MAX_TOKEN_CHARS,
    KeyPair,
    KeyRing,
    SealingContext,
    Suite,
    generate_keypair,
    parse_token,
    seal,
    seal_multi,
)
from kstrata.crypto._strict import b64url_decode, b64url_encode
from kstrata.crypto.sealing import TOKEN_PREFIX_MULTI
from kstrata.errors import (
    InputLimitError,
    SealingError,
    TokenFormatError,
    UnknownKeyError,
    UnsealError,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
OPEN_ERRORS = (TokenFormatError, UnknownKeyError, UnsealError)
CTX = SealingContext.bind("strict", namespace="payments", name="db", item="password")
VALUE = b"multi-recipient canary 7f3a"


@pytest.fixture(scope="module")
def staging() -> KeyPair:
    return generate_keypair(suite=Suite.X25519, created=T0)


@pytest.fixture(scope="module")
def prod() -> KeyPair:
    return generate_keypair(suite=Suite.MLKEM768_X25519, created=T0)


@pytest.fixture(scope="module")
def breakglass() -> KeyPair:
    return generate_keypair(suite=Suite.X25519, created=T0)


def _body(token: str) -> bytes:
    return b64url_decode(token[len(TOKEN_PREFIX_MULTI) :])


def _token(body: bytes) -> str:
    return TOKEN_PREFIX_MULTI + b64url_encode(body)


def test_every_recipient_opens_the_same_value(
    staging: KeyPair, prod: KeyPair, breakglass: KeyPair
) -> None:
    token = seal_multi(VALUE, [staging.public, prod.public, breakglass.public], CTX)
    assert token.startswith("kss2:")
    assert VALUE not in token.encode()
    header = parse_token(token)
    assert header.version == 2
    assert header.key_ids == (staging.key_id, prod.key_id, breakglass.key_id)
    assert [r.suite for r in header.recipients] == [
        Suite.X25519,
        Suite.MLKEM768_X25519,
        Suite.X25519,
    ]
    for pair in (staging, prod, breakglass):
        # Each cluster holds only its own key: the others' slots are skipped, not errors.
        ring = KeyRing([pair])
        assert ring.open(token, CTX) == VALUE
        assert ring.key_id_for(token) == pair.key_id


def test_a_ring_holding_several_recipients_uses_the_first_in_token_order(
    staging: KeyPair, breakglass: KeyPair
) -> None:
    token = seal_multi(VALUE, [breakglass.public, staging.public], CTX)
    ring = KeyRing([staging, breakglass])
    assert ring.key_id_for(token) == breakglass.key_id
    assert ring.open(token, CTX) == VALUE


def test_no_recipient_here_is_unknown_key_naming_every_key_id(
    staging: KeyPair, prod: KeyPair, breakglass: KeyPair
) -> None:
    token = seal_multi(VALUE, [staging.public, prod.public], CTX)
    with pytest.raises(UnknownKeyError) as info:
        KeyRing([breakglass]).open(token, CTX)
    message = str(info.value)
    assert staging.key_id in message
    assert prod.key_id in message
    assert "2 recipients" in message
    with pytest.raises(UnknownKeyError):
        KeyRing().open(token, CTX)


@pytest.mark.parametrize(
    "other",
    [
        SealingContext.bind("strict", namespace="payments-dev", name="db", item="password"),
        SealingContext.bind("strict", namespace="payments", name="db2", item="password"),
        SealingContext.bind("strict", namespace="payments", name="db", item="username"),
        SealingContext.bind("namespace", namespace="payments", item="password"),
        SealingContext.bind("cluster", item="password"),
    ],
)
def test_context_is_bound_for_every_recipient(
    staging: KeyPair, prod: KeyPair, other: SealingContext
) -> None:
    token = seal_multi(VALUE, [staging.public, prod.public], CTX)
    for pair in (staging, prod):
        with pytest.raises(UnsealError) as info:
            KeyRing([pair]).open(token, other)
        assert str(info.value) == str(UnsealError())
        assert info.value.__cause__ is None


def test_every_single_bit_flip_fails_cleanly(staging: KeyPair, breakglass: KeyPair) -> None:
    token = seal_multi(b"v", [breakglass.public, staging.public], CTX)
    body = _body(token)
    ring = KeyRing([staging])
    for index in range(len(body)):
        for bit in range(8):
            flipped = bytearray(body)
            flipped[index] ^= 1 << bit
            with pytest.raises(OPEN_ERRORS):
                ring.open(_token(bytes(flipped)), CTX)


def test_every_text_character_change_fails_cleanly(staging: KeyPair) -> None:
    token = seal_multi(b"v", [staging.public], CTX)
    ring = KeyRing([staging])
    for index in range(len(TOKEN_PREFIX_MULTI), len(token)):
        replacement = "A" if token[index] != "A" else "B"
        with pytest.raises(OPEN_ERRORS):
            ring.open(token[:index] + replacement + token[index + 1 :], CTX)


def test_removing_or_reordering_recipients_breaks_the_payload(
    staging: KeyPair, breakglass: KeyPair
) -> None:
    token = seal_multi(VALUE, [breakglass.public, staging.public], CTX)
    body = _body(token)
    entry = 1 + 16 + 32 + 48
    first = body[2 : 2 + entry]
    second = body[2 + entry : 2 + 2 * entry]
    payload = body[2 + 2 * entry :]
    ring = KeyRing([staging])
    with pytest.raises(UnsealError):
        ring.open(_token(bytes([2, 1]) + second + payload), CTX)
    with pytest.raises(UnsealError):
        ring.open(_token(bytes([2, 2]) + second + first + payload), CTX)


def test_v1_tokens_keep_opening_next_to_v2(staging: KeyPair, prod: KeyPair) -> None:
    ring = KeyRing([staging, prod])
    v1 = seal(VALUE, staging.public, CTX)
    v2 = seal_multi(VALUE, [prod.public, staging.public], CTX)
    assert v1.startswith("kss1:")
    assert ring.open(v1, CTX) == ring.open(v2, CTX) == VALUE
    assert parse_token(v1).key_ids == (staging.key_id,)


def test_seal_multi_refuses_bad_recipient_lists(staging: KeyPair) -> None:
    with pytest.raises(SealingError, match="1 to"):
        seal_multi(VALUE, [], CTX)
    with pytest.raises(SealingError, match="twice"):
        seal_multi(VALUE, [staging.public, staging.public], CTX)
    many = [generate_keypair(created=T0).public for _ in range(MAX_RECIPIENTS + 1)]
    with pytest.raises(SealingError, match="1 to"):
        seal_multi(VALUE, many, CTX)
    assert seal_multi(VALUE, many[:MAX_RECIPIENTS], CTX).startswith("kss2:")


def test_size_bound_is_the_one_token_bound(staging: KeyPair, prod: KeyPair) -> None:
    with pytest.raises(InputLimitError):
        seal_multi(b"x" * (MAX_PLAINTEXT_BYTES + 1), [staging.public], CTX)
    # A 1 MiB value plus a hybrid and an x25519 recipient does not fit one token bound.
    with pytest.raises(InputLimitError, match="2 recipients"):
        seal_multi(b"x" * MAX_PLAINTEXT_BYTES, [staging.public, prod.public], CTX)
    token = seal_multi(b"x" * (MAX_PLAINTEXT_BYTES - 4096), [staging.public, prod.public], CTX)
    assert len(token) <= MAX_TOKEN_CHARS
    assert KeyRing([prod]).open(token, CTX) == b"x" * (MAX_PLAINTEXT_BYTES - 4096)


def test_the_slot_for_a_key_of_another_suite_is_a_format_error(staging: KeyPair) -> None:
    # The token says x25519 for this key id; a ring holding a hybrid key under it cannot exist,
    # so relabel the slot's suite byte instead: the structure no longer fits (format error).
    token = seal_multi(VALUE, [staging.public], CTX)
    body = bytearray(_body(token))
    body[2] = 0x02
    with pytest.raises(TokenFormatError):
        KeyRing([staging]).open(_token(bytes(body)), CTX)
