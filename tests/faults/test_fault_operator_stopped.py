"""The operator cut off from the API server for 30 s (its process stopped), then back.

SIGSTOP freezes the operator with its connections open, as a partition
or a stalled node would: its watches stop reading, its requests hang, the API
server and the cluster go on without it.  The burst (160 changes across 20
objects) starts before the stop and ends during it.  After SIGCONT every
timer the operator had has expired at once (HTTP timeouts, kopf's
consistency waits) and the events piled up in its sockets arrive together:
it must converge on the last change with nothing lost and no rollout
repeated.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from support.faults import Burst, OperatorProcess, record_recovery

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("kstrata_crds")]

SIZE, ROUNDS = 20, 8
STOPPED_SECONDS = 30.0


def test_operator_stopped_for_30_seconds(
    operator: OperatorProcess, fleet_of: Any, tmp_path: Path
) -> None:
    fleet = fleet_of(SIZE)
    operator.start()
    fleet.wait_for_public_keys()
    fleet.create(tmp_path)
    fleet.wait_converged(since=time.monotonic(), rolled=False)

    with Burst(fleet, range(1, ROUNDS + 1)) as burst:
        burst.wait_progress(0.25)
        operator.pause()
        stopped = time.monotonic()
    last_change = burst.join()
    assert last_change - stopped < STOPPED_SECONDS, "the burst outlasted the stop"
    time.sleep(STOPPED_SECONDS - (time.monotonic() - stopped))  # the fault's length
    operator.resume()
    resumed = time.monotonic()
    converged = fleet.wait_converged(since=resumed)

    record_recovery("operator stopped 30 s", "process stopped", resumed - stopped)
    record_recovery("operator stopped 30 s", "SIGCONT -> converged", converged)
    assert operator.starts == 1
    assert operator.running, operator.log_tail()
    verdict = fleet.verdict(tmp_path, final_value=ROUNDS + 1)
    print(f"changes: {burst.total}, {verdict}")
