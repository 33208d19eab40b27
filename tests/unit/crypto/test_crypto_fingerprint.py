"""Keyed fingerprints: deterministic per key, bound to location, opaque without the key."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kstrata.crypto import FingerprintKey, fingerprint, fingerprints_equal, verify_fingerprint
from kstrata.errors import InputLimitError, SealingError

T0 = datetime(2025, 3, 1, tzinfo=UTC)
KEY = FingerprintKey(bytes(range(32)), T0)
FORMAT = re.compile(r"hmac-sha256:[A-Za-z0-9_-]{22}")


def fp(
    value: bytes, ns: str = "ns", name: str = "db", item: str = "pw", key: FingerprintKey = KEY
) -> str:
    return fingerprint(key, namespace=ns, name=name, item=item, value=value)


def test_format_and_determinism() -> None:
    a = fp(b"hunter2")
    assert FORMAT.fullmatch(a)
    assert fp(b"hunter2") == a


def test_distinguishes_value_location_and_key() -> None:
    base = fp(b"hunter2")
    others = {
        fp(b"hunter3"),
        fp(b"hunter2", ns="ns2"),
        fp(b"hunter2", name="db2"),
        fp(b"hunter2", item="pw2"),
        fp(b"hunter2", key=FingerprintKey(bytes(32), T0)),
        fp(b""),
    }
    assert base not in others
    assert len(others) == 6
    # Field boundaries are unambiguous: moving a character between fields changes it.
    assert fp(b"v", ns="ab", name="c") != fp(b"v", ns="a", name="bc")
    assert fp(b"v", item="ab") != fp(b"bv", item="a")


def test_pinned_value() -> None:
    # Independent computation of the documented construction.
    import hashlib
    import hmac
    import struct

    def lp(b: bytes) -> bytes:
        return struct.pack(">H", len(b)) + b

    msg = lp(b"kstrata.dev/fingerprint/v1") + lp(b"ns") + lp(b"db") + lp(b"pw") + b"hunter2"
    mac = hmac.new(bytes(range(32)), msg, hashlib.sha256).digest()[:16]
    import base64

    assert fp(b"hunter2") == "hmac-sha256:" + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def test_verify_and_compare() -> None:
    good = fp(b"hunter2")
    assert verify_fingerprint(KEY, good, namespace="ns", name="db", item="pw", value=b"hunter2")
    assert not verify_fingerprint(KEY, good, namespace="ns", name="db", item="pw", value=b"x")
    assert fingerprints_equal(good, fp(b"hunter2"))
    assert not fingerprints_equal(good, fp(b"hunter3"))
    assert not fingerprints_equal(good, good[:-1])
    assert not fingerprints_equal(good, "")


def test_invalid_location_is_refused() -> None:
    with pytest.raises(SealingError):
        fp(b"v", ns="Bad_NS")
    with pytest.raises(SealingError):
        fp(b"v", item="a/b")
    with pytest.raises(SealingError):
        fingerprint(KEY, namespace="ns", name="db", item="pw", value="text")  # type: ignore[arg-type]


def test_key_entry_round_trip_and_strictness() -> None:
    key = FingerprintKey.generate(created=T0)
    entry = key.to_secret_entry()
    back = FingerprintKey.from_secret_entry(entry)
    assert back.key == key.key
    assert back.created == T0
    assert fp(b"x", key=back) == fp(b"x", key=key)
    doc = json.loads(entry)
    for change in ({"format": "other"}, {"key": "AAAA"}, {"created": "now"}, {"extra": "x"}):
        with pytest.raises(SealingError):
            FingerprintKey.from_secret_entry(json.dumps({**doc, **change}))
    with pytest.raises(InputLimitError):
        FingerprintKey.from_secret_entry(" " * 2000)
    with pytest.raises(SealingError):
        FingerprintKey(b"short", T0)
    with pytest.raises(SealingError):
        FingerprintKey(bytes(32), datetime(2025, 1, 1))


def test_key_is_hidden() -> None:
    key = FingerprintKey.generate(created=T0)
    text = repr(key) + str(key)
    assert key.key.hex() not in text
    assert repr(key.key) not in text
    assert json.loads(key.to_secret_entry())["key"] not in text
    with pytest.raises(TypeError):
        __import__("pickle").dumps(key)


@settings(max_examples=50, deadline=None)
@given(a=st.binary(max_size=256), b=st.binary(max_size=256))
def test_property_equal_iff_values_equal(a: bytes, b: bytes) -> None:
    assert (fp(a) == fp(b)) == (a == b)
    assert FORMAT.fullmatch(fp(a))
