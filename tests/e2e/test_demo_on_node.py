"""`make demo` as root: the story on the real node, with a pod printing the config it was given.

The same script as tests/examples/test_demo.py runs there without a node;
here it installs kstrata as pods and runs the example workload for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.cluster import TestCluster

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"


# The whole story, pods included, runs for about a minute on a quiet machine;
# the node fixture's set-up counts too.  As long as the script's own limit.
@pytest.mark.timeout(600)
def test_demo_runs_on_the_node(node_cluster: TestCluster) -> None:
    env = dict(
        os.environ, KSTRATA_DEMO_KUBECONFIG=str(node_cluster.kubeconfig), KSTRATA_DEMO_NODE="1"
    )
    result = subprocess.run(
        [sys.executable, str(DEMO)], env=env, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    milestones = [
        "Install kstrata as users do: two operator pods",
        "payments started as user payments",  # the first pods print their config
        "the Deployment rolls once",
        "started with the new config",
        "payments started as user payments",  # and the new pods print the new one
        "History, diff and rollback",
        "Hot reload: a workload that re-reads its file",
        "timeoutSeconds: 45",  # printed by the hot reader, in the same pod
        "A templated value",
        # printed by a pod given the rendered Secret value (never the password)
        "DATABASE_URL=postgres://payments:(password not shown)@payments-db.prod.svc:5432/payments",
        "Coming from Reloader",
        "kstrata: kstrata.dev/reload=auto",
        "configmap/legacy-settings=",
        "Done",
    ]
    position = 0
    for milestone in milestones:
        found = output.find(milestone, position)
        assert found != -1, f"missing after position {position}: {milestone}\n{output[-4000:]}"
        position = found + len(milestone)
    # The pods printed replicas 6 first, then 8 after the change.
    first, second = output.split("started with the new config", 1)
    assert "replicas: 6" in first.rsplit("payments started as user", 1)[1]
    assert "replicas: 8" in second.split("payments started as user", 1)[1].split("==>")[0]
    assert "correct-horse-battery-staple" not in output
    assert output.rsplit("LOG_LEVEL: debug", 1)[1].count("legacy-worker-") == 2
