"""Progress on a terminal, nothing extra in a pipe (issue 16, item 6).

stderr is a real pseudo-terminal (``os.openpty``) or a real pipe
(``os.pipe``); the commands run through ``main`` with the app functions
replaced by ones that report progress as the real ones do (the real wait
loops' reports are tested in tests/unit/app/test_history_commands.py).  Bytes
are read back from the terminal's master side until a sentinel arrives, with
a deadline: no sleeping.
"""

from __future__ import annotations

import io
import os
import select
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pytest
import yaml

from kstrata.app import (
    profile_commands,
    recovery,
    reloader_migration,
    seal_bulk,
    secret_imports,
)
from kstrata.app import rollback as rollback_module
from kstrata.app.history_toolkit import ConfigDiff
from kstrata.app.profile_commands import SetResult
from kstrata.app.reloader_migration import MigrationReport
from kstrata.app.rollback import RollbackResult
from kstrata.cli import history_cmd, migrate_cmd, profile_cmd
from kstrata.cli.main import main
from kstrata.cli.progress import Progress
from kstrata.crypto import PublicKeyBundle, generate_keypair
from kstrata.errors import ClusterError
from support.leaks import Canary, report, scan

SENTINEL = "<end-of-test-output>"


@contextmanager
def terminal() -> Iterator[tuple[TextIO, Callable[[], str]]]:
    """A writable stream on a pseudo-terminal, and a function that reads what reached it."""
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w", encoding="utf-8")

    def read() -> str:
        stream.write(SENTINEL)
        stream.flush()
        received = b""
        deadline = time.monotonic() + 10
        while SENTINEL.encode() not in received:
            left = deadline - time.monotonic()
            assert left > 0, f"the terminal got {received!r}"
            ready, _, _ = select.select([master], [], [], left)
            if ready:
                received += os.read(master, 65536)
        return received.decode().replace(SENTINEL, "")

    try:
        yield stream, read
    finally:
        stream.close()
        os.close(master)


@contextmanager
def pipe() -> Iterator[tuple[TextIO, Callable[[], str]]]:
    reader, writer = os.pipe()
    stream = os.fdopen(writer, "w", encoding="utf-8")
    with os.fdopen(reader, "r", encoding="utf-8") as source:

        def read() -> str:
            stream.close()
            return source.read()

        try:
            yield stream, read
        finally:
            if not stream.closed:
                stream.close()


def test_progress_rewrites_one_line_on_a_terminal_and_erases_it() -> None:
    with terminal() as (stream, read):
        assert stream.isatty()
        with Progress(stream) as progress:
            assert progress.live
            progress("waiting 10s")
            progress("waiting 9")
        assert read() == "\rwaiting 10s\rwaiting 9  \r           \r"


def test_progress_writes_nothing_to_a_pipe_or_a_string() -> None:
    with pipe() as (stream, read):
        with Progress(stream) as progress:
            assert not progress.live
            progress("waiting 10s")
        assert read() == ""
    quiet = io.StringIO()
    with Progress(quiet) as progress:
        progress("waiting")
    assert quiet.getvalue() == ""


def rollback_result() -> RollbackResult:
    return RollbackResult(
        "ConfigProfile",
        "shop",
        "payments",
        2,
        3,
        {"kind": "ConfigProfile"},
        ConfigDiff("payments", "a", "b", {}, {}),
        changed=True,
        written=True,
        revision=4,
        warnings=("a warning",),
    )


def reporting(result: Any, *, fail: bool = False) -> Callable[..., Any]:
    """An app function that reports two waits, as the real loops do, then returns or fails."""

    def function(*_args: Any, progress: Callable[[str], None] | None = None, **_k: Any) -> Any:
        assert progress is not None, "the CLI passes a progress callback"
        progress("waiting for the operator: 0s of 60s")
        progress("waiting for the operator: 1s of 60s")
        if fail:
            raise ClusterError("the operator did not report", reason="Timeout")
        return result

    return function


class Cluster:
    default_namespace = "shop"


#: What each command prints on stderr itself, terminal or not.
STDERR = {
    "rollback": "rolling back to revision 2: named with --to-revision\nwarning: a warning\n",
    "set": "",
    "migrate reloader --apply": "",
    "seal -f": "",
    "import --sops": "imported 0 SealedSecret(s)\n",
    "import --bitnami-keys": "imported 0 SealedSecret(s)\n",
    "unseal": "values not printed; add --i-know-this-prints-secrets to print the Secret "
    "manifest(s)\n",
}
COMMANDS = {
    "rollback": ["rollback", "payments"],
    "set": ["set", "payments", "replicas=3"],
    "migrate reloader --apply": ["migrate", "reloader", "--apply"],
    "seal -f": ["seal", "-f", "secrets/", "--cert", "sealing-keys.json", "-n", "shop"],
    "import --sops": ["import", "--sops", "-f", "db.enc.yaml", "--cert", "sealing-keys.json"],
    "import --bitnami-keys": [
        "import", "sealedsecret", "--bitnami-keys", "backup.yaml", "-f", "bitnami/",
        "--cert", "sealing-keys.json",
    ],
    "unseal": ["unseal", "--recovery-keys", "backup.yaml", "-f", "sealed/"],
}  # fmt: skip


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    def install(fail: bool) -> None:
        monkeypatch.setattr(history_cmd, "_connect", lambda _args: (object(), "shop"))
        monkeypatch.setattr(profile_cmd, "_connect", lambda _args: (object(), "shop"))
        monkeypatch.setattr(migrate_cmd, "connect_from", lambda _args: Cluster())
        monkeypatch.setattr("kstrata.kube.api.KubeApi", lambda _cluster: object())
        monkeypatch.setattr(rollback_module, "rollback", reporting(rollback_result(), fail=fail))
        written = SetResult("shop", "payments", {}, "cause", changed=True, written=True)
        monkeypatch.setattr(profile_commands, "set_values", reporting(written, fail=fail))
        report = MigrationReport((), (), applied=True)
        monkeypatch.setattr(reloader_migration, "migrate_reloader", reporting(report, fail=fail))
        monkeypatch.setattr(seal_bulk, "seal_secrets", reporting([], fail=fail))
        monkeypatch.setattr(secret_imports, "load_bitnami_keys", lambda _path: [])
        monkeypatch.setattr(secret_imports, "import_bitnami", reporting([], fail=fail))
        monkeypatch.setattr(secret_imports, "import_sops", reporting([], fail=fail))
        monkeypatch.setattr(recovery, "load_recovery_keys", lambda _path: None)
        monkeypatch.setattr(recovery, "recover", reporting([], fail=fail))

    return install


@pytest.mark.parametrize("command", COMMANDS)
def test_long_commands_show_progress_on_a_terminal_only(
    command: str, fake_app: Callable[[bool], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_app(False)
    with terminal() as (stream, read):
        monkeypatch.setattr(sys, "stderr", stream)
        assert main(COMMANDS[command], out=io.StringIO(), err=stream) == 0
        shown = read()
    line = "waiting for the operator: 1s of 60s"
    progress = f"\rwaiting for the operator: 0s of 60s\r{line}\r{' ' * len(line)}\r"
    # What is printed after the progress starts on a clean line (the terminal adds \r to \n).
    assert shown == progress + STDERR[command].replace("\n", "\r\n")

    with pipe() as (stream, read):
        monkeypatch.setattr(sys, "stderr", stream)
        assert main(COMMANDS[command], out=io.StringIO(), err=stream) == 0
        assert read() == STDERR[command]  # nothing extra: no progress, no \r


@pytest.mark.parametrize("command", COMMANDS)
def test_an_error_starts_on_a_clean_line(
    command: str, fake_app: Callable[[bool], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_app(True)
    with terminal() as (stream, read):
        monkeypatch.setattr(sys, "stderr", stream)
        assert main(COMMANDS[command], out=io.StringIO(), err=stream) == 3
        shown = read()
    assert shown.endswith("\r" + " " * 35 + "\rerror: the operator did not report\r\n")
    with pipe() as (stream, read):
        monkeypatch.setattr(sys, "stderr", stream)
        assert main(COMMANDS[command], out=io.StringIO(), err=stream) == 3
        assert read() == "error: the operator did not report\n"


def test_sealing_many_secrets_reports_each_on_a_terminal_and_never_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real seal_secrets, offline: two Secrets, each reported by namespace/name only.
    canary = Canary.new("progress")
    cert = tmp_path / "sealing-keys.json"
    keypair = generate_keypair(created=datetime(2026, 1, 1, tzinfo=UTC))
    cert.write_text(PublicKeyBundle.of([keypair]).serialize())
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("api", "db"):
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": "shop"},
            "stringData": {"password": canary.text},
        }
        (secrets / f"{name}.yaml").write_text(yaml.safe_dump(secret))
    argv = ["seal", "-f", str(secrets), "--cert", str(cert)]
    with terminal() as (stream, read):
        monkeypatch.setattr(sys, "stderr", stream)
        out = io.StringIO()
        assert main(argv, out=out, err=stream) == 0
        shown = read()
    assert shown.startswith("\rsealing 1/2: shop/api\rsealing 2/2: shop/db \r")
    assert shown.endswith("\r" + " " * len("sealing 1/2: shop/api") + "\r")
    assert len(list(yaml.safe_load_all(out.getvalue()))) == 2
    hits = scan({"terminal": shown, "stdout": out.getvalue()}, [canary])
    assert hits == [], report(hits)
    with pipe() as (stream, read):
        monkeypatch.setattr(sys, "stderr", stream)
        assert main(argv, out=io.StringIO(), err=stream) == 0
        assert read() == ""
