"""Break-glass recovery offline: `kstrata unseal --recovery-keys` and the 0600 backup writer.

The key backup here is built exactly as ``kstrata keys backup`` writes it (a
Secret manifest of the key Secret; the cluster tests run the real command).
No value may appear in any output unless ``--i-know-this-prints-secrets`` is
given, and then only inside the printed Secret manifest.
"""

from __future__ import annotations

import base64
import io
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.app.recovery import write_new_private_file
from kstrata.cli.main import main
from kstrata.crypto import FingerprintKey, KeyPair, KeyRing, PublicKeyBundle, generate_keypair
from kstrata.errors import UsageError
from support.offline import cluster_modules_imported

CANARY = "canary recovery 41be s3cret!"
T0 = datetime(2025, 6, 1, tzinfo=UTC)
FLAG = "--i-know-this-prints-secrets"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def cluster_key() -> KeyPair:
    return generate_keypair(created=T0)


@pytest.fixture(scope="module")
def other_key() -> KeyPair:
    return generate_keypair(created=T0)


def backup_file(tmp_path: Path, *pairs: KeyPair) -> Path:
    data = {
        name: base64.b64encode(entry).decode()
        for name, entry in KeyRing(pairs).to_secret_data().items()
    }
    data["fingerprint-key.json"] = base64.b64encode(
        FingerprintKey.generate(created=T0).to_secret_entry()
    ).decode()
    path = tmp_path / "keys-backup.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "kstrata-sealing-keys", "namespace": "kstrata-system"},
                "type": "Opaque",
                "data": data,
            }
        )
    )
    return path


def sealed_file(tmp_path: Path, *pairs: KeyPair, extra: tuple[str, ...] = ()) -> Path:
    certs: list[str] = []
    for index, pair in enumerate(pairs):
        cert = tmp_path / f"cert{index}.json"
        cert.write_text(PublicKeyBundle.of([pair]).serialize())
        certs += ["--cert", str(cert)]
    secret = tmp_path / "pw"
    secret.write_text(CANARY)
    code, out, err = run(
        "seal", *certs, "-n", "payments", "--name", "db", "--from-literal", "user=app",
        "--from-file", f"password={secret}", *extra,
    )  # fmt: skip
    assert (code, err) == (0, ""), err
    path = tmp_path / "sealed.yaml"
    manifest: dict[str, Any] = yaml.safe_load(out)
    manifest["spec"]["template"] = {"type": "kubernetes.io/basic-auth", "labels": {"app": "db"}}
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_without_the_flag_only_which_items_open_is_printed(
    tmp_path: Path, cluster_key: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = backup_file(tmp_path, cluster_key)
    sealed = sealed_file(tmp_path, cluster_key)
    code, out, err = run("unseal", "--recovery-keys", str(keys), "-f", str(sealed))
    assert code == 0
    assert "payments/db" in out
    assert "2 item(s) open" in out
    assert cluster_key.key_id in out
    notes = capsys.readouterr().err  # the handler's notes go to the process's stderr
    assert FLAG in notes
    for text in (out, err, notes):
        assert CANARY not in text
        assert base64.b64encode(CANARY.encode()).decode() not in text


def test_with_the_flag_the_secret_manifest_is_printed(tmp_path: Path, cluster_key: KeyPair) -> None:
    keys = backup_file(tmp_path, cluster_key)
    sealed = sealed_file(tmp_path, cluster_key)
    code, out, err = run("unseal", "--recovery-keys", str(keys), "-f", str(sealed), FLAG)
    assert code == 0
    assert CANARY not in err
    secret = yaml.safe_load(out)
    assert secret["apiVersion"] == "v1"
    assert secret["kind"] == "Secret"
    assert secret["metadata"] == {"name": "db", "namespace": "payments", "labels": {"app": "db"}}
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert base64.b64decode(secret["data"]["password"]).decode() == CANARY
    assert base64.b64decode(secret["data"]["user"]) == b"app"


def test_the_flag_cannot_be_abbreviated(tmp_path: Path, cluster_key: KeyPair) -> None:
    keys = backup_file(tmp_path, cluster_key)
    sealed = sealed_file(tmp_path, cluster_key)
    code, out, err = run("unseal", "--recovery-keys", str(keys), "-f", str(sealed), "--i-know")
    assert (code, out) == (2, "")
    assert "unrecognized" in err


def test_a_multi_recipient_manifest_opens_with_either_backup(
    tmp_path: Path, cluster_key: KeyPair, other_key: KeyPair
) -> None:
    sealed = sealed_file(tmp_path, other_key, cluster_key)
    for pair in (cluster_key, other_key):
        keys = backup_file(tmp_path, pair)
        code, out, _ = run("unseal", "--recovery-keys", str(keys), "-f", str(sealed), FLAG)
        assert code == 0
        assert base64.b64decode(yaml.safe_load(out)["data"]["password"]).decode() == CANARY


def test_the_wrong_keys_print_nothing_and_leak_nothing(
    tmp_path: Path, cluster_key: KeyPair, other_key: KeyPair
) -> None:
    keys = backup_file(tmp_path, other_key)
    sealed = sealed_file(tmp_path, cluster_key)
    tokens = yaml.safe_load(sealed.read_text())["spec"]["encryptedData"]
    code, out, err = run("unseal", "--recovery-keys", str(keys), "-f", str(sealed), FLAG)
    assert (code, out) == (1, "")
    assert "do not open with the recovery keys" in err
    assert cluster_key.key_id in err
    assert CANARY not in err
    for token in tokens.values():
        assert token[5:30] not in err


def test_a_moved_manifest_does_not_open(tmp_path: Path, cluster_key: KeyPair) -> None:
    keys = backup_file(tmp_path, cluster_key)
    sealed = sealed_file(tmp_path, cluster_key)
    manifest = yaml.safe_load(sealed.read_text())
    manifest["metadata"]["namespace"] = "elsewhere"
    sealed.write_text(yaml.safe_dump(manifest))
    code, out, err = run("unseal", "--recovery-keys", str(keys), "-f", str(sealed), FLAG)
    assert (code, out) == (1, "")
    assert "DecryptionFailed" in err


def test_environments_need_a_choice(tmp_path: Path, cluster_key: KeyPair) -> None:
    keys = backup_file(tmp_path, cluster_key)
    cert = tmp_path / "c.json"
    cert.write_text(PublicKeyBundle.of([cluster_key]).serialize())
    sealed = tmp_path / "s.yaml"
    code, out, _ = run("seal", "--cert", str(cert), "-n", "ns", "--name", "db",
                       "--from-literal", "pw=base")  # fmt: skip
    sealed.write_text(out)
    code, _, _ = run("seal", "--cert", str(cert), "--merge-into", str(sealed), "--env", "prod",
                     "--from-literal", f"pw={CANARY}")  # fmt: skip
    assert code == 0
    code, _, err = run("unseal", "--recovery-keys", str(keys), "-f", str(sealed))
    assert code == 2
    assert "choose one with --env" in err
    code, out, _ = run("unseal", "--recovery-keys", str(keys), "-f", str(sealed), "--env", "prod",
                       FLAG)  # fmt: skip
    assert code == 0
    assert base64.b64decode(yaml.safe_load(out)["data"]["pw"]).decode() == CANARY
    code, _, err = run("unseal", "--recovery-keys", str(keys), "-f", str(sealed), "--env", "qa")
    assert code == 2
    assert "has no such environment" in err
    assert "qa" not in err


def test_a_file_that_is_not_a_key_backup_is_refused(tmp_path: Path, cluster_key: KeyPair) -> None:
    sealed = sealed_file(tmp_path, cluster_key)
    bogus = tmp_path / "bogus.yaml"
    bogus.write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "data": {"x.json": "eyJ9"}})
    )
    code, out, err = run("unseal", "--recovery-keys", str(bogus), "-f", str(sealed))
    assert (code, out) == (1, "")
    assert "entry x.json is not a sealing key pair" in err


def test_unseal_imports_neither_kopf_nor_the_kubernetes_client(
    tmp_path: Path, cluster_key: KeyPair
) -> None:
    keys = backup_file(tmp_path, cluster_key)
    sealed = sealed_file(tmp_path, cluster_key)
    argv = ["unseal", "--recovery-keys", str(keys), "-f", str(sealed)]
    assert cluster_modules_imported(argv, expected="") == []


# --- the backup writer -----------------------------------------------------------


def test_the_backup_file_is_new_and_0600(tmp_path: Path) -> None:
    target = tmp_path / "backup.yaml"
    os.umask(0o022)
    write_new_private_file(target, "private\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == "private\n"
    assert [p.name for p in tmp_path.iterdir()] == ["backup.yaml"]  # no temporary left
    with pytest.raises(UsageError, match="never overwritten"):
        write_new_private_file(target, "other\n")
    assert target.read_text() == "private\n"


@pytest.mark.parametrize("target", ["-", "/dev/null", "/dev/stdout"])
def test_the_backup_is_never_written_to_stdout_or_a_device(target: str) -> None:
    if target != "-" and not Path(target).exists():
        pytest.skip(f"{target} does not exist on this machine")
    # /dev/stdout is whatever fd 1 is: a terminal, a pipe, or (under pytest) a file.
    with pytest.raises(UsageError, match=r"standard output|not a regular file|never overwritten"):
        write_new_private_file(Path(target), "private\n")


def test_keys_backup_refuses_stdout_before_asking_the_cluster(tmp_path: Path) -> None:
    # The kubeconfig does not exist: had it connected, the error would say so.
    missing = str(tmp_path / "no-kubeconfig")
    code, out, err = run("keys", "backup", "-o", "-", "--kubeconfig", missing)
    assert (code, out) == (2, "")
    assert "standard output" in err
    existing = tmp_path / "old-backup.yaml"
    existing.write_text("x")
    code, _, err = run("keys", "backup", "-o", str(existing), "--kubeconfig", missing)
    assert code == 2
    assert "never overwritten" in err


def test_wrong_targets_and_inputs_name_the_next_step(tmp_path: Path, cluster_key: KeyPair) -> None:
    # A directory as the backup target: the message says what to give instead.
    missing = str(tmp_path / "no-kubeconfig")
    code, out, err = run("keys", "backup", "-o", str(tmp_path), "--kubeconfig", missing)
    assert (code, out) == (2, "")
    assert err == (
        f"error: {tmp_path} is a directory: give the new backup file's name "
        f"(for example -o {tmp_path / 'kstrata-keys-backup.yaml'})\n"
    )
    # A manifest that is not a key backup given as --recovery-keys: which file it takes.
    sealed = sealed_file(tmp_path, cluster_key)
    code, out, err = run("unseal", "--recovery-keys", str(sealed), "-f", str(sealed))
    assert (code, out) == (1, "")
    assert err == (
        f"error: {sealed}: expected a Secret (apiVersion v1, kind Secret): --recovery-keys "
        "takes the file 'kstrata keys backup -o FILE' wrote\n"
    )


def test_recover_reports_each_file_through_the_progress_callback(
    tmp_path: Path, cluster_key: KeyPair
) -> None:
    from kstrata.app.recovery import recover

    files = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        files.append(sealed_file(tmp_path / name, cluster_key))
    heard: list[str] = []
    opened = recover(files, KeyRing([cluster_key]), progress=heard.append)
    assert len(opened) == 2
    assert heard == [f"opening 1/2: {files[0]}", f"opening 2/2: {files[1]}"]
    assert all(CANARY not in line for line in heard)
