"""What the offline commands load: the bound behind their ≤ 100 ms cold start (issue 18).

``render``, ``validate`` and ``seal --cert`` (one value, and many Secrets
with ``-f DIR``) run in a fresh interpreter, and the modules they leave in
``sys.modules`` are held to a bound: none of the operator's stack (kopf, the
Kubernetes client, aiohttp, asyncio, ssl, urllib3), and none of the standard
library modules that were trimmed from their start (shutil through argparse's
terminal width, difflib, _strptime, tempfile, email, http.client), nor
jsonschema for a schema made of common keywords; ``seal --cert`` with
literal values does not load PyYAML at all.  Each of those costs
milliseconds of every invocation (``benchmarks/importcost.py time``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from kstrata.crypto import PublicKeyBundle, generate_keypair

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "config"

NOT_LOADED = (
    "kopf",
    "kubernetes",
    "aiohttp",
    "asyncio",
    "ssl",
    "urllib3",
    "jsonschema",
    "shutil",
    "difflib",
    "_strptime",
    "tempfile",
    "email",
    "http.client",
)
#: Generous: today's commands load 145-200 modules; a new heavy dependency adds many.
MAX_MODULES = 300

PROBE = """
import io, json, sys
from kstrata.cli.main import main
code = main(sys.argv[1:], out=io.StringIO())
print(json.dumps([code, sorted(sys.modules)]))
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("start-imports")
    (root / "cert.json").write_text(
        PublicKeyBundle.of([generate_keypair(created=datetime(2025, 6, 1, tzinfo=UTC))]).serialize()
    )
    (root / "secrets").mkdir()
    for index in range(3):
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"s{index}", "namespace": "apps"},
            "stringData": {"k": "v"},
        }
        (root / "secrets" / f"s{index}.yaml").write_text(yaml.safe_dump(secret))
    return root


def commands(root: Path) -> dict[str, list[str]]:
    files = ["-f", str(EXAMPLES / "payments.yaml"), "-f", str(EXAMPLES / "platform-defaults.yaml")]
    cert = ["--cert", str(root / "cert.json")]
    return {
        "render": ["render", *files, "--env", "prod"],
        "validate": ["validate", *files],
        "seal one value": ["seal", *cert, "-n", "a", "--name", "b", "--from-literal", "k=v"],
        "seal a directory": ["seal", *cert, "-f", str(root / "secrets")],
    }


def loaded_modules(root: Path, label: str) -> list[str]:
    """The modules a fresh interpreter holds after the command ran (and succeeded)."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "COLUMNS")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *commands(root)[label]],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    code, modules = json.loads(result.stdout.splitlines()[-1])
    assert code == 0, result.stderr
    return list(modules)


@pytest.mark.parametrize("label", ["render", "validate", "seal one value", "seal a directory"])
def test_offline_commands_load_a_bounded_set_of_modules(inputs: Path, label: str) -> None:
    modules = loaded_modules(inputs, label)
    loaded = [name for name in NOT_LOADED if name in modules]
    assert loaded == [], f"{label} imported {loaded}"
    assert len(modules) <= MAX_MODULES, f"{label} loaded {len(modules)} modules"


def test_seal_one_value_prints_yaml_without_pyyaml(inputs: Path) -> None:
    """``seal --cert`` reads no YAML, so PyYAML's ~9 ms import is not paid.

    The manifest is printed by :mod:`kstrata.cli.plain_yaml` (PyYAML's bytes;
    ``test_cli_plain_yaml.py``).  Reading Secret manifests (``-f``) still
    imports PyYAML, as ``render`` and ``validate`` do.
    """
    modules = loaded_modules(inputs, "seal one value")
    assert [name for name in modules if name == "yaml" or name.startswith("yaml.")] == []
