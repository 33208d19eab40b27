"""What the offline ``kstrata seal`` tests share: the CLI run, one key pair and its ``--cert``.

Every ``seal`` test module needs the same three things: the CLI run in
process (exit code, stdout, stderr), no kubeconfig from the environment (without
``-n``, ``seal`` takes the kubeconfig context's namespace, so a developer's own
kubeconfig must not change a result), and a key pair with its public bundle
file for ``--cert``.  A module takes the fixtures by importing them::

    from support.seal_cli import cert_fixture, keypair_fixture, no_ambient_kubeconfig, run

and asks for ``keypair`` and ``cert`` (the kubeconfig one applies by itself).
``run`` alone serves any in-process CLI test (the secret imports take it too).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kstrata.cli.main import main
from kstrata.crypto import KeyPair, PublicKeyBundle, generate_keypair


def run(*argv: str) -> tuple[int, str, str]:
    """``kstrata ARGV`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def no_ambient_kubeconfig(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The context's namespace comes only from a kubeconfig the test itself writes."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))


@pytest.fixture(scope="module", name="keypair")
def keypair_fixture() -> KeyPair:
    return generate_keypair(created=datetime(2025, 6, 1, tzinfo=UTC))


@pytest.fixture(name="cert")
def cert_fixture(tmp_path: Path, keypair: KeyPair) -> Path:
    """``keypair``'s public bundle, as ``--cert`` reads it."""
    path = tmp_path / "cert.json"
    path.write_text(PublicKeyBundle.of([keypair]).serialize())
    return path
