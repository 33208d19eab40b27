"""An opener written from docs/crypto.md alone opens every committed token.

Why this exists: docs/crypto.md claims to specify kstrata's sealing format
completely, so that someone holding only the RFCs and that document can open
kstrata tokens (a recovery tool in another language, an audit).  The claim is
only worth something if it is tested.  Everything below the "independent
opener" line was written from the document, not from ``kstrata.crypto``: it
imports nothing from kstrata and not pyca's HPKE either.  HPKE (RFC 9180),
DHKEM(X25519), the X-Wing combiner, HKDF, the token layout, ``info``, the v2
AAD and the key entry are implemented here from their specifications, on top
of the bare primitives the project locks: X25519, ML-KEM-768 (from its
FIPS 203 seed) and AES-256-GCM from ``cryptography``, SHA-256, SHA3-256 and
HMAC from the standard library.

It must open every positive vector of tests/vectors/sealing-v1.json and
sealing-v2.json to the committed plaintext and reject every negative one with
the committed error class, and the worked examples printed in docs/crypto.md
§13 must be exactly the values it computes.  If this test fails after a change
to the doc or the code, the doc no longer describes the format (or the format
changed, which needs a new version prefix, never a silent change).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import re
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

REPO = Path(__file__).resolve().parents[3]
VECTORS_V1: dict[str, Any] = json.loads((REPO / "tests/vectors/sealing-v1.json").read_text())
VECTORS_V2: dict[str, Any] = json.loads((REPO / "tests/vectors/sealing-v2.json").read_text())
CRYPTO_MD = REPO / "docs" / "crypto.md"

# --- independent opener: from docs/crypto.md, the RFCs and FIPS 203 only ------------------


class TokenFormatError(Exception):
    """§6: malformed token, unknown version or suite, bad size, suite differs from the key's."""


class UnknownKeyError(Exception):
    """§6: no key of the ring is named by the token."""


class UnsealError(Exception):
    """§6: the one opaque failure of a well-formed token."""


class KeyEntryError(Exception):
    """§7: a private key entry that does not parse."""


def lp(*fields: bytes) -> bytes:
    """Notation: LP(x) = uint16_be(len(x)) || x, concatenated."""
    return b"".join(struct.pack(">H", len(f)) + f for f in fields)


# §1: wire id -> (HPKE KEM id, enc bytes, public key bytes, private key bytes)
SUITES: dict[int, tuple[str, int, int, int, int]] = {
    0x01: ("x25519", 0x0020, 32, 32, 32),
    0x02: ("mlkem768-x25519", 0x647A, 1120, 1216, 96),
}
WIRE_ID = {name: wire for wire, (name, *_rest) in SUITES.items()}
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_256_GCM = 0x0002
NK, NN, NH, NT = 32, 12, 32, 16
MAX_PLAINTEXT = 1024 * 1024
MAX_ENC = max(s[2] for s in SUITES.values())
# §5: 5 + ceil(4/3 * (17 + largest enc + 1 MiB + 16))
MAX_TOKEN_CHARS = 5 + -(-4 * (17 + MAX_ENC + MAX_PLAINTEXT + NT) // 3)
MAX_RECIPIENTS = 16
XWING_LABEL = bytes.fromhex("5c2e2f2f5e5c")  # the six ASCII characters \.//^\


def b64url_canonical(text: str) -> bytes:
    """§3 step 4: unpadded base64url with exactly one spelling per byte string."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if any(c not in alphabet for c in text) or len(text) % 4 == 1:
        raise TokenFormatError("not canonical unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # Unused low bits of the last character must be zero: re-encoding must give the text back.
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != text:
        raise TokenFormatError("not canonical unpadded base64url")
    return data


# RFC 5869 HKDF-SHA256 and RFC 9180 §4 labelled variants.
def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(NH), ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hkdf_extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return hkdf_expand(
        prk, struct.pack(">H", length) + b"HPKE-v1" + suite_id + label + info, length
    )


@dataclass(frozen=True)
class PrivateKey:
    """One key of the ring: §1 raw encodings, §2 key id."""

    suite: str
    raw: bytes
    public: bytes
    key_id: bytes

    @classmethod
    def from_raw(cls, suite: str, raw: bytes) -> PrivateKey:
        if suite == "x25519":
            if len(raw) != 32:
                raise KeyEntryError("x25519 private key is 32 bytes")
            public = x25519.X25519PrivateKey.from_private_bytes(raw).public_key()
            public_raw = public.public_bytes_raw()
        elif suite == "mlkem768-x25519":
            if len(raw) != 96:
                raise KeyEntryError("hybrid private key is 96 bytes")
            ml = mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:64])  # FIPS 203 seed d || z
            xk = x25519.X25519PrivateKey.from_private_bytes(raw[64:])
            public_raw = ml.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()
        else:
            raise KeyEntryError("unknown suite")
        digest = hashlib.sha256(
            lp(b"kstrata.dev/key-id/v1") + bytes([WIRE_ID[suite]]) + public_raw
        ).digest()
        return cls(suite, raw, public_raw, digest[:16])

    @classmethod
    def from_entry(cls, text: str) -> PrivateKey:
        """§7: one entry of the key Secret (or of a `kstrata keys backup` file)."""
        doc = json.loads(text)
        if set(doc) != {"created", "format", "keyId", "privateKey", "suite"}:
            raise KeyEntryError("members")
        if doc["format"] != "kstrata.dev/sealing-key/v1":
            raise KeyEntryError("format")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", doc["created"]):
            raise KeyEntryError("created")
        raw = base64.b64decode(doc["privateKey"], validate=True)
        if base64.b64encode(raw).decode("ascii") != doc["privateKey"]:
            raise KeyEntryError("privateKey is not canonical padded base64")
        key = cls.from_raw(doc["suite"], raw)
        if key.key_id.hex() != doc["keyId"]:
            raise KeyEntryError("keyId does not match the key")
        return key


def dhkem_x25519_decap(enc: bytes, key: PrivateKey, trace: dict[str, bytes]) -> bytes:
    """RFC 9180 §4.1 Decap for DHKEM(X25519, HKDF-SHA256), KEM id 0x0020."""
    sk = x25519.X25519PrivateKey.from_private_bytes(key.raw)
    dh = sk.exchange(x25519.X25519PublicKey.from_public_bytes(enc))  # ValueError if all zero
    kem_suite_id = b"KEM" + struct.pack(">H", 0x0020)
    eae_prk = labeled_extract(kem_suite_id, b"", b"eae_prk", dh)
    shared = labeled_expand(kem_suite_id, eae_prk, b"shared_secret", enc + key.public, 32)
    trace.update(dh=dh, shared_secret=shared)
    return shared


def xwing_decap(enc: bytes, key: PrivateKey, trace: dict[str, bytes]) -> bytes:
    """The hybrid KEM (0x647A): X-Wing decapsulation with kstrata's stored components."""
    ct_m, ct_x = enc[:1088], enc[1088:]
    ml = mlkem.MLKEM768PrivateKey.from_seed_bytes(key.raw[:64])
    xk = x25519.X25519PrivateKey.from_private_bytes(key.raw[64:])
    ss_m = ml.decapsulate(ct_m)
    ss_x = xk.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
    pk_x = key.public[1184:]
    shared = hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()
    trace.update(ss_m=ss_m, ss_x=ss_x, shared_secret=shared)
    return shared


def hpke_open(
    kem_id: int, sealed: bytes, key: PrivateKey, info: bytes, trace: dict[str, bytes]
) -> bytes:
    """RFC 9180 base mode single-shot Open: SetupBaseR(enc, skR, info), then Open(aad="", ct)."""
    enc_len = SUITES[WIRE_ID[key.suite]][2]
    enc, ct = sealed[:enc_len], sealed[enc_len:]
    decap = dhkem_x25519_decap if kem_id == 0x0020 else xwing_decap
    trace.update(public_key=key.public)
    try:
        shared = decap(enc, key, trace)
    except ValueError:
        raise UnsealError() from None
    suite_id = b"HPKE" + struct.pack(">HHH", kem_id, KDF_HKDF_SHA256, AEAD_AES_256_GCM)
    psk_id_hash = labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash  # mode_base
    secret = labeled_extract(suite_id, shared, b"secret", b"")  # psk = ""
    aead_key = labeled_expand(suite_id, secret, b"key", context, NK)
    base_nonce = labeled_expand(suite_id, secret, b"base_nonce", context, NN)
    trace.update(key_schedule_context=context, aead_key=aead_key, base_nonce=base_nonce)
    # Sequence number 0: the nonce is base_nonce XOR I2OSP(0, Nn) = base_nonce.  AAD is empty.
    try:
        return AESGCM(aead_key).decrypt(base_nonce, ct, b"")
    except InvalidTag:
        raise UnsealError() from None


@dataclass(frozen=True)
class Context:
    """§4: the place a value is opened at, as the scope binds it (absent fields empty)."""

    scope: str
    namespace: str
    name: str
    item: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Context:
        scope = doc["scope"]
        return cls(
            scope,
            "" if scope == "cluster" else doc["namespace"],
            doc["name"] if scope == "strict" else "",
            doc["item"],
        )

    def fields(self) -> tuple[bytes, ...]:
        return tuple(f.encode("ascii") for f in (self.scope, self.namespace, self.name, self.item))

    def info(self, label: bytes, version: int, wire_id: int, key_id: bytes) -> bytes:
        return lp(label, bytes([version]), bytes([wire_id]), key_id, *self.fields())

    def payload_aad(self, header: bytes) -> bytes:
        return lp(b"kstrata.dev/sealed/v2/payload", header, *self.fields())


def check_ct_size(size: int) -> None:
    if size < NT or size > MAX_PLAINTEXT + NT:
        raise TokenFormatError("ciphertext size")


def open_token(
    token: str,
    ring: dict[bytes, PrivateKey],
    context: Context,
    trace: dict[str, bytes] | None = None,
) -> bytes:
    """§3 and §4a parsing and opening order; raises the three §6 classes only."""
    trace = {} if trace is None else trace
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise TokenFormatError("not text, or too long")
    if token.startswith("kss2:"):
        return _open_v2(b64url_canonical(token[5:]), ring, context, trace)
    if not token.startswith("kss1:"):
        raise TokenFormatError("prefix")
    body = b64url_canonical(token[5:])
    if len(body) < 17 or body[0] not in SUITES:
        raise TokenFormatError("header")
    wire_id, key_id = body[0], body[1:17]
    _name, kem_id, enc_len, _pk, _sk = SUITES[wire_id]
    check_ct_size(len(body) - 17 - enc_len)
    key = ring.get(key_id)
    if key is None:
        raise UnknownKeyError(key_id.hex())
    if WIRE_ID[key.suite] != wire_id:
        raise TokenFormatError("suite differs from the key's")
    info = context.info(b"kstrata.dev/sealed/v1", 0x01, wire_id, key_id)
    trace.update(body=body, info=info)
    return hpke_open(kem_id, body[17:], key, info, trace)


def _open_v2(
    body: bytes, ring: dict[bytes, PrivateKey], context: Context, trace: dict[str, bytes]
) -> bytes:
    if len(body) < 2 or body[0] != 0x02:
        raise TokenFormatError("version byte")
    count = body[1]
    if not 1 <= count <= MAX_RECIPIENTS:
        raise TokenFormatError("recipient count")
    offset = 2
    entries: list[tuple[int, bytes, bytes]] = []  # wire id, key id, enc || wrapped key
    for _ in range(count):
        if len(body) < offset + 17 or body[offset] not in SUITES:
            raise TokenFormatError("recipient header")
        wire_id, key_id = body[offset], body[offset + 1 : offset + 17]
        end = offset + 17 + SUITES[wire_id][2] + 48
        if len(body) < end or any(key_id == k for _w, k, _s in entries):
            raise TokenFormatError("recipient entry")
        entries.append((wire_id, key_id, body[offset + 17 : end]))
        offset = end
    header, payload = body[:offset], body[offset:]
    check_ct_size(len(payload))
    held = next((e for e in entries if e[1] in ring), None)
    if held is None:
        raise UnknownKeyError(", ".join(k.hex() for _w, k, _s in entries))
    wire_id, key_id, sealed = held
    key = ring[key_id]
    if WIRE_ID[key.suite] != wire_id:
        raise TokenFormatError("suite differs from the key's")
    info = context.info(b"kstrata.dev/sealed/v2", 0x02, wire_id, key_id)
    dek = hpke_open(SUITES[wire_id][1], sealed, key, info, trace)
    if len(dek) != 32:
        raise UnsealError()
    aad = context.payload_aad(header)
    trace.update(body=body, info=info, dek=dek, payload_aad=aad)
    try:
        return AESGCM(dek).decrypt(bytes(12), payload, aad)
    except InvalidTag:
        raise UnsealError() from None


# --- end of the independent opener ----------------------------------------------------------

ERRORS: dict[str, type[Exception]] = {
    "TokenFormatError": TokenFormatError,
    "UnknownKeyError": UnknownKeyError,
    "UnsealError": UnsealError,
}


def _ring(vectors: dict[str, Any]) -> dict[bytes, PrivateKey]:
    keys = [PrivateKey.from_entry(k["secretEntry"]) for k in vectors["keys"]]
    return {k.key_id: k for k in keys}


def _all(kind: str) -> list[tuple[str, dict[str, Any], dict[bytes, PrivateKey]]]:
    return [
        (f"{name}: {v['description']}", v, _ring(doc))
        for name, doc in (("v1", VECTORS_V1), ("v2", VECTORS_V2))
        for v in doc[kind]
    ]


POSITIVE = _all("vectors")
NEGATIVE = _all("negative")


def test_the_opener_imports_nothing_from_kstrata_nor_pycas_hpke() -> None:
    tree = ast.parse(Path(__file__).read_text())
    imported = {
        alias.name if isinstance(node, ast.Import) else f"{node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not [m for m in imported if m.split(".")[0] == "kstrata"]
    assert not [m for m in imported if "hpke" in m]
    third_party = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names}
    assert third_party <= {
        "pytest",
        "cryptography.exceptions",
        "cryptography.hazmat.primitives.asymmetric",
        "cryptography.hazmat.primitives.ciphers.aead",
    }


def test_the_opener_runs_in_an_interpreter_that_never_loads_kstrata() -> None:
    # A clean process without the test suite's conftest: opens one token of each suite and
    # version, then shows that neither kstrata nor pyca's HPKE module was ever imported.
    script = f"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("independent_opener", {str(Path(__file__))!r})
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
opened = 0
for doc in (module.VECTORS_V1, module.VECTORS_V2):
    ring = module._ring(doc)
    for vector in doc["vectors"]:
        plain = module.open_token(vector["token"], ring, module.Context.of(vector["context"]))
        assert plain == bytes.fromhex(vector["plaintextHex"])
        opened += 1
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "kstrata" or "hpke" in m)
print(json.dumps({{"opened": opened, "loaded": loaded}}))
"""
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"opened": len(POSITIVE), "loaded": []}


@pytest.mark.parametrize(("vid", "vector", "ring"), POSITIVE, ids=[p[0] for p in POSITIVE])
def test_every_committed_token_opens(
    vid: str, vector: dict[str, Any], ring: dict[bytes, PrivateKey]
) -> None:
    plaintext = open_token(vector["token"], ring, Context.of(vector["context"]))
    assert plaintext == bytes.fromhex(vector["plaintextHex"]), vid


@pytest.mark.parametrize(("vid", "vector", "ring"), NEGATIVE, ids=[n[0] for n in NEGATIVE])
def test_every_negative_vector_fails_with_its_class(
    vid: str, vector: dict[str, Any], ring: dict[bytes, PrivateKey]
) -> None:
    with pytest.raises(tuple(ERRORS.values())) as info:
        open_token(vector["token"], ring, Context.of(vector["context"]))
    assert type(info.value) is ERRORS[vector["error"]], vid


def test_the_vectors_cover_both_suites_both_versions_and_every_error_class() -> None:
    suites = {k.suite for k in _ring(VECTORS_V1).values()}
    assert suites == {"x25519", "mlkem768-x25519"}
    assert {v["token"][:5] for _i, v, _r in POSITIVE} == {"kss1:", "kss2:"}
    assert {v["error"] for _i, v, _r in NEGATIVE} == set(ERRORS)
    assert len(POSITIVE) == 35
    assert len(NEGATIVE) == 36


@pytest.mark.parametrize(
    "bundle", [VECTORS_V1["publicKeyBundle"], VECTORS_V2["otherClusterBundle"]]
)
def test_public_bundles_follow_the_documented_encoding(bundle: str) -> None:
    # §7: what `kstrata seal --cert` reads; every keyId is §2's derivation of its key.
    doc = json.loads(bundle)
    assert set(doc) == {"format", "keys"}
    assert doc["format"] == "kstrata.dev/sealing-public-keys/v1"
    for entry in doc["keys"]:
        assert set(entry) == {"keyId", "suite", "created", "publicKey"}
        raw = base64.b64decode(entry["publicKey"], validate=True)
        assert base64.b64encode(raw).decode("ascii") == entry["publicKey"]
        assert len(raw) == SUITES[WIRE_ID[entry["suite"]]][3]
        digest = hashlib.sha256(
            lp(b"kstrata.dev/key-id/v1") + bytes([WIRE_ID[entry["suite"]]]) + raw
        ).digest()
        assert digest[:16].hex() == entry["keyId"]


def test_the_v1_bundle_holds_the_public_halves_of_the_test_keys() -> None:
    published = {
        k["keyId"]: base64.b64decode(k["publicKey"])
        for k in json.loads(VECTORS_V1["publicKeyBundle"])["keys"]
    }
    assert published == {k.key_id.hex(): k.public for k in _ring(VECTORS_V1).values()}


def test_max_token_chars_is_the_documented_number() -> None:
    assert MAX_TOKEN_CHARS == 1_399_644
    assert "1 399 644" in CRYPTO_MD.read_text()


# --- the worked examples in docs/crypto.md §13 ---------------------------------------------

EXAMPLE_MARK = re.compile(
    r"<!-- worked-example: (v[12]) vectors\[(\d+)\] -->\n```text\n(.*?)```", re.S
)
EXAMPLE_LINE = re.compile(r"^([a-z_]+)(?:\[(\d+):(\d+)\])? = ([0-9a-f]+)$")
EXAMPLE_MORE = re.compile(r"^ +([0-9a-f]+)$")


def _example_values(block: str) -> list[tuple[str, str]]:
    """``name = hex`` or ``name[a:b] = hex`` lines; indented hex lines continue the value."""
    values: list[tuple[str, str]] = []
    for line in block.splitlines():
        more = EXAMPLE_MORE.match(line)
        if more and values:
            values[-1] = (values[-1][0], values[-1][1] + more[1])
            continue
        match = EXAMPLE_LINE.match(line)
        if match:
            name, start, end, value = match.groups()
            values.append((name if start is None else f"{name}[{start}:{end}]", value))
    return values


EXAMPLES = [(m[1], int(m[2]), m[3]) for m in EXAMPLE_MARK.finditer(CRYPTO_MD.read_text())]


def test_the_doc_has_worked_examples_for_both_suites_and_versions() -> None:
    shown = {(version, index) for version, index, _block in EXAMPLES}
    assert {("v1", 0), ("v1", 7), ("v2", 7)} <= shown


@pytest.mark.parametrize(
    ("version", "index", "block"), EXAMPLES, ids=[f"{v}[{i}]" for v, i, _b in EXAMPLES]
)
def test_the_worked_examples_in_the_doc_are_what_the_opener_computes(
    version: str, index: int, block: str
) -> None:
    doc = VECTORS_V1 if version == "v1" else VECTORS_V2
    vector = doc["vectors"][index]
    trace: dict[str, bytes] = {}
    plaintext = open_token(vector["token"], _ring(doc), Context.of(vector["context"]), trace)
    trace["plaintext"] = plaintext
    values = _example_values(block)
    assert len(values) >= 8
    for label, value in values:
        name, _, span = label.partition("[")
        start, _, end = span.rstrip("]").partition(":")
        actual = trace[name][int(start) : int(end)] if span else trace[name]
        assert actual.hex() == value, f"docs/crypto.md: {version} vectors[{index}] {label}"
