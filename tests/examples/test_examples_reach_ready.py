"""Every example in examples/ is valid offline and reaches Ready on the real control plane."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.cli.main import main
from support.cluster import TestCluster
from support.operator import running_operator
from support.waiting import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIG_EXAMPLES = sorted((EXAMPLES / "config").glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("kstrata_crds")


def profiles_in(path: Path) -> list[dict[str, Any]]:
    return [
        doc
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "ConfigProfile"
    ]


def test_there_are_examples_to_run() -> None:
    assert len(CONFIG_EXAMPLES) >= 3


def test_examples_validate_offline() -> None:
    argv = ["validate"]
    for path in CONFIG_EXAMPLES:
        argv += ["-f", str(path)]
    out = io.StringIO()
    assert main(argv, out=out) == 0, out.getvalue()


def test_every_example_applies_and_reaches_ready(cluster: TestCluster, namespace: str) -> None:
    with running_operator(cluster, namespaces=(namespace,)):
        for path in CONFIG_EXAMPLES:
            cluster.kubectl("apply", "-n", namespace, "-f", str(path))
        for path in CONFIG_EXAMPLES:
            for profile in profiles_in(path):
                name = profile["metadata"]["name"]

                def ready(name: str = name) -> dict[str, Any] | None:
                    body = cluster.kstrata_object("configprofiles", namespace, name)
                    conditions = (body.get("status") or {}).get("conditions") or []
                    ok = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
                    return body if ok else None

                body = wait_for(ready, timeout=30, what=f"example {name} to be Ready")
                config_map = body["status"]["configMapName"]
                assert cluster.core.read_namespaced_config_map(config_map, namespace).data
