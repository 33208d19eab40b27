"""The requests a ConfigProfile change is made of, timed one by one: the floor of its design.

The API floor (``bench_peers.py``) is one ConfigMap write, one watch
delivery and one PATCH of a Deployment's pod template.  A ConfigProfile
change, done the way kstrata does it, is more requests in a row, each
waiting for the one before:

1. the profile write, through the admission webhook (the apiserver calls
   the operator's webhook and waits for its answer before it stores);
2. kopf's watch delivers it to the operator (as the floor's watch does);
3. GET of the ConfigMap (its resourceVersion, and whether a hand edit must
   be repaired);
4. POST of the ControllerRevision that records the new content, *before*
   the ConfigMap serves it, so an interrupted reconcile is finished, not
   duplicated;
5. PUT of the ConfigMap;
6. the template PATCH (as the floor's).

So, with no Python at all between them, a profile change costs at least
the API floor plus (1 minus a plain write) + 3 + 4 + 5.  This script times each
of those requests here, with the operator's own transport
(``kstrata.kube.api.KubeApi``), ``--samples`` times each, interleaved, on a
fresh control plane with the operator running (so the webhook is the real
one), one request at a time and each profile write only after the operator
has finished the previous one.  It prints the medians and that sum as a
ratio to the floor's pieces; the floor itself (the whole chain) is measured
by ``bench_peers.py --reload-only``.

    .venv/bin/python benchmarks/round_trips.py [--samples 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from harness import Bench, control_plane, operator, wait
from kstrata.kube.api import (
    CONFIG_MAPS,
    CONFIG_PROFILES,
    CONTROLLER_REVISIONS,
    DEPLOYMENTS,
    KubeApi,
)
from kstrata.payloads import ControllerRevision

NAMESPACE = "round-trips"
R = TypeVar("R")


def _deployment() -> str:
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]},
            },
        },
    }
    return json.dumps(manifest)


def _profile(value: int) -> dict[str, Any]:
    return {"spec": {"base": {"value": value}}}


def _timed(call: Callable[..., R], *args: Any) -> tuple[float, R]:
    """``call(*args)`` and how long it took, in milliseconds."""
    started = time.perf_counter()
    result = call(*args)
    return (time.perf_counter() - started) * 1000, result


def measure(bench: Bench, samples: int) -> dict[str, list[float]]:
    api = KubeApi(bench.cluster)
    bench.kubectl("create", "namespace", NAMESPACE)
    bench.kubectl("apply", "-f", "-", input=_deployment())
    bench.kubectl("create", "configmap", "plain", "-n", NAMESPACE, "--from-literal=v=0")
    bench.kubectl("create", "configmap", "target", "-n", NAMESPACE, "--from-literal=v=0")
    api.create(
        CONFIG_PROFILES,
        NAMESPACE,
        {
            "apiVersion": "kstrata.dev/v1alpha1",
            "kind": "ConfigProfile",
            "metadata": {"name": "p", "namespace": NAMESPACE},
            "spec": {"base": {"value": 0}},
        },
    )

    def profile_done(generation: int) -> bool:
        # The status is written after the ConfigMap: the reconcile is over but its index.
        status = api.get(CONFIG_PROFILES, NAMESPACE, "p").get("status") or {}
        return status.get("observedGeneration") == generation

    wait(lambda: profile_done(1), 60, "the profile's first render")
    times: dict[str, list[float]] = {
        "plain ConfigMap write (PATCH)": [],
        "ConfigProfile write through the webhook (PATCH)": [],
        "GET ConfigMap": [],
        "POST ControllerRevision": [],
        "PUT ConfigMap": [],
        "PATCH Deployment pod template": [],
    }
    for i in range(1, samples + 1):
        took, _ = _timed(api.patch, CONFIG_MAPS, NAMESPACE, "plain", {"data": {"v": str(i)}})
        times["plain ConfigMap write (PATCH)"].append(took)
        took, written = _timed(api.patch, CONFIG_PROFILES, NAMESPACE, "p", _profile(i))
        times["ConfigProfile write through the webhook (PATCH)"].append(took)
        generation = written["metadata"]["generation"]
        # The operator's reconcile of that write must not overlap the requests below.
        wait(partial(profile_done, generation), 30, f"the operator to render {i}")
        took, found = _timed(api.get, CONFIG_MAPS, NAMESPACE, "target")
        times["GET ConfigMap"].append(took)
        revision: ControllerRevision = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {"name": f"target-{i}", "namespace": NAMESPACE},
            "revision": i,
            "data": {"base": {"value": i}},
        }
        took, _ = _timed(api.create, CONTROLLER_REVISIONS, NAMESPACE, revision)
        times["POST ControllerRevision"].append(took)
        took, _ = _timed(api.replace, CONFIG_MAPS, NAMESPACE, {**found, "data": {"v": str(i)}})
        times["PUT ConfigMap"].append(took)
        template = {"spec": {"template": {"metadata": {"annotations": {"v": str(i)}}}}}
        took, _ = _timed(api.patch, DEPLOYMENTS, NAMESPACE, "web", template)
        times["PATCH Deployment pod template"].append(took)
    return times


def report(times: dict[str, list[float]]) -> dict[str, Any]:
    medians = {what: round(statistics.median(values), 2) for what, values in times.items()}
    spread = {what: (round(min(v), 1), round(max(v), 1)) for what, v in times.items()}
    plain = medians["plain ConfigMap write (PATCH)"]
    extra = (
        medians["ConfigProfile write through the webhook (PATCH)"]
        - plain
        + medians["GET ConfigMap"]
        + medians["POST ControllerRevision"]
        + medians["PUT ConfigMap"]
    )
    return {"medians_ms": medians, "min_max_ms": spread, "profile_path_extra_ms": round(extra, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with control_plane() as bench, operator(bench):
        times = measure(bench, args.samples)
    result = {"samples": args.samples, **report(times)}
    print("| request | p50 ms | min-max |")
    print("|---|---:|---|")
    for what, median in result["medians_ms"].items():
        low, high = result["min_max_ms"][what]
        print(f"| {what} | {median:g} | {low:g}-{high:g} |")
    print(
        "A profile change's requests beyond the API floor's, with no time between them: "
        f"{result['profile_path_extra_ms']:g} ms (profile write - plain write + GET + POST + PUT)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
