"""kube-apiserver killed (SIGKILL) and started again in the middle of a burst of changes.

200 changes across 20 objects (10 ConfigProfiles, 10 SealedSecrets), ten
rounds; the API server is killed when 40% of them are made and started
again with the same flags.  The writer retries until the API server answers,
as kubectl in a retry loop or a GitOps tool would.  While it is away the
operator's requests and watches fail; when it is back, every watch resumes
from a resourceVersion older than the new API server's watch cache and gets
410 Gone, so kopf lists again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from support.faults import Burst, OperatorProcess, record_recovery

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("kstrata_crds")]

SIZE, ROUNDS = 20, 10


def test_apiserver_killed_mid_burst(
    plane: Any, operator: OperatorProcess, fleet_of: Any, tmp_path: Path
) -> None:
    fleet = fleet_of(SIZE)
    operator.start()
    fleet.wait_for_public_keys()
    fleet.create(tmp_path)
    fleet.wait_converged(since=time.monotonic(), rolled=False)

    with Burst(fleet, range(1, ROUNDS + 1)) as burst:
        burst.wait_progress(0.4)
        killed = time.monotonic()
        plane.restart("kube-apiserver")  # SIGKILL, start, wait for /readyz: this thread
        cleared = time.monotonic()
    last_change = burst.join()
    converged = fleet.wait_converged(since=cleared)

    assert operator.running, operator.log_tail()
    assert operator.starts == 1
    record_recovery("kube-apiserver killed", "API server away", cleared - killed)
    record_recovery("kube-apiserver killed", "API server back -> converged", converged)
    record_recovery(
        "kube-apiserver killed",
        "last change -> converged",
        cleared + converged - last_change,
    )
    print(f"the writer saw: {dict(fleet.errors)}")
    verdict = fleet.verdict(tmp_path, final_value=ROUNDS + 1)
    print(f"changes: {burst.total}, {verdict}")
