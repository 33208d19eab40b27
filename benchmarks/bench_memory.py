"""Operator memory: what its imports cost, idle RSS, and peak RSS during a cold start.

Issue 18 sets idle RSS <= 80 MiB and peak RSS <= 110 MiB during a cold start
of 1,000 SealedSecrets; this script measures exactly those, on its own fresh
control plane, with the operator as ``python -m kstrata operator run`` in its
own process (benchmarks/harness.py), so nothing of this script is counted:

* imports: max RSS of a fresh interpreter that imports what the operator
  process imports (``kstrata.cli.operator_cmd.operator_imports``, falling
  back to ``kstrata.controller.runner``), and whether ``kubernetes`` is among
  its modules; ``python -c pass`` beside it for the interpreter's own floor;
* cold: ``--sealed`` SealedSecrets x ``--items`` items in ``--namespaces``
  namespaces exist before the operator starts; peak RSS (VmHWM) once a watch
  has seen every Secret and kopf has settled, and VmRSS of that same process
  ``--idle-after`` seconds later (median of 5 readings 1 s apart);
  The cold-start rate is Secrets per second from the operator's liveness to
  the last Secret (issue 18 keeps it >= 50/s while the peak comes down);
* idle: the operator restarted with every object unchanged, VmRSS
  ``--idle-after`` seconds after its counter says it has handled them all
  (median of 5 readings 1 s apart), as bench_peers.py reads the peers' idle
  RSS.

To measure another checkout's operator beside this one (before/after), put
its ``operator/`` first on ``PYTHONPATH``: the operator process inherits it.

    .venv/bin/python benchmarks/bench_memory.py [--sealed 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client

from bench_sealedsecrets import (
    GROUP,
    OK_RECONCILES,
    PLURAL,
    VERSION,
    SecretsSeen,
    listed_sealed_secrets,
    operator_keys,
    sealed_secret,
)
from harness import control_plane, kopf_handled, operator, wait

#: Printed by each fresh interpreter: its peak RSS (VmHWM, not ru_maxrss: Linux
#: carries the parent's peak across fork and exec into ru_maxrss) and whether
#: the kubernetes client was imported.
_REPORT = """
import sys
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(hwm.split()[1]) / 1024, sys.modules.get("kubernetes") is not None)
"""
#: What the operator process imports before it connects (the entry's own function
#: when there is one, else the runner module, as before it existed).
_OPERATOR_IMPORTS = """
try:
    from kstrata.cli.operator_cmd import operator_imports
except ImportError:
    import kstrata.controller.runner
else:
    operator_imports()
"""


def imports(runs: int = 5) -> dict[str, Any]:
    def max_rss(code: str) -> tuple[float, bool]:
        out = subprocess.run(
            [sys.executable, "-c", code + _REPORT], capture_output=True, text=True, check=True
        ).stdout.split()
        return float(out[0]), out[-1] == "True"

    floor = statistics.median(max_rss("")[0] for _ in range(runs))
    operator_runs = [max_rss(_OPERATOR_IMPORTS) for _ in range(runs)]
    return {
        "python_pass_max_rss_mib": round(floor, 1),
        "operator_imports_max_rss_mib": round(statistics.median(r for r, _ in operator_runs), 1),
        "kubernetes_imported": any(k for _, k in operator_runs),
    }


def cold_and_idle(sealed: int, namespaces: int, items: int, idle_after: float) -> dict[str, Any]:
    with control_plane() as bench:
        bundle = operator_keys(bench)
        names = [f"mem-{n:02d}" for n in range(namespaces)]
        for name in names:
            bench.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        bodies = [
            (
                names[i % namespaces],
                sealed_secret(bundle, names[i % namespaces], f"s-{i:05d}", items, i),
            )
            for i in range(sealed)
        ]

        def create(pair: tuple[str, dict[str, Any]]) -> None:
            namespace, body = pair
            bench.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, bodies))

        def settled() -> bool:
            listed = listed_sealed_secrets(bench)
            return len(listed) >= sealed and all(kopf_handled(item) for item in listed)

        seen = SecretsSeen(bench)
        with operator(bench) as running:
            ready_rss = running.rss_mib()
            started = time.perf_counter()
            rate = sealed / (seen.wait_for(sealed, 900) - started)
            wait(settled, 300, "kopf to settle", 1.0)
            peak = running.rss_peak_mib()
            time.sleep(idle_after)
            idle = []
            for _ in range(5):
                idle.append(running.rss_mib())
                time.sleep(1)
        seen.stop()
        # The "idle" (as bench_peers.py reads it): a restart with every
        # object unchanged, VmRSS once the process has handled them all and rested.
        with operator(bench) as restarted:
            started = time.perf_counter()
            wait(lambda: restarted.metric(OK_RECONCILES) >= sealed, 900, "resume", 0.2)
            resumed = time.perf_counter() - started
            time.sleep(idle_after)
            restart_idle = []
            for _ in range(5):
                restart_idle.append(restarted.rss_mib())
                time.sleep(1)
            restart_peak = restarted.rss_peak_mib()
    return {
        "sealed_secrets": sealed,
        "namespaces": namespaces,
        "items_per_sealed_secret": items,
        "rss_when_ready_mib": round(ready_rss, 1),
        "cold_start_per_second": round(rate, 1),
        "peak_rss_mib": round(peak, 1),
        "rss_after_cold_start_mib": round(statistics.median(idle), 1),
        "restart_resume_seconds": round(resumed, 1),
        "restart_peak_rss_mib": round(restart_peak, 1),
        "idle_rss_mib": round(statistics.median(restart_idle), 1),
        "idle_after_seconds": idle_after,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sealed", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--idle-after", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {"imports": imports()}
    print(json.dumps(results, indent=2), flush=True)
    results["cold"] = cold_and_idle(args.sealed, args.namespaces, args.items, args.idle_after)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
