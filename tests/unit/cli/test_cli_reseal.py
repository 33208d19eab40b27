"""`kstrata reseal` through ``main(argv)``: flags, outputs, all-or-nothing, no value in any output.

The operator's endpoint is replaced by its own function, :func:`reseal_batch`
over real key rings, called in-process: the endpoint itself is tested in
tests/cluster/test_reseal_endpoint.py, the API server's service proxy and
RBAC on the node in tests/e2e/test_reseal_on_node.py.
"""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.app.reseal import reseal_batch
from kstrata.cli import reseal_cmd
from kstrata.cli.main import main
from kstrata.crypto import KeyRing, SealingContext, generate_keypair, parse_token, seal
from support.leaks import Canary, scan

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OLD = generate_keypair(created=T0)
NEW = generate_keypair(created=T0 + timedelta(days=1))
SECRET = Canary.new("reseal-cli")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> KeyRing:
    ring = KeyRing([OLD, NEW])

    def sender(_: argparse.Namespace) -> Any:
        def send(request: dict[str, Any]) -> dict[str, Any]:
            return reseal_batch(json.dumps(request).encode(), ring).as_data()

        return send

    monkeypatch.setattr(reseal_cmd, "sender", sender)
    return ring


def sealed_file(path: Path, name: str = "db") -> str:
    context = SealingContext.bind("strict", namespace="shop", name=name, item="password")
    token = seal(SECRET.value, OLD.public, context)
    path.write_text(
        f"# {name}: rotated yearly\napiVersion: kstrata.dev/v1alpha1\nkind: SealedSecret\n"
        f"metadata: {{name: {name}, namespace: shop}}\n"
        f"spec:\n  encryptedData:\n    password: {token}\n"
    )
    return token


def test_in_place_then_again_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    old = sealed_file(tmp_path / "apps" / "db.yaml")
    sealed_file(tmp_path / "apps" / "cache.yaml", "cache")
    code, out, err = run("reseal", "-f", str(tmp_path), "--in-place")
    assert (code, out) == (0, "")
    assert f"2 of 2 item(s) resealed to key {NEW.key_id}; 2 file(s) rewritten" in err
    text = (tmp_path / "apps" / "db.yaml").read_text()
    assert old not in text
    assert text.startswith("# db: rotated yearly\n")
    (token,) = yaml.safe_load(text)["spec"]["encryptedData"].values()
    assert parse_token(token).key_ids == (NEW.key_id,)
    code, _, err = run("reseal", "-f", str(tmp_path), "--in-place")
    assert code == 0
    assert "0 of 2 item(s) resealed" in err
    assert (tmp_path / "apps" / "db.yaml").read_text() == text
    assert not scan({"stdout": out, "stderr": err}, [SECRET])


def test_stdout_and_json_and_output_dir(tmp_path: Path) -> None:
    sealed_file(tmp_path / "db.yaml")
    code, out, err = run("reseal", "-f", str(tmp_path / "db.yaml"))
    assert code == 0
    assert out.startswith("# db: rotated yearly\n")
    code, out_json, _ = run("reseal", "-f", str(tmp_path / "db.yaml"), "-o", "json")
    listed = json.loads(out_json)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["db"]
    code, _, _ = run("reseal", "-f", str(tmp_path), "--output-dir", str(tmp_path / "out"))
    assert code == 0
    assert (tmp_path / "out" / "db.yaml").read_text().startswith("# db: rotated yearly\n")
    assert not scan({"stdout": out + out_json, "stderr": err}, [SECRET])


def test_a_failing_item_writes_nothing_and_names_where(tmp_path: Path) -> None:
    sealed_file(tmp_path / "a.yaml")
    token = sealed_file(tmp_path / "b.yaml")
    # b.yaml's token was sealed for "db", but b.yaml now says "moved": strict scope refuses.
    (tmp_path / "b.yaml").write_text(
        (tmp_path / "b.yaml").read_text().replace("name: db", "name: moved")
    )
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    code, out, err = run("reseal", "-f", str(tmp_path), "--in-place")
    assert code == 1
    assert "b.yaml, document 1, SealedSecret moved, spec.encryptedData.password" in err
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before
    assert token not in err
    assert not scan({"stdout": out, "stderr": err}, [SECRET])


def test_json_output_does_not_go_with_in_place(tmp_path: Path) -> None:
    sealed_file(tmp_path / "db.yaml")
    code, _, err = run("reseal", "-f", str(tmp_path), "--in-place", "-o", "json")
    assert code == 2
    assert "-o json" in err
