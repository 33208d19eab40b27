"""Sealing and opening: round trips, context binding, the error model, tamper resistance."""

from __future__ import annotations

import base64
import pickle
import subprocess
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kstrata.crypto import (
    MAX_PLAINTEXT_BYTES,
    MAX_TOKEN_CHARS,
    KeyPair,
    KeyRing,
    Scope,
    SealingContext,
    Suite,
    generate_keypair,
    parse_token,
    seal,
)
from kstrata.crypto._strict import b64url_decode, b64url_encode
from kstrata.crypto.sealing import TOKEN_PREFIX, open_with
from kstrata.errors import (
    InputLimitError,
    KstrataError,
    SealingError,
    TokenFormatError,
    UnknownKeyError,
    UnsealError,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
OPEN_ERRORS = (TokenFormatError, UnknownKeyError, UnsealError)
SUITES = list(Suite)

STRICT = SealingContext.bind("strict", namespace="payments", name="db", item="password")


@pytest.fixture(scope="module")
def keys() -> dict[Suite, KeyPair]:
    return {suite: generate_keypair(suite=suite, created=T0) for suite in Suite}


@pytest.fixture(scope="module")
def ring(keys: dict[Suite, KeyPair]) -> KeyRing:
    # A second key per suite, so a flipped key id can land on a held key of the same suite.
    extra = [generate_keypair(suite=s, created=T0 - timedelta(days=30)) for s in Suite]
    return KeyRing([*keys.values(), *extra])


def _body(token: str) -> bytes:
    return b64url_decode(token[len(TOKEN_PREFIX) :])


def _token(body: bytes) -> str:
    return TOKEN_PREFIX + b64url_encode(body)


# --- round trips and context binding --------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_round_trip(suite: Suite, keys: dict[Suite, KeyPair], ring: KeyRing) -> None:
    token = seal(b"s3cr3t value", keys[suite].public, STRICT)
    assert token.startswith("kss1:")
    assert token.isascii()
    assert ring.open(token, STRICT) == b"s3cr3t value"
    header = parse_token(token)
    assert header.suite is suite
    assert header.key_id == keys[suite].key_id
    assert header.version == 1


@pytest.mark.parametrize("suite", SUITES)
def test_two_seals_of_one_value_differ(suite: Suite, keys: dict[Suite, KeyPair]) -> None:
    a = seal(b"same", keys[suite].public, STRICT)
    b = seal(b"same", keys[suite].public, STRICT)
    assert a != b


def test_token_length_is_header_enc_plaintext_tag(keys: dict[Suite, KeyPair]) -> None:
    assert len(_body(seal(b"x" * 10, keys[Suite.X25519].public, STRICT))) == 17 + 32 + 10 + 16
    assert (
        len(_body(seal(b"x" * 10, keys[Suite.MLKEM768_X25519].public, STRICT)))
        == 17 + 1120 + 10 + 16
    )


@pytest.mark.parametrize("suite", SUITES)
def test_other_namespace_fails(suite: Suite, keys: dict[Suite, KeyPair], ring: KeyRing) -> None:
    for scope in ("strict", "namespace"):
        ctx = SealingContext.bind(scope, namespace="prod", name="db", item="pw")
        token = seal(b"v", keys[suite].public, ctx)
        other = SealingContext.bind(scope, namespace="dev", name="db", item="pw")
        with pytest.raises(UnsealError):
            ring.open(token, other)


@pytest.mark.parametrize("suite", SUITES)
def test_other_name_fails_under_strict(
    suite: Suite, keys: dict[Suite, KeyPair], ring: KeyRing
) -> None:
    token = seal(b"v", keys[suite].public, STRICT)
    with pytest.raises(UnsealError):
        ring.open(
            token, SealingContext.bind("strict", namespace="payments", name="db2", item="password")
        )


@pytest.mark.parametrize("suite", SUITES)
def test_namespace_scope_allows_another_name(
    suite: Suite, keys: dict[Suite, KeyPair], ring: KeyRing
) -> None:
    sealed_as = SealingContext.bind("namespace", namespace="prod", name="old-name", item="pw")
    opened_as = SealingContext.bind("namespace", namespace="prod", name="new-name", item="pw")
    assert sealed_as == opened_as  # the name is not part of a namespace-scoped context
    token = seal(b"v", keys[suite].public, sealed_as)
    assert ring.open(token, opened_as) == b"v"
    with pytest.raises(UnsealError):
        ring.open(token, SealingContext.bind("namespace", namespace="prod2", item="pw"))


@pytest.mark.parametrize("suite", SUITES)
def test_cluster_scope_allows_another_namespace(
    suite: Suite, keys: dict[Suite, KeyPair], ring: KeyRing
) -> None:
    token = seal(b"v", keys[suite].public, SealingContext.bind("cluster", namespace="a", item="pw"))
    assert (
        ring.open(token, SealingContext.bind("cluster", namespace="b", name="x", item="pw")) == b"v"
    )
    with pytest.raises(UnsealError):
        ring.open(token, SealingContext.bind("cluster", item="pw2"))


@pytest.mark.parametrize("suite", SUITES)
def test_scope_is_bound(suite: Suite, keys: dict[Suite, KeyPair], ring: KeyRing) -> None:
    # The same coordinates under a wider scope must not open a narrower token, and vice versa.
    contexts = [
        SealingContext.bind(scope, namespace="prod", name="db", item="pw") for scope in Scope
    ]
    for sealed_as in contexts:
        token = seal(b"v", keys[suite].public, sealed_as)
        for opened_as in contexts:
            if opened_as == sealed_as:
                assert ring.open(token, opened_as) == b"v"
            else:
                with pytest.raises(UnsealError):
                    ring.open(token, opened_as)


@pytest.mark.parametrize("suite", SUITES)
def test_swapped_items_fail(suite: Suite, keys: dict[Suite, KeyPair], ring: KeyRing) -> None:
    user = SealingContext.bind("strict", namespace="ns", name="db", item="username")
    pw = SealingContext.bind("strict", namespace="ns", name="db", item="password")
    t_user = seal(b"admin", keys[suite].public, user)
    t_pw = seal(b"hunter2", keys[suite].public, pw)
    with pytest.raises(UnsealError):
        ring.open(t_user, pw)
    with pytest.raises(UnsealError):
        ring.open(t_pw, user)
    assert ring.open(t_user, user) == b"admin"
    assert ring.open(t_pw, pw) == b"hunter2"


# --- wrong keys ----------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_key_not_in_ring_is_unknown_key(suite: Suite, keys: dict[Suite, KeyPair]) -> None:
    token = seal(b"v", keys[suite].public, STRICT)
    stranger = KeyRing([generate_keypair(suite=suite, created=T0)])
    with pytest.raises(UnknownKeyError) as info:
        stranger.open(token, STRICT)
    assert keys[suite].key_id in str(info.value)  # key ids are public and help operators


@pytest.mark.parametrize("suite", SUITES)
def test_wrong_key_is_opaque_unseal_error(suite: Suite, keys: dict[Suite, KeyPair]) -> None:
    token = seal(b"v", keys[suite].public, STRICT)
    other = generate_keypair(suite=suite, created=T0)
    with pytest.raises(UnsealError):
        open_with(other, token, STRICT)
    # A token relabelled to name a held key: the key id is bound in info, so it fails too.
    relabelled = _token(_body(token)[:1] + bytes.fromhex(other.key_id) + _body(token)[17:])
    with pytest.raises(UnsealError):
        KeyRing([other]).open(relabelled, STRICT)


def test_token_suite_must_match_key_suite(keys: dict[Suite, KeyPair], ring: KeyRing) -> None:
    token = seal(b"v", keys[Suite.MLKEM768_X25519].public, STRICT)
    body = _body(token)
    with pytest.raises(TokenFormatError):
        ring.open(_token(b"\x01" + body[1:]), STRICT)


def test_ring_opens_with_the_named_key_only(
    keys: dict[Suite, KeyPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    import kstrata.crypto.keyring as keyring_module
    from kstrata.crypto.sealing import ParsedToken, open_parsed

    many = [generate_keypair(created=T0 + timedelta(seconds=i)) for i in range(20)]
    target = many[7]
    token = seal(b"v", target.public, STRICT)
    used: list[str] = []

    def spy(key: KeyPair, parsed: ParsedToken, context: SealingContext) -> bytes:
        used.append(key.key_id)
        return open_parsed(key, parsed, context)

    monkeypatch.setattr(keyring_module, "open_parsed", spy)
    assert KeyRing(many).open(token, STRICT) == b"v"
    assert used == [target.key_id]  # one lookup, one HPKE open: no trial decryption


# --- structure and bounds ------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_truncation(suite: Suite, keys: dict[Suite, KeyPair], ring: KeyRing) -> None:
    body = _body(seal(b"value of some length", keys[suite].public, STRICT))
    enc = 32 if suite is Suite.X25519 else 1120
    # Still long enough to hold a tag: a cryptographic failure, opaque.
    for cut in (1, 2, 16, len(b"value of some length")):
        with pytest.raises(UnsealError):
            ring.open(_token(body[:-cut]), STRICT)
    # Too short to hold header + enc + tag: decided from structure alone.
    for keep in (0, 1, 16, 17, 17 + enc, 17 + enc + 15):
        with pytest.raises(TokenFormatError):
            ring.open(_token(body[:keep]), STRICT)
    # Text-level truncation never opens either.
    token = _token(body)
    for cut in range(1, 12):
        with pytest.raises(OPEN_ERRORS):
            ring.open(token[:-cut], STRICT)


def test_unknown_version(keys: dict[Suite, KeyPair], ring: KeyRing) -> None:
    token = seal(b"v", keys[Suite.X25519].public, STRICT)
    for prefix in ("kss2:", "kss3:", "kss0:", "kss10:", "KSS1:", "kss1;", ""):
        with pytest.raises(TokenFormatError) as info:
            ring.open(prefix + token[len(TOKEN_PREFIX) :], STRICT)
        assert "kss1" in str(info.value) or "version" in str(info.value)
    with pytest.raises(TokenFormatError, match="version 3"):
        parse_token("kss3:AAAA")
    # kss2 is the multi-recipient layout: a v1 body under its prefix fails on the version byte.
    with pytest.raises(TokenFormatError, match="version byte"):
        parse_token("kss2:AAAA")


def test_unknown_suite(keys: dict[Suite, KeyPair], ring: KeyRing) -> None:
    body = _body(seal(b"v", keys[Suite.X25519].public, STRICT))
    for suite_id in (0x00, 0x03, 0x7F, 0xFF):
        with pytest.raises(TokenFormatError, match="suite"):
            ring.open(_token(bytes([suite_id]) + body[1:]), STRICT)


@pytest.mark.parametrize(
    "text",
    [
        "kss1:",
        "kss1:A",  # impossible base64 length
        "kss1:AAAA=",
        "kss1:AA==",
        "kss1:AAA\n",
        " kss1:AAAA",
        "kss1:AA AA",
        "kss1:ÄAAA",
        "kss1:AAA+",
        "kss1:AAA/",
    ],
)
def test_malformed_text(text: str, ring: KeyRing) -> None:
    with pytest.raises(TokenFormatError):
        ring.open(text, STRICT)


def test_non_text_token_is_format_error(ring: KeyRing) -> None:
    with pytest.raises(TokenFormatError):
        ring.open(b"kss1:AAAA", STRICT)  # type: ignore[arg-type]


def test_non_canonical_base64_is_refused(keys: dict[Suite, KeyPair], ring: KeyRing) -> None:
    # 20 bytes of body -> 27 chars, whose last char carries 2 unused bits.
    token = seal(b"abc", keys[Suite.X25519].public, STRICT)
    text = token[len(TOKEN_PREFIX) :]
    assert len(text) % 4 != 0
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    idx = alphabet.index(text[-1])
    variants = [text[:-1] + alphabet[idx ^ bit] for bit in (1, 2, 4, 8, 16, 32)]
    lenient_same = [
        v for v in variants if base64.urlsafe_b64decode(v + "=" * (-len(v) % 4)) == _body(token)
    ]
    assert lenient_same  # a lenient decoder would accept these as the same token
    for variant in lenient_same:
        with pytest.raises(TokenFormatError):
            ring.open(TOKEN_PREFIX + variant, STRICT)


def test_plaintext_bound(keys: dict[Suite, KeyPair], ring: KeyRing) -> None:
    big = b"\xa5" * MAX_PLAINTEXT_BYTES
    token = seal(big, keys[Suite.X25519].public, STRICT)
    assert len(token) <= MAX_TOKEN_CHARS
    assert ring.open(token, STRICT) == big
    with pytest.raises(InputLimitError):
        seal(big + b"\x00", keys[Suite.X25519].public, STRICT)
    hybrid = seal(big, keys[Suite.MLKEM768_X25519].public, STRICT)
    assert len(hybrid) <= MAX_TOKEN_CHARS


def test_oversize_tokens_are_refused_before_decoding(
    keys: dict[Suite, KeyPair], ring: KeyRing
) -> None:
    with pytest.raises(TokenFormatError, match="longer than"):
        ring.open("kss1:" + "A" * MAX_TOKEN_CHARS, STRICT)
    # Fits the text bound (sized for the hybrid enc) but not the X25519 suite's ciphertext bound.
    key_id = bytes.fromhex(keys[Suite.X25519].key_id)
    body = b"\x01" + key_id + bytes(32) + bytes(MAX_PLAINTEXT_BYTES + 17)
    token = _token(body)
    assert len(token) <= MAX_TOKEN_CHARS
    with pytest.raises(TokenFormatError, match="largest sealable"):
        ring.open(token, STRICT)


def test_bad_inputs_to_seal(keys: dict[Suite, KeyPair]) -> None:
    with pytest.raises(SealingError):
        seal("text", keys[Suite.X25519].public, STRICT)  # type: ignore[arg-type]
    with pytest.raises(SealingError):
        seal(b"v", keys[Suite.X25519], STRICT)  # type: ignore[arg-type]
    with pytest.raises(SealingError):
        seal(b"v", keys[Suite.X25519].public, ("ns", "name", "item"))  # type: ignore[arg-type]


def test_low_order_public_key_cannot_seal() -> None:
    from kstrata.crypto import PublicKey

    zero = PublicKey(Suite.X25519, bytes(32), T0)
    with pytest.raises(SealingError) as info:
        seal(b"v", zero, STRICT)
    assert zero.key_id in str(info.value)


# --- contexts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "namespace", "name", "item"),
    [
        ("strict", "Payments", "db", "pw"),  # uppercase namespace
        ("strict", "a" * 64, "db", "pw"),
        ("strict", "ns", "-db", "pw"),
        ("strict", "ns", "a" * 254, "pw"),
        ("strict", "ns", None, "pw"),
        ("strict", None, "db", "pw"),
        ("namespace", None, None, "pw"),
        ("strict", "ns", "db", ""),
        ("strict", "ns", "db", ".."),
        ("strict", "ns", "db", "..hidden"),
        ("strict", "ns", "db", "."),
        ("strict", "ns", "db", "a/b"),
        ("strict", "ns", "db", "x" * 254),
        ("strict", "ns", "db", "p\u00e4ss"),
        ("global", "ns", "db", "pw"),
    ],
)
def test_invalid_contexts(scope: str, namespace: str | None, name: str | None, item: str) -> None:
    with pytest.raises(SealingError) as info:
        SealingContext.bind(scope, namespace=namespace, name=name, item=item)
    assert info.value.reason == "InvalidSealingContext"


def test_context_constructor_refuses_unbound_fields() -> None:
    with pytest.raises(SealingError):
        SealingContext(Scope.NAMESPACE, item="pw", namespace="ns", name="db")
    with pytest.raises(SealingError):
        SealingContext(Scope.CLUSTER, item="pw", namespace="ns")
    ctx = SealingContext.bind(Scope.CLUSTER, namespace="ns", name="db", item="pw")
    assert (ctx.namespace, ctx.name) == (None, None)


def test_info_encoding_is_pinned() -> None:
    # The exact bytes of info are the format: this pins them independently of the vectors.
    ctx = SealingContext.bind("strict", namespace="ns", name="db", item="pw")
    info = ctx.hpke_info(version=1, suite_id=1, key_id=bytes(range(16)))
    expected = (
        b"\x00\x15kstrata.dev/sealed/v1"
        + b"\x00\x01\x01"
        + b"\x00\x01\x01"
        + b"\x00\x10"
        + bytes(range(16))
        + b"\x00\x06strict"
        + b"\x00\x02ns"
        + b"\x00\x02db"
        + b"\x00\x02pw"
    )
    assert info == expected
    cluster = SealingContext.bind("cluster", item="pw").hpke_info(
        version=1, suite_id=2, key_id=bytes(16)
    )
    assert cluster.endswith(b"\x00\x07cluster\x00\x00\x00\x00\x00\x02pw")


# --- property tests ----------------------------------------------------------------

_label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")
names = st.lists(_label, min_size=1, max_size=3).map(".".join)
items = st.from_regex(r"\A[-._a-zA-Z0-9]{1,30}\Z").filter(
    lambda s: s != "." and not s.startswith("..")
)
contexts = st.builds(
    SealingContext.bind,
    st.sampled_from(list(Scope)),
    item=items,
    namespace=_label,
    name=names,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plaintext=st.binary(max_size=2048), context=contexts, suite=st.sampled_from(SUITES))
def test_property_round_trip(
    plaintext: bytes,
    context: SealingContext,
    suite: Suite,
    keys: dict[Suite, KeyPair],
    ring: KeyRing,
) -> None:
    token = seal(plaintext, keys[suite].public, context)
    assert ring.open(token, context) == plaintext


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plaintext=st.binary(max_size=64),
    context=contexts,
    suite=st.sampled_from(SUITES),
    data=st.data(),
)
def test_property_bit_flip_never_opens(
    plaintext: bytes,
    context: SealingContext,
    suite: Suite,
    data: st.DataObject,
    keys: dict[Suite, KeyPair],
    ring: KeyRing,
) -> None:
    token = seal(plaintext, keys[suite].public, context)
    body = _body(token)
    bit = data.draw(st.integers(0, 8 * len(body) - 1), label="body bit")
    flipped = bytearray(body)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(OPEN_ERRORS):
        ring.open(_token(bytes(flipped)), context)
    pos = data.draw(st.integers(0, len(token) - 1), label="char")
    char_bit = data.draw(st.integers(0, 7), label="char bit")
    text = token[:pos] + chr(ord(token[pos]) ^ (1 << char_bit)) + token[pos + 1 :]
    with pytest.raises(OPEN_ERRORS):
        ring.open(text, context)


@pytest.mark.parametrize("suite", SUITES)
def test_every_single_bit_flip_fails(
    suite: Suite, keys: dict[Suite, KeyPair], ring: KeyRing
) -> None:
    """Exhaustive: each bit of the decoded body, and each bit of each character."""
    token = seal(b"flip me", keys[suite].public, STRICT)
    body = _body(token)
    outcomes: dict[type[Exception], int] = {}
    for bit in range(8 * len(body)):
        flipped = bytearray(body)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(OPEN_ERRORS) as info:
            ring.open(_token(bytes(flipped)), STRICT)
        outcomes[info.type] = outcomes.get(info.type, 0) + 1
    for pos in range(len(token)):
        for char_bit in range(8):
            text = token[:pos] + chr(ord(token[pos]) ^ (1 << char_bit)) + token[pos + 1 :]
            with pytest.raises(OPEN_ERRORS) as info:
                ring.open(text, STRICT)
            outcomes[info.type] = outcomes.get(info.type, 0) + 1
    # All three outcomes occur: header flips are format or key errors, the rest opaque.
    assert set(outcomes) == {TokenFormatError, UnknownKeyError, UnsealError}
    assert ring.open(token, STRICT) == b"flip me"


# --- nothing secret in messages, reprs or pickles ------------------------------------

MARKER = b"ZZTOPSECRET-4f2a9c-\xff\x00"


def _forms(data: bytes) -> list[str]:
    return [
        data.decode("latin-1"),
        data.hex(),
        data.hex().upper(),
        base64.b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
        repr(data),
        "ZZTOPSECRET",
    ]


def _assert_free_of(text: str, data: bytes) -> None:
    for form in _forms(data):
        assert form not in text


@pytest.mark.parametrize("suite", SUITES)
def test_errors_carry_no_plaintext(suite: Suite, keys: dict[Suite, KeyPair], ring: KeyRing) -> None:
    token = seal(MARKER, keys[suite].public, STRICT)
    body = _body(token)
    attempts: list[Callable[[], object]] = [
        lambda: ring.open(
            token, SealingContext.bind("strict", namespace="x", name="db", item="pw")
        ),
        lambda: ring.open(_token(body[:-1]), STRICT),
        lambda: ring.open(_token(b"\x09" + body[1:]), STRICT),
        lambda: KeyRing().open(token, STRICT),
        lambda: seal(MARKER * (MAX_PLAINTEXT_BYTES // len(MARKER) + 1), keys[suite].public, STRICT),
    ]
    private = keys[suite].private_bytes
    for attempt in attempts:
        with pytest.raises(KstrataError) as info:
            attempt()
        err = info.value
        rendered = "".join(traceback.format_exception(err)) + str(err) + repr(err)
        _assert_free_of(rendered, MARKER)
        _assert_free_of(rendered, private)
        if isinstance(err, UnsealError):
            assert err.__cause__ is None
            assert err.__suppress_context__
            assert str(err) == "sealed value could not be opened"


@pytest.mark.parametrize("suite", SUITES)
def test_key_objects_hide_private_material(suite: Suite, keys: dict[Suite, KeyPair]) -> None:
    pair = keys[suite]
    ring = KeyRing([pair])
    for text in (repr(pair), str(pair), repr(ring), str(ring), repr(pair.public)):
        _assert_free_of(text, pair.private_bytes)
    assert pair.key_id in repr(ring)
    with pytest.raises(TypeError):
        pickle.dumps(pair)


def test_crypto_imports_no_cluster_libraries() -> None:
    code = (
        "import sys, kstrata.crypto\n"
        "ok = ('kstrata.crypto', 'kstrata.errors')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')"
        " or (m.startswith('kstrata.') and not m.startswith(ok)))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _reference_b64url_decode(text: str) -> bytes | None:
    # Obviously-correct but slow: charset regex, lenient decode, canonical re-encode.
    import re

    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if b64url_encode(data) == text else None


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=12).map(b64url_encode),
        st.text(alphabet="AQgw-_+/=Zz09 \n\u00e9", max_size=10),
    )
)
def test_strict_b64url_matches_reference(text: str) -> None:
    from kstrata.crypto._strict import Malformed

    expected = _reference_b64url_decode(text)
    if expected is None:
        with pytest.raises(Malformed):
            b64url_decode(text)
    else:
        assert b64url_decode(text) == expected
