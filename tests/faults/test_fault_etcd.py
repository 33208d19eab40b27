"""etcd restarted in the middle of a burst; then every watch of the operator expires (410 Gone).

First fault: etcd is killed and started again (same data directory) while
100 changes across 20 objects are being made.  The API server answers
errors while etcd is away and its watch caches follow etcd again once it is
back, resuming where they were: the operator's watches never notice.

Second fault, a watch that expires (410 Gone), with nothing but real
components.  Each of the API server's watch caches follows etcd from the last
revision it has seen, and resumes from there when its etcd connection breaks.
While the API server is paused (SIGSTOP, about 2 s), etcd is restarted, two
keys outside the API server's prefix are written through etcd's own JSON
gateway on loopback, and etcd is compacted at its current revision (as
kube-apiserver itself compacts it every five minutes): every cache's
resume point is now compacted ("required revision has been compacted" in the
API server's log), so each lists again and closes its watchers.  kopf
resumes every watch from its last resourceVersion, older than the new cache,
gets 410 Gone ("Restarting the watch-stream" in the operator's debug log)
and lists again.  The burst goes on meanwhile: changes made before the
operator's new lists reach it only through them.
"""

from __future__ import annotations

import base64
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from support.faults import (
    Burst,
    OperatorProcess,
    etcd_call,
    etcd_healthy,
    etcd_revision,
    record_recovery,
)
from support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("kstrata_crds")]

SIZE = 20
FAULT_KEY = base64.b64encode(b"/kstrata-faults/tick").decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def restart_etcd(plane: Any) -> float:
    """Kill etcd and start it again from this (the main) thread; when the API server was ready."""
    plane.restart("etcd")
    wait_for(
        lambda: etcd_healthy(plane) and plane.apiserver_ready(),
        timeout=60,
        interval=0.05,
        what="etcd and kube-apiserver to be ready",
    )
    return time.monotonic()


def test_etcd_restarted_mid_burst_then_watches_expire(
    plane: Any, operator: OperatorProcess, fleet_of: Any, tmp_path: Path, namespace: str
) -> None:
    fleet = fleet_of(SIZE)
    operator.log_level = "debug"  # kopf logs restarting a watch-stream (410) at debug only
    operator.start()
    fleet.wait_for_public_keys()
    fleet.create(tmp_path)
    fleet.wait_converged(since=time.monotonic(), rolled=False)

    # 1. etcd restarted in the middle of a burst.
    with Burst(fleet, range(1, 6)) as burst:
        burst.wait_progress(0.4)
        killed = time.monotonic()
        cleared = restart_etcd(plane)
    last_change = burst.join()
    converged = fleet.wait_converged(since=cleared)
    record_recovery("etcd restarted", "etcd away (API server ready again)", cleared - killed)
    record_recovery("etcd restarted", "etcd back -> converged", converged)
    record_recovery("etcd restarted", "last change -> converged", cleared + converged - last_change)
    print(f"the writer saw: {dict(fleet.errors)}")

    # 2. Every watch expires.  The API server is paused (SIGSTOP) while etcd is
    # restarted and compacted past every revision its watch caches have seen,
    # so none of them can hear of a later revision first.
    apiserver_log = plane.state_dir / "logs" / "kube-apiserver.log"
    log_mark, apiserver_mark = len(operator.log_text()), apiserver_log.stat().st_size
    apiserver = next(c for c in plane.components if c.name == "kube-apiserver").process
    apiserver.send_signal(signal.SIGSTOP)
    try:
        killed = time.monotonic()
        plane.restart("etcd")
        wait_for(lambda: etcd_healthy(plane), timeout=60, interval=0.05, what="etcd")
        seen = etcd_revision(plane)  # no watch cache can be past this revision
        for tick in range(2):  # two writes of a key outside the API server's prefix
            etcd_call(plane, "/v3/kv/put", {"key": FAULT_KEY, "value": b64(str(tick))})
        revision = etcd_revision(plane)
        etcd_call(plane, "/v3/kv/compaction", {"revision": revision, "physical": True})
    finally:
        apiserver.send_signal(signal.SIGCONT)
    assert revision == seen + 2
    with Burst(fleet, range(6, 9)) as burst:  # changes while the watches are listed again
        wait_for(plane.apiserver_ready, timeout=60, interval=0.05, what="kube-apiserver")
        cleared = time.monotonic()
    last_change = burst.join()
    converged = fleet.wait_converged(since=cleared)
    etcd_call(plane, "/v3/kv/deleterange", {"key": FAULT_KEY})
    record_recovery("watch expired (410 Gone)", "etcd + API server away", cleared - killed)
    record_recovery("watch expired (410 Gone)", "API server back -> converged", converged)
    record_recovery(
        "watch expired (410 Gone)", "last change -> converged", cleared + converged - last_change
    )

    compacted = apiserver_log.read_bytes()[apiserver_mark:]
    assert b"required revision has been compacted" in compacted
    restarted = set(
        re.findall(
            r"Restarting the watch-stream for (\S+) in '([^']+)'", operator.log_text()[log_mark:]
        )
    )
    for plural in ("configprofiles", "sealedsecrets"):
        assert (f"{plural}.v1alpha1.kstrata.dev", namespace) in restarted, (
            f"no 410 on the {plural} watch: {sorted(restarted)}"
        )
    assert operator.running, operator.log_tail()
    assert operator.starts == 1
    verdict = fleet.verdict(tmp_path, final_value=9)
    print(f"changes: {5 * SIZE + 3 * SIZE}, {verdict}, etcd compacted at {revision}")
