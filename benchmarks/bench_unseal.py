"""Unseal throughput: kstrata's HPKE tokens against the RSA-OAEP scheme of sealed-secrets.

Measures how many 1 KiB items per second one core can open, in one run on one
machine, for

* kstrata, suite ``x25519`` (DHKEM X25519 / HKDF-SHA256 / AES-256-GCM),
* kstrata, suite ``mlkem768-x25519`` (hybrid post-quantum KEM),
* the baseline: bitnami sealed-secrets' hybrid scheme, RSA-4096 OAEP (SHA-256)
  wrapping a random 32-byte AES-256-GCM session key, re-implemented here only
  for comparison (it is not part of kstrata).

Every scheme is timed end to end from its stored text form (base64 decode
included), with the key already selected: kstrata looks its key up by id,
and the baseline is given the right RSA key (sealed-secrets itself tries each
private key in turn, so with N keys its cost grows up to N-fold; not modelled).

    .venv/bin/python benchmarks/bench_unseal.py [--seconds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import cryptography
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kstrata.crypto import KeyRing, SealingContext, Suite, generate_keypair, seal

VALUE_BYTES = 1024
DISTINCT_TOKENS = 64
CONTEXT = SealingContext.bind("strict", namespace="payments", name="db-credentials", item="pw")


@dataclass(frozen=True)
class Result:
    scheme: str
    opens: int
    seconds: float
    opens_per_second: float
    microseconds_per_open: float
    speedup_vs_rsa: float = 0.0


# --- the baseline: sealed-secrets' hybrid encryption ---------------------------


def rsa_seal(public: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> str:
    session_key = AESGCM.generate_key(bit_length=256)
    wrapped = public.encrypt(
        session_key,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label),
    )
    # sealed-secrets uses a zero nonce: each session key encrypts exactly one message.
    body = AESGCM(session_key).encrypt(bytes(12), plaintext, None)
    return base64.b64encode(struct.pack(">H", len(wrapped)) + wrapped + body).decode()


def rsa_open(private: rsa.RSAPrivateKey, token: str, label: bytes) -> bytes:
    raw = base64.b64decode(token)
    (n,) = struct.unpack(">H", raw[:2])
    session_key = private.decrypt(
        raw[2 : 2 + n],
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label),
    )
    return AESGCM(session_key).decrypt(bytes(12), raw[2 + n :], None)


# --- timing --------------------------------------------------------------------------


def measure(name: str, open_one: Callable[[int], bytes], seconds: float) -> Result:
    for i in range(8):  # warm caches and lazy initialisation
        open_one(i)
    opens = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(16):
            open_one(opens)
            opens += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    return Result(name, opens, elapsed, opens / elapsed, 1e6 * elapsed / opens)


def _kstrata_opener(ring: KeyRing, tokens: list[str]) -> Callable[[int], bytes]:
    def open_one(i: int) -> bytes:
        return ring.open(tokens[i % DISTINCT_TOKENS], CONTEXT)

    return open_one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per scheme")
    parser.add_argument("--json", type=Path, help="write results as JSON here")
    args = parser.parse_args(argv)

    values = [os.urandom(VALUE_BYTES) for _ in range(DISTINCT_TOKENS)]
    created = datetime.now(UTC)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    label = f"{CONTEXT.namespace}/{CONTEXT.name}".encode()

    schemes: list[tuple[str, Callable[[int], bytes]]] = []
    for suite in (Suite.X25519, Suite.MLKEM768_X25519):
        pair = generate_keypair(suite=suite, created=created)
        ring = KeyRing([pair])
        tokens = [seal(v, pair.public, CONTEXT) for v in values]
        assert ring.open(tokens[0], CONTEXT) == values[0]
        schemes.append((f"kstrata {suite.value}", _kstrata_opener(ring, tokens)))
    rsa_tokens = [rsa_seal(rsa_key.public_key(), v, label) for v in values]
    assert rsa_open(rsa_key, rsa_tokens[0], label) == values[0]
    schemes.append(
        (
            "RSA-4096-OAEP + AES-256-GCM (sealed-secrets)",
            lambda i: rsa_open(rsa_key, rsa_tokens[i % DISTINCT_TOKENS], label),
        )
    )

    results = [measure(name, fn, args.seconds) for name, fn in schemes]
    baseline = results[-1].opens_per_second
    results = [
        Result(**{**asdict(r), "speedup_vs_rsa": r.opens_per_second / baseline}) for r in results
    ]

    width = max(len(r.scheme) for r in results)
    print(f"open throughput, {VALUE_BYTES}-byte values, one thread")
    print(f"{'scheme':<{width}}  {'opens/s':>10}  {'µs/open':>9}  {'vs RSA':>7}")
    for r in results:
        print(
            f"{r.scheme:<{width}}  {r.opens_per_second:>10.0f}  "
            f"{r.microseconds_per_open:>9.1f}  {r.speedup_vs_rsa:>6.1f}x"
        )

    if args.json:
        report = {
            "benchmark": "unseal",
            "value_bytes": VALUE_BYTES,
            "seconds_per_scheme": args.seconds,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "cryptography": cryptography.__version__,
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "results": [asdict(r) for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
