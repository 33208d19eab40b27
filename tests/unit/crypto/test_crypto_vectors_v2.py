"""The committed vectors in tests/vectors/sealing-v2.json pin the multi-recipient (kss2) format.

As for v1, tokens are random: each committed token must keep opening with the
committed test keys to the committed plaintext (the recipient of "another
cluster" is skipped, not an error), and each negative vector must keep failing
with its committed error class.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from kstrata import errors
from kstrata.crypto import KeyPair, KeyRing, PublicKeyBundle, SealingContext, parse_token

VECTORS_PATH = Path(__file__).resolve().parents[2] / "vectors" / "sealing-v2.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
V1_PATH = VECTORS_PATH.with_name("sealing-v1.json")


def _ring() -> KeyRing:
    return KeyRing(KeyPair.from_secret_entry(k["secretEntry"]) for k in VECTORS["keys"])


def _context(doc: dict[str, Any]) -> SealingContext:
    return SealingContext.bind(
        doc["scope"], namespace=doc["namespace"], name=doc["name"], item=doc["item"]
    )


def test_file_is_marked_test_only_and_reuses_the_v1_keys() -> None:
    assert "TEST-ONLY" in VECTORS["warning"]
    assert VECTORS["format"] == "kstrata.dev/sealing-test-vectors/v2"
    v1 = json.loads(V1_PATH.read_text())
    assert VECTORS["keys"] == v1["keys"]


def test_vectors_cover_every_scope_and_a_foreign_recipient() -> None:
    other = PublicKeyBundle.parse(VECTORS["otherClusterBundle"]).newest.key_id
    ring = _ring()
    assert other not in ring
    assert {v["context"]["scope"] for v in VECTORS["vectors"]} == {
        "strict",
        "namespace",
        "cluster",
    }
    assert any(v["keyIds"][0] == other for v in VECTORS["vectors"])
    assert any(v["keyIds"][-1] == other for v in VECTORS["vectors"])
    assert {n["error"] for n in VECTORS["negative"]} == {
        "TokenFormatError",
        "UnknownKeyError",
        "UnsealError",
    }


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["description"])
def test_positive_vector_opens(vector: dict[str, Any]) -> None:
    assert vector["token"].startswith("kss2:")
    header = parse_token(vector["token"])
    assert header.version == 2
    assert list(header.key_ids) == vector["keyIds"]
    ring = _ring()
    plaintext = ring.open(vector["token"], _context(vector["context"]))
    assert plaintext == bytes.fromhex(vector["plaintextHex"])
    # The key used is the first recipient this ring holds.
    held = [k for k in vector["keyIds"] if k in ring]
    assert ring.key_id_for(vector["token"]) == held[0]


@pytest.mark.parametrize("vector", VECTORS["negative"], ids=lambda v: v["description"])
def test_negative_vector_fails(vector: dict[str, Any]) -> None:
    expected = getattr(errors, vector["error"])
    with pytest.raises(errors.SealingError) as info:
        _ring().open(vector["token"], _context(vector["context"]))
    assert type(info.value) is expected
    if expected is errors.UnsealError:
        # One opaque error: the same message whatever went wrong, nothing chained.
        assert str(info.value) == str(errors.UnsealError())
        assert info.value.__cause__ is None


def test_generator_reproduces_the_foreign_key() -> None:
    path = Path(__file__).resolve().parents[3] / "tools" / "gen_sealing_vectors_v2.py"
    spec = importlib.util.spec_from_file_location("gen_sealing_vectors_v2", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bundle = PublicKeyBundle.of([module.other_cluster_key().public]).serialize()
    assert bundle == VECTORS["otherClusterBundle"]
