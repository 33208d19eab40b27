"""`make demo` tells the whole story end to end: run it against the session's control plane.

The demo is user-facing documentation that executes; running it here keeps
the README's sample output honest.  It brings its own operator process and
namespace, so it shares nothing with other tests but the cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.cluster import TestCluster

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"

pytestmark = pytest.mark.usefixtures("kstrata_crds")


def test_demo_runs_end_to_end(cluster: TestCluster) -> None:
    # The control plane alone (no node): the operator runs as the demo's child.
    env = dict(os.environ, KSTRATA_DEMO_KUBECONFIG=str(cluster.kubeconfig), KSTRATA_DEMO_NODE="0")
    result = subprocess.run(
        [sys.executable, str(DEMO)], env=env, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # The story's milestones, in order, as the README shows them.
    milestones = [
        "Apply the example ConfigProfiles",
        "Seal a database password",
        "the Deployment rolls once",
        "An invalid change is refused",
        "History, diff and rollback",
        "A templated value",
        "Coming from Reloader",
        "kstrata: kstrata.dev/reload=auto",  # what migrate prints
        "configmap/legacy-settings=",  # the operator follows the migrated workload
        "Done",
    ]
    positions = [output.find(milestone) for milestone in milestones]
    assert -1 not in positions, output[-4000:]
    assert positions == sorted(positions)
    # The sealed password never appears in the demo's output, alone or in the URL.
    assert "correct-horse-battery-staple" not in output
    assert "DATABASE_URL=postgres://payments:(password not shown)@payments-db" in output
    # After the ConfigMap changed, the migrated Deployment has a second ReplicaSet.
    assert output.rsplit("LOG_LEVEL: debug", 1)[1].count("legacy-worker-") == 2
