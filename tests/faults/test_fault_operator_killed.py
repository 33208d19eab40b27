"""The operator SIGKILLed at random moments during a burst, ten times, and started again.

Ten rounds of changes to 20 objects (200 changes).  Each round starts while
an operator process is live; at a random moment 0.1-2 s later (while it
reconciles that round, writes revisions, rolls ``web`` or, after a restart,
resumes what the last one left half done) the process is SIGKILLed and a new
one started.  Nothing may be lost, no revision number skipped or used twice,
and no rollout repeated.  The seed is printed; ``KSTRATA_FAULT_SEED`` replays
the same moments.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from support.faults import Burst, OperatorProcess, record_recovery

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("kstrata_crds")]

SIZE, KILLS = 20, 10


def test_operator_sigkilled_at_random_moments(
    operator: OperatorProcess, fleet_of: Any, tmp_path: Path
) -> None:
    seed = int(os.environ.get("KSTRATA_FAULT_SEED") or time.time_ns() % 1_000_000)
    print(f"KSTRATA_FAULT_SEED={seed}")
    moments = random.Random(seed)
    fleet = fleet_of(SIZE)
    operator.start()
    fleet.wait_for_public_keys()
    fleet.create(tmp_path)
    fleet.wait_converged(since=time.monotonic(), rolled=False)

    next_round = threading.Semaphore(0)
    lifetimes = []
    with Burst(fleet, range(1, KILLS + 1), gate=lambda _: next_round.acquire()) as burst:
        for _ in range(KILLS):
            next_round.release()  # the writer starts the next round now
            lifetime = moments.uniform(0.1, 2.0)
            lifetimes.append(round(lifetime, 2))
            time.sleep(lifetime)  # the fault's random moment, not a wait for a condition
            operator.kill()
            operator.start()
        restarted = time.monotonic()
    last_change = burst.join()
    converged = fleet.wait_converged(since=restarted)

    assert operator.starts == KILLS + 1
    assert operator.running, operator.log_tail()
    print(f"killed after {lifetimes} s of work")
    record_recovery("operator SIGKILLed x10", "last start -> converged", converged)
    record_recovery(
        "operator SIGKILLed x10", "last change -> converged", restarted + converged - last_change
    )
    verdict = fleet.verdict(tmp_path, final_value=KILLS + 1)
    print(f"changes: {burst.total}, {verdict}")
