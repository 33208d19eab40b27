"""Generate tests/vectors/sealing-v2.json, the committed multi-recipient (kss2) vectors.

Same rules as tools/gen_sealing_vectors.py (run once, refuse to overwrite
without ``--force``; tokens are random, so tests open them rather than
regenerate them).  The v1 test key pairs are reused as "this cluster's" keys;
a third TEST-ONLY x25519 key stands for another cluster, and only its public
half is stored, so every vector also shows that a recipient that is not this
cluster's is skipped, not an error.

    .venv/bin/python tools/gen_sealing_vectors_v2.py [--out PATH] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from kstrata.crypto import KeyPair, KeyRing, PublicKeyBundle, SealingContext, Suite, seal_multi
from kstrata.crypto._strict import b64url_decode, b64url_encode
from kstrata.crypto.sealing import TOKEN_PREFIX_MULTI

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "tests" / "vectors" / "sealing-v2.json"


def _v1() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_sealing_vectors", HERE / "gen_sealing_vectors.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("tools/gen_sealing_vectors.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


V1 = _v1()


def other_cluster_key() -> KeyPair:
    """A TEST-ONLY key pair standing for another cluster (only its public half is stored)."""
    raw = hashlib.sha512(b"kstrata test vector other cluster x25519 key").digest()[:32]
    return KeyPair(Suite.X25519, raw, V1.CREATED)


def _body(token: str) -> bytes:
    return b64url_decode(token[len(TOKEN_PREFIX_MULTI) :])


def _token(body: bytes) -> str:
    return TOKEN_PREFIX_MULTI + b64url_encode(body)


def _ctx_json(ctx: SealingContext) -> dict[str, Any]:
    return dict(V1._ctx_json(ctx))


def negative_vectors(keys: dict[Suite, KeyPair], other: KeyPair) -> list[dict[str, Any]]:
    x = keys[Suite.X25519]
    ctx = SealingContext.bind("strict", namespace="payments", name="db-credentials", item="pw")
    # Recipients: other cluster first, then this cluster's x25519 key.
    good = seal_multi(b"negative vector value", [other.public, x.public], ctx)
    body = _body(good)
    slot = 1 + 16 + 32 + 48  # an x25519 recipient entry
    first, second = 2, 2 + slot
    payload = 2 + 2 * slot
    only_other = seal_multi(b"negative vector value", [other.public], ctx)
    # The same token with the other cluster's entry cut out and the count fixed.
    stripped = bytes([2, 1]) + body[second:]
    cases: list[tuple[str, str, SealingContext, str]] = [
        ("version byte is not 2", _token(b"\x01" + body[1:]), ctx, "TokenFormatError"),
        ("no recipients", _token(bytes([2, 0]) + body[2:]), ctx, "TokenFormatError"),
        ("17 recipients announced", _token(bytes([2, 17]) + body[2:]), ctx, "TokenFormatError"),
        (
            "a recipient entry named twice",
            _token(bytes([2, 2]) + body[second:payload] + body[second:]),
            ctx,
            "TokenFormatError",
        ),
        (
            "unknown suite id in a recipient",
            _token(body[:2] + b"\x07" + body[3:]),
            ctx,
            "TokenFormatError",
        ),
        ("truncated inside the recipients", _token(body[: second + 20]), ctx, "TokenFormatError"),
        ("payload shorter than a tag", _token(body[: payload + 15]), ctx, "TokenFormatError"),
        ("no recipient held here", only_other, ctx, "UnknownKeyError"),
        (
            "other namespace",
            good,
            SealingContext.bind(
                "strict", namespace="payments-dev", name="db-credentials", item="pw"
            ),
            "UnsealError",
        ),
        (
            "other item",
            good,
            SealingContext.bind("strict", namespace="payments", name="db-credentials", item="pw2"),
            "UnsealError",
        ),
        (
            "other scope, same coordinates",
            good,
            SealingContext.bind("namespace", namespace="payments", item="pw"),
            "UnsealError",
        ),
        (
            "bit flipped in the other cluster's entry (header is authenticated)",
            _token(body[: first + 20] + bytes([body[first + 20] ^ 1]) + body[first + 21 :]),
            ctx,
            "UnsealError",
        ),
        (
            "bit flipped in this cluster's wrapped key",
            _token(body[: payload - 1] + bytes([body[payload - 1] ^ 1]) + body[payload:]),
            ctx,
            "UnsealError",
        ),
        ("payload tag bit flipped", _token(body[:-1] + bytes([body[-1] ^ 1])), ctx, "UnsealError"),
        ("payload truncated by one byte", _token(body[:-1]), ctx, "UnsealError"),
        ("other cluster's recipient removed", _token(stripped), ctx, "UnsealError"),
    ]
    return [
        {"description": d, "token": t, "context": _ctx_json(c), "error": e} for d, t, c, e in cases
    ]


def build() -> dict[str, Any]:
    keys: dict[Suite, KeyPair] = V1.test_keys()
    other = other_cluster_key()
    ring = KeyRing(keys.values())
    recipient_sets = {
        "both test keys": [keys[Suite.X25519].public, keys[Suite.MLKEM768_X25519].public],
        "other cluster, then x25519": [other.public, keys[Suite.X25519].public],
        "hybrid, then other cluster": [keys[Suite.MLKEM768_X25519].public, other.public],
    }
    vectors = []
    for label, recipients in recipient_sets.items():
        for description, ctx, plaintext in V1.PLAINTEXTS:
            token = seal_multi(plaintext, recipients, ctx)
            assert ring.open(token, ctx) == plaintext
            vectors.append(
                {
                    "description": f"{label}: {description}",
                    "keyIds": [r.key_id for r in recipients],
                    "context": _ctx_json(ctx),
                    "plaintextHex": plaintext.hex(),
                    "token": token,
                }
            )
    return {
        "warning": V1.WARNING,
        "format": "kstrata.dev/sealing-test-vectors/v2",
        "tokenFormat": "kss2",
        "regeneration": "tokens are random (ephemeral HPKE keys, random data key); "
        "only opening is checked",
        "keys": [
            {"suite": s.value, "keyId": p.key_id, "secretEntry": p.to_secret_entry().decode()}
            for s, p in keys.items()
        ],
        "otherClusterBundle": PublicKeyBundle.of([other.public]).serialize(),
        "vectors": vectors,
        "negative": negative_vectors(keys, other),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--force", action="store_true", help="overwrite (breaks the pin on old tokens)"
    )
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"{args.out} exists; committed vectors are not regenerated (use --force)")
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(build(), indent=2, ensure_ascii=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
