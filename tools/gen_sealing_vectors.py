"""Generate tests/vectors/sealing-v1.json, the committed sealing test vectors.

Run once per format version; the committed file then pins the format: later
code must keep opening these tokens (tests/unit/crypto/test_crypto_vectors.py).
pyca's HPKE API draws the ephemeral key itself and offers no way to inject
it, so tokens differ on every run: that is why the file is generated once and
not regenerated in CI, and why this script refuses to overwrite it without
``--force``.

The key pairs are derived from fixed labels, so they are the same on every
run; they are TEST-ONLY keys, published in the repository, never to be used
for real data.

    .venv/bin/python tools/gen_sealing_vectors.py [--out PATH] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kstrata.crypto import (
    FingerprintKey,
    KeyPair,
    KeyRing,
    SealingContext,
    Suite,
    fingerprint,
    seal,
)
from kstrata.crypto._strict import b64url_decode, b64url_encode
from kstrata.crypto.sealing import TOKEN_PREFIX

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "sealing-v1.json"
CREATED = datetime(2025, 1, 1, tzinfo=UTC)
WARNING = (
    "TEST-ONLY key material. These private keys are public in the kstrata repository; "
    "never use them to seal real data."
)


def _derived(label: str, length: int) -> bytes:
    return hashlib.sha512(f"kstrata test vector {label}".encode()).digest()[:length]


def test_keys() -> dict[Suite, KeyPair]:
    """The fixed test key pairs, one per suite."""
    return {
        Suite.X25519: KeyPair(Suite.X25519, _derived("x25519 key", 32), CREATED),
        # ML-KEM seed (64) || X25519 private key (32).
        Suite.MLKEM768_X25519: KeyPair(
            Suite.MLKEM768_X25519,
            _derived("mlkem768 seed", 64) + _derived("hybrid x25519 key", 32),
            CREATED,
        ),
    }


def test_fingerprint_key() -> FingerprintKey:
    return FingerprintKey(_derived("fingerprint key", 32), CREATED)


def _ctx_json(ctx: SealingContext) -> dict[str, Any]:
    return {
        "scope": ctx.scope.value,
        "namespace": ctx.namespace,
        "name": ctx.name,
        "item": ctx.item,
    }


UNICODE_VALUE = "p\u00e4ssw\u00f6rd \u2013 \u79d8\u5bc6 \U0001f511".encode()

PLAINTEXTS: list[tuple[str, SealingContext, bytes]] = [
    (
        "strict scope, ASCII value",
        SealingContext.bind("strict", namespace="payments", name="db-credentials", item="password"),
        b"correct horse battery staple",
    ),
    (
        "namespace scope",
        SealingContext.bind("namespace", namespace="payments", item="api-token"),
        b"tok_live_0123456789",
    ),
    (
        "cluster scope",
        SealingContext.bind("cluster", item="registry.json"),
        b'{"auths":{"registry.example":{"auth":"dXNlcjpwYXNz"}}}',
    ),
    (
        "empty value",
        SealingContext.bind("strict", namespace="default", name="empty", item="EMPTY"),
        b"",
    ),
    (
        "unicode value (UTF-8)",
        SealingContext.bind("strict", namespace="i18n", name="greetings.v2", item="motd.txt"),
        UNICODE_VALUE,
    ),
    (
        "binary value, every byte once",
        SealingContext.bind("namespace", namespace="kube-system", item="blob.bin"),
        bytes(range(256)),
    ),
    (
        "longer value (4 KiB)",
        SealingContext.bind("strict", namespace="a", name="b", item="c"),
        bytes((i * 7 + 3) % 256 for i in range(4096)),
    ),
]


def _body(token: str) -> bytes:
    return b64url_decode(token[len(TOKEN_PREFIX) :])


def _token(body: bytes) -> str:
    return TOKEN_PREFIX + b64url_encode(body)


def negative_vectors(keys: dict[Suite, KeyPair]) -> list[dict[str, Any]]:
    x = keys[Suite.X25519]
    h = keys[Suite.MLKEM768_X25519]
    ctx = SealingContext.bind("strict", namespace="payments", name="db-credentials", item="pw")
    good = seal(b"negative vector value", x.public, ctx)
    body = _body(good)
    hybrid = seal(b"negative vector value", h.public, ctx)
    hbody = _body(hybrid)
    unknown_id = hashlib.sha256(b"kstrata test vector unknown key").digest()[:16]
    text = good[len(TOKEN_PREFIX) :]
    # Last character with one of its unused low bits set: same bytes, other spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    non_canonical = text[:-1] + alphabet[alphabet.index(text[-1]) | 1]
    if non_canonical == text:
        non_canonical = text[:-1] + alphabet[alphabet.index(text[-1]) & ~1]
    cases: list[tuple[str, str, SealingContext, str]] = [
        ("unsupported version prefix", "kss2:" + text, ctx, "TokenFormatError"),
        ("no version prefix", text, ctx, "TokenFormatError"),
        ("empty token", "", ctx, "TokenFormatError"),
        ("padded base64url", good + "=", ctx, "TokenFormatError"),
        (
            "non-canonical base64url (unused bits set)",
            TOKEN_PREFIX + non_canonical,
            ctx,
            "TokenFormatError",
        ),
        (
            "character from the standard base64 alphabet",
            TOKEN_PREFIX + "+" + text[1:],
            ctx,
            "TokenFormatError",
        ),
        ("trailing newline", good + "\n", ctx, "TokenFormatError"),
        ("unknown suite id 0x07", _token(b"\x07" + body[1:]), ctx, "TokenFormatError"),
        ("shorter than a header", _token(body[:10]), ctx, "TokenFormatError"),
        ("too short for the suite (no tag)", _token(body[: 17 + 32 + 15]), ctx, "TokenFormatError"),
        (
            "hybrid token relabelled as x25519 suite",
            _token(b"\x01" + hbody[1:]),
            ctx,
            "TokenFormatError",
        ),
        ("unknown key id", _token(body[:1] + unknown_id + body[17:]), ctx, "UnknownKeyError"),
        (
            "other namespace",
            good,
            SealingContext.bind(
                "strict", namespace="payments-dev", name="db-credentials", item="pw"
            ),
            "UnsealError",
        ),
        (
            "other name under strict scope",
            good,
            SealingContext.bind("strict", namespace="payments", name="db-credentials2", item="pw"),
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
        ("ciphertext truncated by one byte", _token(body[:-1]), ctx, "UnsealError"),
        ("tag bit flipped", _token(body[:-1] + bytes([body[-1] ^ 0x01])), ctx, "UnsealError"),
        (
            "enc bit flipped",
            _token(body[:17] + bytes([body[17] ^ 0x80]) + body[18:]),
            ctx,
            "UnsealError",
        ),
        (
            "key id of the other test key (right suite byte kept)",
            _token(body[:1] + bytes.fromhex(h.key_id) + body[17:]),
            ctx,
            "TokenFormatError",
        ),
    ]
    return [
        {"description": d, "token": t, "context": _ctx_json(c), "error": e} for d, t, c, e in cases
    ]


def build() -> dict[str, Any]:
    keys = test_keys()
    ring = KeyRing(keys.values())
    vectors = []
    for suite, pair in keys.items():
        for description, ctx, plaintext in PLAINTEXTS:
            token = seal(plaintext, pair.public, ctx)
            assert ring.open(token, ctx) == plaintext
            vectors.append(
                {
                    "description": f"{suite.value}: {description}",
                    "suite": suite.value,
                    "keyId": pair.key_id,
                    "context": _ctx_json(ctx),
                    "plaintextHex": plaintext.hex(),
                    "token": token,
                }
            )
    fkey = test_fingerprint_key()
    fingerprints = [
        {
            "namespace": ns,
            "name": name,
            "item": item,
            "valueHex": value.hex(),
            "fingerprint": fingerprint(fkey, namespace=ns, name=name, item=item, value=value),
        }
        for ns, name, item, value in [
            ("payments", "db-credentials", "password", b"correct horse battery staple"),
            ("payments", "db-credentials", "password", b"correct horse battery stapler"),
            ("payments", "db-credentials-2", "password", b"correct horse battery staple"),
            ("default", "empty", "EMPTY", b""),
            ("i18n", "greetings.v2", "motd.txt", UNICODE_VALUE),
        ]
    ]
    return {
        "warning": WARNING,
        "format": "kstrata.dev/sealing-test-vectors/v1",
        "tokenFormat": "kss1",
        "regeneration": "tokens are random (ephemeral HPKE keys); only opening is checked",
        "keys": [
            {"suite": s.value, "keyId": p.key_id, "secretEntry": p.to_secret_entry().decode()}
            for s, p in keys.items()
        ],
        "publicKeyBundle": ring.public_bundle().serialize(),
        "vectors": vectors,
        "negative": negative_vectors(keys),
        "fingerprintKey": fkey.to_secret_entry().decode(),
        "fingerprints": fingerprints,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
