"""Revision snapshots and the history index: round trips, bounds, names, tolerance."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kstrata.domain.revisions import (
    COMPRESS_ABOVE,
    ENCODING_GZIP,
    MAX_CAUSE_CHARS,
    MAX_HISTORY_ENTRIES,
    MAX_SNAPSHOT_BYTES,
    HistoryEntry,
    Snapshot,
    change_cause_for,
    decode_history,
    decode_snapshot,
    encode_history,
    encode_snapshot,
    encoded_size,
    history_entry,
    parse_revision,
    retained_numbers,
    revision_object_name,
    same_digest,
    short_digest,
)
from kstrata.errors import DocumentError, SnapshotTooLargeError
from kstrata.wellknown import SNAPSHOT_FORMAT

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DIGEST = "sha256:" + "ab" * 32


def profile_snapshot(number: int = 3, rendered: dict[str, str] | None = None) -> Snapshot:
    return Snapshot(
        kind="ConfigProfile",
        number=number,
        spec={"base": {"port": 8080}, "environments": {"prod": {"port": 443}}},
        environment="prod",
        rendered=rendered if rendered is not None else {"config.yaml": "port: 443\n"},
        fingerprints={},
        digest=DIGEST,
        change_cause="kstrata set port=443",
        created="2026-11-24T01:00:00Z",
    )


def sealed_snapshot(number: int = 2) -> Snapshot:
    return Snapshot(
        kind="SealedSecret",
        number=number,
        spec={"encryptedData": {"password": "v1.k1.AAAA"}},
        environment="dev",
        rendered={},
        fingerprints={"password": "fp:0123"},
        digest="sha256:" + "cd" * 32,
        change_cause="",
        created="2026-11-24T01:00:00Z",
    )


# --- snapshots -----------------------------------------------------------


def test_small_snapshot_is_plain_json_and_round_trips() -> None:
    snapshot = profile_snapshot()
    data = encode_snapshot(snapshot)
    assert data["format"] == SNAPSHOT_FORMAT
    assert "encoding" not in data
    assert data["rendered"] == {"config.yaml": "port: 443\n"}
    assert decode_snapshot(json.loads(json.dumps(data)), 3) == snapshot


def test_sealed_snapshot_round_trips() -> None:
    snapshot = sealed_snapshot()
    assert decode_snapshot(encode_snapshot(snapshot), 2) == snapshot


def test_large_snapshot_is_compressed_and_round_trips() -> None:
    text = "".join(f"key{i}: value number {i}\n" for i in range(20_000))
    snapshot = profile_snapshot(rendered={"config.yaml": text})
    data = encode_snapshot(snapshot)
    assert data["encoding"] == ENCODING_GZIP
    assert encoded_size(data) < len(text) / 3
    assert decode_snapshot(data, 3) == snapshot


def test_encoding_is_deterministic() -> None:
    text = "x: " + "abc" * COMPRESS_ABOVE
    snapshot = profile_snapshot(rendered={"config.yaml": text})
    assert encode_snapshot(snapshot) == encode_snapshot(snapshot)


def test_near_one_mebibyte_of_text_config_fits() -> None:
    lines = [
        f"service{i}.endpoint: https://svc-{i}.example.internal:8443/v1\n" for i in range(16_000)
    ]
    text = "".join(lines)[: 1024 * 1024 - 100]
    snapshot = profile_snapshot(rendered={"config.yaml": text})
    data = encode_snapshot(snapshot)
    assert encoded_size(data) <= MAX_SNAPSHOT_BYTES
    assert decode_snapshot(data, 3).rendered["config.yaml"] == text


def test_incompressible_snapshot_is_refused_clearly() -> None:
    # A profile's spec holds its configuration too, so a large random config counts twice.
    noise = base64.b64encode(os.urandom(700 * 1024)).decode("ascii")
    snapshot = dataclasses.replace(
        profile_snapshot(rendered={"config.yaml": noise}), spec={"base": {"blob": noise}}
    )
    with pytest.raises(SnapshotTooLargeError) as raised:
        encode_snapshot(snapshot)
    assert raised.value.reason == "RevisionTooLarge"
    assert noise[:32] not in str(raised.value)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"format": "other/v9"},
        {"format": SNAPSHOT_FORMAT, "encoding": "zstd", "payload": ""},
        {"format": SNAPSHOT_FORMAT, "encoding": ENCODING_GZIP, "payload": "!!notbase64"},
        {"format": SNAPSHOT_FORMAT, "encoding": ENCODING_GZIP, "payload": "aGVsbG8="},
        {"format": SNAPSHOT_FORMAT, "encoding": ENCODING_GZIP, "payload": 5},
        {"format": SNAPSHOT_FORMAT, "kind": "Deployment", "number": 3, "spec": {}},
        {"format": SNAPSHOT_FORMAT, "kind": "ConfigProfile", "number": 3, "spec": []},
        {"format": SNAPSHOT_FORMAT, "kind": "ConfigProfile", "number": 4, "spec": {}},
        {
            "format": SNAPSHOT_FORMAT,
            "kind": "ConfigProfile",
            "number": 3,
            "spec": {},
            "rendered": {"a": 1},
        },
        {"format": SNAPSHOT_FORMAT, "kind": "ConfigProfile", "number": 3, "spec": {}, "digest": 7},
    ],
)
def test_corrupt_or_foreign_data_is_a_document_error(data: object) -> None:
    with pytest.raises(DocumentError):
        decode_snapshot(data, 3)


def test_truncated_compressed_payload_is_a_document_error() -> None:
    text = "y: " + "q" * (COMPRESS_ABOVE * 2)
    data = encode_snapshot(profile_snapshot(rendered={"config.yaml": text}))
    payload = data["payload"]
    assert isinstance(payload, str)
    data["payload"] = payload[: len(payload) // 2]
    with pytest.raises(DocumentError):
        decode_snapshot(data, 3)


def test_gzip_bomb_is_refused() -> None:
    bomb = gzip.compress(b'{"format":"' + b" " * (20 * 1024 * 1024) + b'"}', mtime=0)
    data = {
        "format": SNAPSHOT_FORMAT,
        "encoding": ENCODING_GZIP,
        "payload": base64.b64encode(bomb).decode("ascii"),
    }
    with pytest.raises(DocumentError, match="size limit"):
        decode_snapshot(data, 3)


snapshot_strategy = st.builds(
    Snapshot,
    kind=st.sampled_from(["ConfigProfile", "SealedSecret"]),
    number=st.integers(min_value=1, max_value=10_000),
    spec=st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=20))),
    environment=st.text(max_size=10),
    rendered=st.dictionaries(st.text(max_size=10), st.text(max_size=200)),
    fingerprints=st.dictionaries(st.text(max_size=10), st.text(max_size=20)),
    digest=st.text(max_size=71),
    change_cause=st.text(max_size=50),
    created=st.text(max_size=20),
)


@given(snapshot_strategy)
def test_any_snapshot_round_trips(snapshot: Snapshot) -> None:
    data = json.loads(json.dumps(encode_snapshot(snapshot)))
    assert decode_snapshot(data, snapshot.number) == snapshot


# --- names ---------------------------------------------------------------


def test_names_are_readable_for_ordinary_names() -> None:
    assert revision_object_name("ConfigProfile", "payments", 7) == "payments-cfp-7"
    assert revision_object_name("SealedSecret", "db", 3) == "db-kss-3"


def test_unknown_kind_has_no_revision_names() -> None:
    with pytest.raises(ValueError, match="no revisions"):
        revision_object_name("Deployment", "x", 1)


name_strategy = st.from_regex(DNS_SUBDOMAIN, fullmatch=True).filter(lambda n: len(n) <= 253)


@given(name_strategy, st.integers(min_value=0, max_value=10**12))
def test_names_are_always_valid_dns_subdomains(name: str, number: int) -> None:
    result = revision_object_name("ConfigProfile", name, number)
    assert len(result) <= 253
    assert DNS_SUBDOMAIN.match(result)
    assert result.endswith(f"-cfp-{number}")


def test_long_names_stay_distinct() -> None:
    a = "a" * 250 + "x"
    b = "a" * 250 + "y"
    name_a = revision_object_name("SealedSecret", a, 10**9)
    name_b = revision_object_name("SealedSecret", b, 10**9)
    assert name_a != name_b
    assert len(name_a) <= 253
    assert len(name_b) <= 253


# --- history index -------------------------------------------------------


def test_history_round_trips_sorted_and_deduplicated() -> None:
    entries = [
        HistoryEntry(2, "2026-11-24T01:00:02Z", "b", "0123456789abcdef"),
        HistoryEntry(1, "2026-11-24T01:00:01Z", "", None),
        HistoryEntry(2, "2026-11-24T01:00:03Z", "b2", "fedcba9876543210"),
    ]
    text = encode_history(entries)
    assert decode_history(text) == [entries[1], entries[2]]
    assert text == encode_history([entries[1], entries[0], entries[2]])


def test_history_keeps_the_newest_within_the_limit() -> None:
    entries = [HistoryEntry(n, "t", "", None) for n in range(1, 301)]
    assert [e.number for e in decode_history(encode_history(entries, limit=11))] == list(
        range(290, 301)
    )
    assert len(decode_history(encode_history(entries))) == MAX_HISTORY_ENTRIES


def test_history_stays_small_at_the_largest_limit() -> None:
    cause = "x" * 5000
    entries = [
        HistoryEntry(n, "2026-11-24T01:00:00Z", cause, "sha256:" + "a" * 64) for n in range(1, 200)
    ]
    text = encode_history(entries)
    decoded = decode_history(text)
    assert all(len(e.change_cause) <= MAX_CAUSE_CHARS for e in decoded)
    assert all(e.digest == "a" * 16 for e in decoded)
    assert len(text.encode()) < 32 * 1024


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        "{}",
        "[1,2]",
        '[[1,"t","c"]]',
        '[["1","t","c",null]]',
        '[[1,"t",3,null]]',
        '[[-1,"t","",null]]',
        '[[1,"t","",5]]',
    ],
)
def test_malformed_history_reads_as_empty(text: str | None) -> None:
    assert decode_history(text) == []


def test_history_entry_of_a_sealed_secret_has_no_digest() -> None:
    assert history_entry(sealed_snapshot()).digest is None
    assert history_entry(profile_snapshot()).digest == "ab" * 8


# --- small rules ---------------------------------------------------------


def test_change_cause_is_recorded_only_when_it_is_new() -> None:
    assert change_cause_for("kstrata set a=1", None) == "kstrata set a=1"
    assert change_cause_for("kstrata set a=1", "kstrata set a=1") == ""
    assert change_cause_for("rollback to 3", "kstrata set a=1") == "rollback to 3"
    assert change_cause_for(None, "x") == ""
    assert change_cause_for("line\none", "") == "line one"
    assert len(change_cause_for("y" * 1000, "")) == MAX_CAUSE_CHARS


def test_digest_comparison_accepts_the_short_form() -> None:
    assert same_digest(DIGEST, short_digest(DIGEST))
    assert same_digest(DIGEST, DIGEST.removeprefix("sha256:"))
    assert not same_digest(DIGEST, "sha256:" + "ab" * 31 + "ac")
    assert not same_digest(DIGEST, None)
    assert not same_digest(DIGEST, "ab")  # too short to mean anything


def test_retained_numbers_keep_current_plus_limit() -> None:
    assert list(retained_numbers(15, 10)) == list(range(5, 16))
    assert list(retained_numbers(3, 10)) == [1, 2, 3]


@pytest.mark.parametrize(
    ("value", "expected"), [("7", 7), (7, 7), (None, 0), ("", 0), ("x", 0), ("-3", 0), (True, 0)]
)
def test_parse_revision(value: object, expected: int) -> None:
    assert parse_revision(value) == expected
