"""``kstrata reseal``'s two halves without a cluster: the operator's batch and the file rewriting.

The operator's half (:func:`reseal_batch`) gets real key rings; the CLI's half
talks to it through a ``send`` that calls it in-process, so everything but the
HTTP hop and the API server's proxy (tested on the node, tests/e2e) is real.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kstrata.app.reseal import (
    MAX_REQUEST_ITEMS,
    collect,
    reseal_batch,
    reseal_files,
    rewritten,
    write_in_place,
)
from kstrata.crypto import KeyRing, SealingContext, generate_keypair, parse_token, seal, seal_multi
from kstrata.errors import ForbiddenError, InputLimitError, SealingError
from support.leaks import Canary, scan

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY_A = generate_keypair(created=T0)
KEY_B = generate_keypair(created=T0 + timedelta(days=30))
FOREIGN = generate_keypair(created=T0)
VALUE = Canary.new("reseal")


def strict(item: str = "password", name: str = "db", namespace: str = "shop") -> SealingContext:
    return SealingContext.bind("strict", namespace=namespace, name=name, item=item)


def manifest(token: str, *, comment: str = "# keep me", other: str | None = None) -> str:
    extra = f"\n    username: {other}" if other else ""
    return (
        f"{comment}\n"
        "apiVersion: kstrata.dev/v1alpha1\n"
        "kind: SealedSecret\n"
        "metadata:\n"
        "  namespace: shop   # trailing comment\n"
        "  name: db\n"
        "spec:\n"
        "  encryptedData:\n"
        f"    password: {token}{extra}\n"
    )


def in_process(ring: KeyRing, registered: tuple[str, ...] = ()) -> Any:
    sent: list[dict[str, Any]] = []

    def send(request: dict[str, Any]) -> dict[str, Any]:
        sent.append(request)
        return reseal_batch(json.dumps(request).encode(), ring, registered).as_data()

    send.sent = sent  # type: ignore[attr-defined]
    return send


def test_round_trip_rotated_ring_reseals_to_the_newest_key_and_keeps_the_value(
    tmp_path: Path,
) -> None:
    old = seal(VALUE.value, KEY_A.public, strict())
    path = tmp_path / "db.yaml"
    path.write_text(manifest(old))
    ring = KeyRing([KEY_A, KEY_B])  # rotated: B is the newest
    files = collect([path])
    key_id = reseal_files(files, in_process(ring))
    assert key_id == KEY_B.key_id
    new = files[0].replacements[old]
    assert parse_token(new).key_ids == (KEY_B.key_id,)
    assert KeyRing([KEY_B]).open(new, strict()) == VALUE.value
    # Only the token changed: the comments and the layout are the same text.
    assert rewritten(files[0]) == manifest(new)


def test_second_pass_is_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "db.yaml"
    path.write_text(manifest(seal(VALUE.value, KEY_A.public, strict())))
    ring = KeyRing([KEY_A, KEY_B])
    first = collect([path])
    reseal_files(first, in_process(ring))
    assert write_in_place(first) == [path]
    once = path.read_bytes()
    again = collect([path])
    reseal_files(again, in_process(ring))
    assert again[0].replacements == {}
    assert write_in_place(again) == []
    assert path.read_bytes() == once


def test_in_place_keeps_comments_order_and_other_documents(tmp_path: Path) -> None:
    token_a = seal(VALUE.value, KEY_A.public, strict())
    token_b = seal(b"user", KEY_A.public, strict("username"))
    configmap = "---\n# a ConfigMap stays as it is\napiVersion: v1\nkind: ConfigMap\n"
    text = manifest(token_a, other=token_b) + configmap
    path = tmp_path / "all.yaml"
    path.write_text(text)
    files = collect([tmp_path])
    reseal_files(files, in_process(KeyRing([KEY_A, KEY_B])))
    write_in_place(files)
    after = path.read_text()
    mapping = files[0].replacements
    assert set(mapping) == {token_a, token_b}
    assert after == text.replace(token_a, mapping[token_a]).replace(token_b, mapping[token_b])
    assert "# a ConfigMap stays as it is" in after
    assert "# trailing comment" in after


def test_all_or_nothing_names_file_document_and_item_never_a_value(tmp_path: Path) -> None:
    good = tmp_path / "a.yaml"
    good.write_text(manifest(seal(VALUE.value, KEY_A.public, strict())))
    # Sealed for another name: under strict scope it does not open as db.
    moved = tmp_path / "b.yaml"
    moved.write_text(manifest(seal(VALUE.value, KEY_A.public, strict(name="other"))))
    before = {p: p.read_bytes() for p in (good, moved)}
    files = collect([tmp_path])
    with pytest.raises(SealingError) as caught:
        reseal_files(files, in_process(KeyRing([KEY_A, KEY_B])))
    message = str(caught.value)
    assert "b.yaml, document 1, SealedSecret db, spec.encryptedData.password" in message
    assert "DecryptionFailed" in message
    assert "no file was changed" in message
    assert all(f.replacements == {} for f in files)
    assert {p: p.read_bytes() for p in before} == before
    assert not scan({"error": message}, [VALUE])


def test_foreign_cert_is_refused_unless_registered(tmp_path: Path) -> None:
    path = tmp_path / "db.yaml"
    path.write_text(manifest(seal(VALUE.value, KEY_A.public, strict())))
    bundle = KeyRing([FOREIGN]).public_bundle().serialize()
    files = collect([path])
    with pytest.raises(ForbiddenError, match="not registered"):
        reseal_files(files, _raising(KeyRing([KEY_A])), bundle)
    files = collect([path])
    key_id = reseal_files(files, in_process(KeyRing([KEY_A]), (FOREIGN.key_id,)), bundle)
    assert key_id == FOREIGN.key_id
    (new,) = files[0].replacements.values()
    assert KeyRing([FOREIGN]).open(new, strict()) == VALUE.value


def _raising(ring: KeyRing) -> Any:
    def send(request: dict[str, Any]) -> dict[str, Any]:
        return reseal_batch(json.dumps(request).encode(), ring).as_data()

    return send


def test_wrong_scope_fails_namespace_scope_moves_within_the_namespace(tmp_path: Path) -> None:
    ns_token = seal(
        VALUE.value, KEY_A.public, SealingContext.bind("namespace", namespace="shop", item="pw")
    )
    request = {
        "items": [
            {
                "scope": "namespace",
                "namespace": "shop",
                "name": "x",
                "item": "pw",
                "token": ns_token,
            },
            {
                "scope": "namespace",
                "namespace": "bank",
                "name": "x",
                "item": "pw",
                "token": ns_token,
            },
        ]
    }
    batch = reseal_batch(json.dumps(request).encode(), KeyRing([KEY_A, KEY_B]))
    assert batch.tokens == ()
    assert [(i, r) for i, r, _ in batch.failures] == [(1, "DecryptionFailed")]


def test_multi_recipient_tokens_are_refused_naming_their_key_ids() -> None:
    token = seal_multi(VALUE.value, [KEY_A.public, FOREIGN.public], strict())
    request = {
        "items": [
            {
                "scope": "strict",
                "namespace": "shop",
                "name": "db",
                "item": "password",
                "token": token,
            }
        ]
    }
    batch = reseal_batch(json.dumps(request).encode(), KeyRing([KEY_A, KEY_B]))
    ((index, reason, message),) = batch.failures
    assert (index, reason) == (0, "MultiRecipientToken")
    assert KEY_A.key_id in message
    assert FOREIGN.key_id in message


def test_request_bounds_are_checked_before_any_key_work() -> None:
    item = {"scope": "cluster", "item": "k", "token": "kss1:x"}
    body = json.dumps({"items": [item] * (MAX_REQUEST_ITEMS + 1)}).encode()
    with pytest.raises(InputLimitError):
        reseal_batch(body, KeyRing([KEY_A]))
    with pytest.raises(InputLimitError):
        reseal_batch(b" " * (17 * 1024 * 1024), KeyRing([KEY_A]))
