"""10x scale (issue 18 item 4): one operator replica at 1,000 and at 10,000 objects of each kind.

Each size runs on its own fresh control plane (benchmarks/harness.py), with
the operator as ``python -m kstrata operator run`` in its own process:

* set-up (timed, not part of any target): ``size`` ConfigProfiles and
  ``size`` SealedSecrets (``--items`` sealed items each) in ``size / 50``
  namespaces, and ``size / 5`` Deployments (no replicas: the measure is the
  pod template patch) that each follow one profile, created directly through
  the API with ``--concurrency`` requests in flight, before the operator
  starts; sealing happens client-side first (reported apart);
* cold start: from the operator's liveness until it has settled: every
  Secret and ConfigMap written (its ok-reconcile counters), kopf has recorded
  every object as handled, and every Deployment records its profile's
  first revision (on its metadata: first sight does not roll); objects/s
  counts both kinds (target >= 100/s);
  peak RSS (VmHWM) then, and VmRSS ``--idle-after`` s later (median of 5
  readings): both <= 400 MiB at 10,000;
* restart: first the Deployment controller must have settled (every
  Deployment's ``status.observedGeneration == metadata.generation``, waited
  for up to 10 minutes and reported: a restart measure starts from a settled
  cluster); then the operator started again with nothing changed; objects
  whose resourceVersion moved among the profiles, SealedSecrets, their
  ConfigMaps and Secrets and the Deployments, counted once both counters
  have reached ``size`` and 3 s more have passed for trailing writes. Each
  moved object is attributed through its ``managedFields``: the entries whose
  ``time`` is at or after the snapshot taken before the restart (manager,
  operation, subresource). **Only writes by kstrata's operator count against
  the target 0** (field manager ``kstrata``, and ``kopf``, which runs in the
  same process); others (``kube-controller-manager``'s ``status`` writes) are
  reported apart;
* one change: with that restarted operator holding every object, a
  profile's spec is written and the clock stops when a watch on the
  Deployment following it delivers the template with the new revision,
  ``--changes`` times, each once the operator and the Deployment controller
  are done with the previous one (as in bench_reloads.py); p50 at 10,000
  <= 1.5x p50 at 1,000, measured by this same script in the same run.

Finally a linear projection from the two sizes: the object count at which
one replica's settled RSS reaches 1 GiB and its change p50 reaches 1 s.
Every phase records the machine's 1-minute load average (2 shared cores).
``--cprofile DIR`` profiles each cold start's operator in per-thread CPU time
into ``DIR/SIZE/cold.prof.PID`` (the main thread: kopf's event loop) and
``DIR/SIZE/cold.prof.PID.threads`` (the handler threads, merged); the
profiler about doubles the operator's CPU, so its rates are not the
unprofiled ones.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1000 10000] [--json out.json]

``make bench`` runs it only with ``SCALE=1`` (KSTRATA_BENCH_SCALE=1): the
10,000 size takes tens of minutes on two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from kubernetes import client

from bench_configprofiles import OK_RECONCILES as PROFILE_RECONCILES
from bench_configprofiles import profile
from bench_reloads import RECORD, deployment, namespaced_profiles, template_record, write_profile
from bench_sealedsecrets import GROUP, VERSION, operator_keys, sealed_secret
from bench_sealedsecrets import OK_RECONCILES as SEALED_RECONCILES
from harness import (
    Bench,
    Follower,
    OperatorProcess,
    control_plane,
    kopf_handled,
    operator,
    operator_done_with,
    percentiles,
    wait,
)
from kstrata.wellknown import FIELD_MANAGER

MANAGED = "app.kubernetes.io/managed-by=kstrata"
#: Per namespace: 50 profiles, 50 SealedSecrets, 10 Deployments (200 namespaces at 10,000).
PER_NAMESPACE = 50
WORKLOADS_PER_NAMESPACE = 10


def load() -> float:
    return round(os.getloadavg()[0], 1)


def proc_cpu(stat: Path) -> float:
    """utime + stime of a process or thread (``/proc/PID[/task/TID]/stat``), in seconds."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(running: OperatorProcess) -> float:
    return proc_cpu(Path(f"/proc/{running.process.pid}/stat"))


def plane_cpu(bench: Bench) -> dict[str, float]:
    """CPU-seconds so far of each control-plane process (etcd, kube-apiserver, the controllers)."""
    return {
        c.name: proc_cpu(Path(f"/proc/{c.process.pid}/stat"))
        for c in bench.plane.components
        if c.process is not None
    }


def thread_split(running: OperatorProcess) -> dict[str, float]:
    """The operator's CPU by thread: the main thread runs kopf's event loop (kopf, aiohttp,
    kstrata's async handlers); the others are the handler pool, where kstrata's reconciles
    and their API calls run (and the memory-trim thread, which is idle during a burst)."""
    pid = running.process.pid
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            cpu = proc_cpu(task / "stat")
            if task.name == str(pid):
                main += cpu
            else:
                others += cpu
    return {"main_thread_kopf_loop": main, "other_threads_handlers": others}


def pages(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
    """Every item of a LIST, 500 at a time (one 10,000-item answer is a burst for the apiserver)."""
    token = None
    while True:
        found = call(*args, limit=500, _continue=token, **kwargs)
        is_dict = isinstance(found, dict)
        yield from found["items"] if is_dict else found.items
        token = found["metadata"].get("continue") if is_dict else found.metadata._continue
        if not token:
            return


def custom_items(bench: Bench, plural: str) -> Iterator[dict[str, Any]]:
    return cast(
        "Iterator[dict[str, Any]]",
        pages(bench.custom.list_cluster_custom_object, GROUP, VERSION, plural),
    )


def set_up(bench: Bench, size: int, items: int, concurrency: int) -> dict[str, Any]:
    bundle = operator_keys(bench)
    namespaces = [f"scale-{n:03d}" for n in range(max(1, size // PER_NAMESPACE))]
    started = time.perf_counter()
    loads = [load()]
    bodies: list[tuple[str, str, dict[str, Any]]] = []
    for i in range(size):
        namespace = namespaces[i % len(namespaces)]
        base = {"i": i, "service": {"port": 8000 + i % 100, "replicas": 2}}
        bodies.append((namespace, "configprofiles", profile(f"app-{i:05d}", base)))
    sealing = time.perf_counter()
    for i in range(size):
        namespace = namespaces[i % len(namespaces)]
        body = sealed_secret(bundle, namespace, f"s-{i:05d}", items, i)
        bodies.append((namespace, "sealedsecrets", body))
    sealing_seconds = time.perf_counter() - sealing
    # Workload j of a namespace follows the namespace's j-th profile.
    followed = {
        (namespaces[i % len(namespaces)], f"w-{i:05d}"): f"app-{i:05d}"
        for i in range(min(size, len(namespaces) * WORKLOADS_PER_NAMESPACE))
    }
    apps = client.AppsV1Api(bench.cluster.api_client)

    def namespace_(name: str) -> None:
        bench.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name)), _preload_content=False
        )

    def custom(entry: tuple[str, str, dict[str, Any]]) -> None:
        namespace, plural, body = entry
        bench.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, body, _preload_content=False
        )

    def workload(entry: tuple[tuple[str, str], str]) -> None:
        (namespace, name), uses = entry
        apps.create_namespaced_deployment(namespace, deployment(name, uses), _preload_content=False)

    creating = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(namespace_, namespaces))
        list(pool.map(custom, bodies))
        loads.append(load())
        list(pool.map(workload, followed.items()))
    created = time.perf_counter()
    loads.append(load())
    objects = len(namespaces) + len(bodies) + len(followed)
    return {
        "namespaces": namespaces,
        "followed": followed,
        "report": {
            "namespaces": len(namespaces),
            "config_profiles": size,
            "sealed_secrets": size,
            "items_per_sealed_secret": items,
            "deployments": len(followed),
            "client_sealing_seconds": round(sealing_seconds, 1),
            "create_seconds": round(created - creating, 1),
            "created_per_second": round(objects / (created - creating), 1),
            "concurrency": concurrency,
            "set_up_seconds_with_sealing": round(created - started, 1),
            "load_average": loads,
        },
    }


def recorded_all(bench: Bench, followed: dict[tuple[str, str], str]) -> bool:
    """Every followed Deployment records its profile's current revision.

    First sight records on the workload's metadata, not its pod template
    (``kstrata.domain.reload_decision``: the pods already run with that
    configuration).  The revision is read from the profile, not assumed to be 1.
    """
    current = {
        (item["metadata"]["namespace"], item["metadata"]["name"]): (item.get("status") or {}).get(
            "revision"
        )
        for item in custom_items(bench, "configprofiles")
    }
    apps = client.AppsV1Api(bench.cluster.api_client)
    for item in pages(apps.list_deployment_for_all_namespaces):
        key = (item.metadata.namespace, item.metadata.name)
        if key not in followed:
            continue
        revision = current.get((key[0], followed[key]))
        if revision is None or (item.metadata.annotations or {}).get(RECORD) != (
            f"{followed[key]}={revision}"
        ):
            return False
    return True


def all_handled(bench: Bench, size: int) -> bool:
    for plural in ("configprofiles", "sealedsecrets"):
        count = 0
        for item in custom_items(bench, plural):
            if not kopf_handled(item):
                return False
            count += 1
        if count < size:
            return False
    return True


#: The operator's writers: kstrata's own calls name their field manager; kopf's
#: (its finalizer, progress and last-handled annotations) get "kopf" from its
#: User-Agent. Both run in the operator process, so both are kstrata's writes.
OPERATOR_MANAGERS = frozenset({FIELD_MANAGER, "kopf"})


def _entries(managed: list[Any] | None) -> list[dict[str, Any]]:
    """``managedFields`` as plain dicts, from a typed client object's or a custom object's."""
    out = []
    for entry in managed or []:
        if isinstance(entry, dict):
            stamp = entry.get("time")
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
            out.append(
                {
                    "manager": entry.get("manager"),
                    "operation": entry.get("operation"),
                    "subresource": entry.get("subresource") or "",
                    "time": when,
                    "fields": entry.get("fieldsV1"),
                }
            )
        else:
            out.append(
                {
                    "manager": entry.manager,
                    "operation": entry.operation,
                    "subresource": entry.subresource or "",
                    "time": entry.time,
                    "fields": entry.fields_v1,
                }
            )
    return out


def snapshot(bench: Bench) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Every compared object's resourceVersion and managedFields entries."""
    found: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for plural in ("configprofiles", "sealedsecrets"):
        for item in custom_items(bench, plural):
            meta = item["metadata"]
            found[f"{plural}/{meta['namespace']}/{meta['name']}"] = (
                meta["resourceVersion"],
                _entries(meta.get("managedFields")),
            )
    apps = client.AppsV1Api(bench.cluster.api_client)
    for kind, call, selector in (
        ("cm", bench.core.list_config_map_for_all_namespaces, MANAGED),
        ("secret", bench.core.list_secret_for_all_namespaces, MANAGED),
        ("deploy", apps.list_deployment_for_all_namespaces, None),
    ):
        kwargs = {"label_selector": selector} if selector else {}
        for obj in pages(call, **kwargs):
            meta = obj.metadata
            found[f"{kind}/{meta.namespace}/{meta.name}"] = (
                meta.resource_version,
                _entries(meta.managed_fields),
            )
    return found


def attribute(
    before: dict[str, tuple[str, list[dict[str, Any]]]],
    after: dict[str, tuple[str, list[dict[str, Any]]]],
    since: datetime,
) -> dict[str, Any]:
    """Who wrote each object whose resourceVersion moved: managedFields entries stamped >= since.

    An entry's ``time`` is the last write by that manager, operation and
    subresource, to the second, so ``since`` is the second the before-snapshot
    began (floored): every write after it shows, a write in that same second
    before it would too (reported, not hidden). Field names only, no values.
    """
    moved = sorted(key for key in before if after.get(key, ("",))[0] != before[key][0])
    writers: Counter[str] = Counter()
    by_operator: list[str] = []
    by_others: list[str] = []
    unattributed: list[str] = []
    operator_fields: dict[str, Any] = {}
    for key in moved:
        recent = [e for e in after.get(key, ("", []))[1] if e["time"] and e["time"] >= since]
        for entry in recent:
            writers[f"{entry['manager']} {entry['operation']} {entry['subresource'] or '-'}"] += 1
        mine = [e for e in recent if e["manager"] in OPERATOR_MANAGERS]
        if mine:
            by_operator.append(key)
            if len(operator_fields) < 5:
                operator_fields[key] = [
                    {k: e[k] for k in ("manager", "operation", "subresource", "fields")}
                    for e in mine
                ]
        elif recent:
            by_others.append(key)
        else:
            unattributed.append(key)
    return {
        "objects_written": len(moved),
        "written_examples": moved[:5],
        "objects_written_by_kstrata": len(by_operator),
        "written_by_kstrata_examples": by_operator[:5],
        "kstrata_entries_of_examples": operator_fields,
        "objects_written_by_others_only": len(by_others),
        "written_by_others_examples": by_others[:5],
        "objects_moved_without_a_recent_entry": len(unattributed),
        "writers_objects_by_manager_operation_subresource": dict(writers.most_common()),
    }


def unsettled_deployments(bench: Bench) -> int:
    """Deployments the Deployment controller has not yet caught up with."""
    apps = client.AppsV1Api(bench.cluster.api_client)
    return sum(
        1
        for item in pages(apps.list_deployment_for_all_namespaces)
        if (item.status.observed_generation if item.status else None) != item.metadata.generation
    )


def deployments_settle(bench: Bench, deadline: float) -> dict[str, Any]:
    """Wait (up to ``deadline`` s) until every Deployment's observedGeneration is its generation."""
    started = time.perf_counter()
    first = unsettled_deployments(bench)
    settled = first == 0
    if not settled:
        try:
            wait(lambda: unsettled_deployments(bench) == 0, deadline, "Deployments settled", 2.0)
            settled = True
        except TimeoutError:
            settled = False
    return {
        "deployments_unsettled_at_first_check": first,
        "deployments_settled_before_restart": settled,
        "seconds_waited_for_deployments": round(time.perf_counter() - started, 1),
        "deployments_unsettled_at_restart": 0 if settled else unsettled_deployments(bench),
    }


def idle_rss(running: OperatorProcess, after: float) -> float:
    time.sleep(after)  # a benchmark reading, not a wait for a condition
    readings = []
    for _ in range(5):
        readings.append(running.rss_mib())
        time.sleep(1)
    return round(statistics.median(readings), 1)


#: /metrics answers that took longer than the harness's 5 s: a busy operator at
#: 10,000 objects on a loaded machine (2026-12-02) is a finding, not a failed run.
SLOW_METRICS: list[float] = []


#: /metrics answers asked for (the cold start polls twice a second: its CPU is the operator's).
SCRAPES: list[float] = []


def both_counters(running: OperatorProcess) -> float:
    SCRAPES.append(time.perf_counter())
    try:
        return min(running.metric(PROFILE_RECONCILES), running.metric(SEALED_RECONCILES))
    except OSError:  # urllib's timeout; the next probe asks again
        SLOW_METRICS.append(round(time.perf_counter(), 1))
        return 0.0


def cold_start(
    bench: Bench,
    size: int,
    followed: dict[tuple[str, str], str],
    idle_after: float,
    tracing: bool = False,
) -> dict[str, Any]:
    objects = 2 * size
    spawned = time.perf_counter()
    with operator(bench) as running:
        ready = time.perf_counter()
        live_rss = running.rss_mib()
        loads = [load()]
        plane = [plane_cpu(bench)]
        operator_cpu = [cpu_seconds(running)]
        own_cpu = [time.process_time()]
        progress: list[tuple[float, float]] = []

        def reconciled_all() -> bool:
            count = both_counters(running)
            now = time.perf_counter() - ready
            if not progress or now - progress[-1][0] >= 30:
                progress.append((round(now, 1), count))
                print(f"cold start {size}: {now:.0f} s, {count:.0f} of each kind", flush=True)
            return count >= size

        wait(reconciled_all, 3600, "every object reconciled", 0.5)
        reconciled = time.perf_counter()
        loads.append(load())
        plane.append(plane_cpu(bench))
        operator_cpu.append(cpu_seconds(running))
        own_cpu.append(time.process_time())
        threads = thread_split(running)
        wait(lambda: recorded_all(bench, followed), 1800, "every workload to record", 2.0)
        wait(lambda: all_handled(bench, size), 1800, "kopf to settle", 2.0)
        settled = time.perf_counter()
        loads.append(load())
        cpu = cpu_seconds(running)
        peak = running.rss_peak_mib()
        settled_rss = idle_rss(running, idle_after)
        scrapes_until_reconciled = sum(1 for t in SCRAPES if ready <= t <= reconciled)
        scrape_ms = scrape_cpu_ms(running)
        heap = heap_snapshot(running, "settled") if tracing else None
        if heap is not None:
            # kopf's per-object workers end 5 s after their last event, or 15 s
            # (consistency_timeout) after their own PATCH: what they still hold
            # at "settled" is gone by now.
            time.sleep(20)  # a reading after kopf's timeouts, not a wait for a condition
            heap["later"] = heap_snapshot(running, "later")
            heap["later"]["rss_mib"] = round(running.rss_mib(), 1)
    return {
        "objects": objects,
        "seconds_from_process_start": round(settled - spawned, 1),
        "seconds_until_reconciled": round(reconciled - ready, 1),
        "seconds_until_settled": round(settled - ready, 1),
        "objects_per_second_until_reconciled": round(objects / (reconciled - ready), 1),
        "objects_per_second_until_settled": round(objects / (settled - ready), 1),
        "operator_cpu_seconds": round(cpu, 1),
        "operator_cpu_ms_per_object": round(cpu * 1000 / objects, 2),
        "rss_when_live_mib": round(live_rss, 1),
        "peak_rss_mib": round(peak, 1),
        "settled_rss_mib": settled_rss,
        "idle_after_seconds": idle_after,
        "progress_seconds_and_count_of_each_kind": progress,
        "metrics_answers_over_5_s": len(SLOW_METRICS),
        "load_average": loads,
        "cpu_until_reconciled": cpu_floor(
            objects, reconciled - ready, plane, operator_cpu, own_cpu, threads
        ),
        "metrics_scrapes_until_reconciled": scrapes_until_reconciled,
        "metrics_scrape_cpu_ms_when_settled": scrape_ms,
        "metrics_scrapes_cpu_ms_per_object": round(
            scrapes_until_reconciled * scrape_ms / objects, 2
        ),
        **({"heap": heap} if heap is not None else {}),
    }


def scrape_cpu_ms(running: OperatorProcess, n: int = 40) -> float:
    """The operator's CPU per ``/metrics`` answer, settled (each is a thread of its own)."""
    before = cpu_seconds(running)
    for _ in range(n):
        running.metric(PROFILE_RECONCILES)
    return round((cpu_seconds(running) - before) * 1000 / n, 2)


def cpu_floor(
    objects: int,
    seconds: float,
    plane: list[dict[str, float]],
    operator_cpu: list[float],
    own_cpu: list[float],
    threads: dict[str, float],
) -> dict[str, Any]:
    """CPU-ms per object of every process on the machine that works for the cold start.

    From liveness until both counters are full: the benchmark polls only
    ``/metrics`` then (its LISTs of every object come after), so the control
    plane's CPU is the operator's load on it. The thread split is the
    operator's whole life until then (its start-up before liveness included).
    """
    per = {name: (plane[1][name] - plane[0][name]) * 1000 / objects for name in plane[0]}
    per["operator"] = (operator_cpu[1] - operator_cpu[0]) * 1000 / objects
    per["benchmark_client"] = (own_cpu[1] - own_cpu[0]) * 1000 / objects
    total = sum(per.values())
    split_total = sum(threads.values()) or 1.0
    return {
        "seconds": round(seconds, 1),
        "cpu_ms_per_object": {name: round(ms, 2) for name, ms in per.items()},
        "cpu_ms_per_object_all": round(total, 2),
        "cores_busy_on_average": round(total * objects / 1000 / seconds, 2),
        "objects_per_second_if_two_cores_did_only_this": round(2000 / total, 1),
        "operator_threads_share": {k: round(v / split_total, 3) for k, v in threads.items()},
        "operator_threads_cpu_seconds": {k: round(v, 1) for k, v in threads.items()},
    }


def restart_and_change(
    bench: Bench, size: int, namespace: str, followed: dict[tuple[str, str], str], changes: int
) -> dict[str, Any]:
    settle = deployments_settle(bench, 600)
    since = datetime.now(UTC).replace(microsecond=0)
    before = snapshot(bench)
    with operator(bench) as running:
        started = time.perf_counter()
        wait(lambda: both_counters(running) >= size, 3600, "resume", 0.5)
        resumed = time.perf_counter()
        time.sleep(3)  # trailing writes, as bench_peers.py counts them
        after = snapshot(bench)
        restart = {
            "objects_compared": len(before),
            **attribute(before, after, since),
            "target": "0 objects_written_by_kstrata (managers kstrata, kopf); others reported",
            **settle,
            "seconds_until_resumed": round(resumed - started, 1),
            "peak_rss_mib": round(running.rss_peak_mib(), 1),
            "load_average": load(),
        }
        print(json.dumps({"restart": restart}, indent=2), flush=True)
        workload = next(name for (ns, name) in followed if ns == namespace)
        change = one_change(bench, namespace, followed[(namespace, workload)], workload, changes)
        change["rss_after_changes_mib"] = round(running.rss_mib(), 1)
    return {"restart": restart, "one_change": change}


def one_change(
    bench: Bench, namespace: str, name: str, workload: str, changes: int
) -> dict[str, Any]:
    apps = client.AppsV1Api(bench.cluster.api_client)
    deployments = Follower(apps.list_namespaced_deployment, namespace, template_record)
    revisions = Follower(namespaced_profiles(bench), namespace)

    def rolled_and_recorded(item: dict[str, Any]) -> bool:
        status = item.get("status") or {}
        entry = {"kind": "Deployment", "name": workload, "revision": status.get("revision")}
        return operator_done_with(item) and entry in (status.get("workloads") or [])

    samples, loads = [], [load()]
    try:
        revisions.wait_until(name, operator_done_with, 60)
        first = int(revisions.latest[name]["status"]["revision"])
        for i in range(1, changes + 1):
            revisions.wait_until(name, rolled_and_recorded if i > 1 else operator_done_with, 60)
            deployments.wait_until(
                workload, lambda d: d.status.observed_generation == d.metadata.generation, 60
            )
            started = write_profile(bench, namespace, name, 10_000_000 + i)
            wanted = f"{name}={first + i}"
            samples.append(deployments.wait_for([(workload, wanted)], 60) - started)
    finally:
        deployments.stop()
        revisions.stop()
    loads.append(load())
    return {"change_to_template": percentiles(samples), "load_average": loads}


#: Put first on the operator's PYTHONPATH by ``--cprofile``: cProfile, in CPU
#: time of each thread (``time.thread_time``: wall time would charge the GIL
#: waits of a busy process to whatever waited), of the
#: operator's main thread (kopf's event loop) into ``OUT.PID`` and of every
#: other thread that ended before exit (the handler threads where kstrata's
#: reconcile code runs) into ``OUT.PID.threads``, written when the process
#: exits after SIGTERM.
_SITECUSTOMIZE = """
import atexit, cProfile, os, threading, time
_out = os.environ.get("KSTRATA_CPROFILE_OUT")
if _out:
    _profile = cProfile.Profile(time.thread_time)
    _profile.enable()
    _threads = []
    _lock = threading.Lock()
    _run = threading.Thread.run

    def _profiled_run(self):
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        try:
            _run(self)
        finally:
            profile.disable()
            with _lock:  # finished threads only: a running one's profile is still in use
                _threads.append(profile)

    threading.Thread.run = _profiled_run

    def _dump():
        _profile.disable()
        _profile.dump_stats(f"{_out}.{os.getpid()}")
        import pstats
        with _lock:
            done = list(_threads)
        if done:
            stats = pstats.Stats(done[0])
            for profile in done[1:]:
                stats.add(profile)
            stats.dump_stats(f"{_out}.{os.getpid()}.threads")

    atexit.register(_dump)
"""


#: Added by ``--tracemalloc FRAMES``: ``tracemalloc`` from the operator's first
#: import, ``FRAMES`` frames per allocation, and a thread that, when the
#: benchmark writes a tag into ``OUT.request``, collects garbage, dumps a
#: snapshot to ``OUT.TAG.snap`` and then writes ``OUT.TAG.done`` (a file, not
#: a signal: kopf owns the main thread's signal handling).
_SITECUSTOMIZE_TRACEMALLOC = """
import os as _os
_heap_out = _os.environ.get("KSTRATA_TRACEMALLOC_OUT")
if _heap_out:
    import gc as _gc, inspect as _inspect, json as _json, threading as _threading
    import time as _time, tracemalloc as _tracemalloc
    if int(_os.environ.get("KSTRATA_TRACEMALLOC_FRAMES", "6")):
        _tracemalloc.start(int(_os.environ.get("KSTRATA_TRACEMALLOC_FRAMES", "6")))

    def _heap_requests():
        request = _heap_out + ".request"
        while True:
            _time.sleep(0.2)
            try:
                with open(request) as f:
                    tag = f.read().strip()
                _os.unlink(request)
            except OSError:
                continue
            _gc.collect()
            if _tracemalloc.is_tracing():
                _tracemalloc.take_snapshot().dump(f"{_heap_out}.{tag}.snap")
            try:
                census = _holders()
            except Exception as error:  # reported, not fatal to the operator
                census = {"error": repr(error)}
            with open(f"{_heap_out}.{tag}.holders.json", "w") as f:
                _json.dump(census, f)
            open(f"{_heap_out}.{tag}.done", "w").close()

    def _name(o):
        return type(o).__module__ + "." + type(o).__qualname__

    def _holders():
        # Every live Kubernetes object body (a dict with metadata and apiVersion or
        # spec or data), by kind, and what holds a sample of them: a chain of
        # referrer types (instance dicts named by their owner's class), found by
        # one pass over the gc's objects per level, not a get_referrers per object.
        everything = _gc.get_objects()
        kinds, chains, sample = {}, {}, []
        for o in everything:
            if type(o) is dict and "metadata" in o and (
                "apiVersion" in o or "spec" in o or "data" in o
            ):
                kind = str(o.get("kind") or "(no kind)")
                kinds[kind] = kinds.get(kind, 0) + 1
                if kinds[kind] % 10 == 1:
                    sample.append(o)
        paths = {id(o): [str(o.get("kind") or "(no kind)")] for o in sample}
        heads = {id(o): o for o in sample}
        ours = {id(everything), id(sample), id(heads)}
        for _ in range(4):
            wanted = {}
            for key, h in heads.items():
                wanted.setdefault(id(h), []).append(key)
            found = {}
            for o in everything:
                if id(o) in ours or _inspect.isframe(o):
                    continue
                for r in _gc.get_referents(o):
                    for key in wanted.get(id(r), ()):
                        found.setdefault(key, []).append(o)
            for key in list(heads):
                holders = found.get(key) or [None]
                holder = next((h for h in holders if type(h).__name__ != "cell"), holders[0])
                if holder is None:
                    paths[key].append("(a frame or nothing)")
                    del heads[key]
                    continue
                if type(holder) is dict:
                    owner = next(
                        (o for o in _gc.get_referrers(holder)
                         if getattr(o, "__dict__", None) is holder), None)
                    if owner is not None:
                        holder = owner
                paths[key].append(_name(holder))
                heads[key] = holder
        for path in paths.values():
            chain = " <- ".join(path)
            chains[chain] = chains.get(chain, 0) + 1
        del everything
        return {"bodies_by_kind": kinds, "sampled_chains": chains, "sampled": len(sample)}

    _threading.Thread(target=_heap_requests, name="heap-snapshots", daemon=True).start()
"""


#: ``--strip-managed-fields`` (an experiment, not the product): the operator's
#: kopf drops ``metadata.managedFields`` from every object its LISTs and watches
#: decode, before its workers hold them (kopf and kstrata's handlers never read
#: them; decoded, they are ~60 % of a handled object's ~16 KiB).
_SITECUSTOMIZE_STRIP = """
import kopf._cogs.clients.api as _api

_get, _stream = _api.get, _api.stream

def _strip(obj):
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            meta.pop("managedFields", None)

async def _stripped_get(*args, **kwargs):
    found = await _get(*args, **kwargs)
    for item in (found.get("items") or ()) if isinstance(found, dict) else ():
        _strip(item)
    return found

async def _stripped_stream(*args, **kwargs):
    async for event in _stream(*args, **kwargs):
        if isinstance(event, dict):
            _strip(event.get("object"))
        yield event

_api.get, _api.stream = _stripped_get, _stripped_stream
"""


@contextlib.contextmanager
def profiled(directory: Path | None, frames: int = 0, strip: bool = False) -> Iterator[None]:
    """The operators started inside write ``DIRECTORY/cold.prof.PID[.threads]`` (no py-spy
    here), or with ``frames`` trace the heap for ``heap_snapshot`` instead."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        _SITECUSTOMIZE_STRIP if strip else _SITECUSTOMIZE_TRACEMALLOC if frames else _SITECUSTOMIZE
    )
    names = ("PYTHONPATH", "KSTRATA_CPROFILE_OUT", "KSTRATA_TRACEMALLOC_OUT")
    saved = {key: os.environ.get(key) for key in (*names, "KSTRATA_TRACEMALLOC_FRAMES")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory), saved["PYTHONPATH"]]))
    if frames and not strip:
        os.environ["KSTRATA_TRACEMALLOC_OUT"] = str(directory / "heap")
        # -1: only the census of bodies and their holders, without tracemalloc
        os.environ["KSTRATA_TRACEMALLOC_FRAMES"] = str(max(frames, 0))
    elif not strip:
        os.environ["KSTRATA_CPROFILE_OUT"] = str(directory / "cold.prof")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def heap_snapshot(running: OperatorProcess, tag: str) -> dict[str, Any]:
    """Ask the traced operator for a snapshot and summarise who holds its heap."""
    out = os.environ["KSTRATA_TRACEMALLOC_OUT"]
    Path(f"{out}.request").write_text(tag)
    wait(lambda: Path(f"{out}.{tag}.done").exists(), 600, "heap snapshot", 0.5)
    census = json.loads(Path(f"{out}.{tag}.holders.json").read_text())
    snap = Path(f"{out}.{tag}.snap")
    traced = heap_holders(tracemalloc.Snapshot.load(str(snap))) if snap.exists() else {}
    return {**traced, "bodies": census}


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/operator/", "/lib/python3."):
        if marker in filename:
            rest = filename.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker == "/lib/python3." else rest
    return filename


def heap_holders(snapshot: tracemalloc.Snapshot, top: int = 300) -> dict[str, Any]:
    """Traced bytes by holder: the innermost frame in kstrata's or kopf's code (what asked
    for the memory), else the innermost frame (a library or the interpreter's imports)."""
    by_line: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    for trace in snapshot.traces:
        frames = list(trace.traceback)  # oldest first
        holder = next(
            (f for f in reversed(frames) if "/kstrata/" in f.filename or "/kopf/" in f.filename),
            frames[-1],
        )
        name = _short(holder.filename)
        key = f"{name}:{holder.lineno}"
        by_line[key] += trace.size
        counts[key] += 1
        package = name.split("/", 1)[0] if "/" in name else "stdlib:" + name.split(".", 1)[0]
        if "importlib" in frames[-1].filename or frames[-1].filename.startswith("<frozen"):
            package = "imports"
        by_package[package] += trace.size
    return {
        "traced_mib": round(sum(by_package.values()) / 2**20, 1),
        "by_package_kib": {k: round(v / 1024, 1) for k, v in by_package.most_common(40)},
        "by_holder_kib_and_blocks": {
            k: [round(v / 1024, 1), counts[k]] for k, v in by_line.most_common(top)
        },
    }


def heap_growth(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """Bytes per object between two sizes' settled heaps, by package and by holder."""
    objects = large["objects"] - small["objects"]

    def per_object(a: dict[str, Any], b: dict[str, Any], pick: Callable[[Any], float]) -> Any:
        keys = set(a) | set(b)
        grown = {k: (pick(b.get(k, 0)) - pick(a.get(k, 0))) * 1024 / objects for k in keys}
        return {k: round(v) for k, v in sorted(grown.items(), key=lambda kv: -abs(kv[1]))[:40]}

    hs, hl = small["heap"], large["heap"]
    return {
        "objects_between": objects,
        "traced_bytes_per_object": round((hl["traced_mib"] - hs["traced_mib"]) * 2**20 / objects),
        "settled_rss_bytes_per_object": round(
            (large["settled_rss_mib"] - small["settled_rss_mib"]) * 2**20 / objects
        ),
        "by_package_bytes_per_object": per_object(
            hs["by_package_kib"], hl["by_package_kib"], float
        ),
        "by_holder_bytes_per_object": per_object(
            hs["by_holder_kib_and_blocks"],
            hl["by_holder_kib_and_blocks"],
            lambda v: float(v[0]) if v else 0.0,
        ),
    }


def one_size(
    size: int,
    items: int,
    concurrency: int,
    changes: int,
    idle_after: float,
    cprofile: Path | None = None,
    frames: int = 0,
    cold_only: bool = False,
    strip: bool = False,
) -> dict[str, Any]:
    with control_plane() as bench:
        made = set_up(bench, size, items, concurrency)
        result: dict[str, Any] = {"set_up": made["report"]}
        print(json.dumps({size: result}, indent=2), flush=True)
        with profiled(cprofile, frames, strip):
            result["cold_start"] = cold_start(
                bench, size, made["followed"], idle_after, tracing=bool(frames)
            )
        print(json.dumps({size: result["cold_start"]}, indent=2), flush=True)
        if not cold_only:
            result.update(
                restart_and_change(bench, size, made["namespaces"][0], made["followed"], changes)
            )
    return result


def projection(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """Straight lines through the two sizes: where one replica reaches 1 GiB and 1 s."""

    def line(x1: float, y1: float, x2: float, y2: float, at: float) -> dict[str, Any]:
        slope = (y2 - y1) / (x2 - x1)
        reached = None if slope <= 0 else round(x1 + (at - y1) / slope)
        return {"per_1000_objects": round(slope * 1000, 2), "objects_at_target": reached}

    n1, n2 = small["cold_start"]["objects"], large["cold_start"]["objects"]
    rss = {
        key: line(n1, small["cold_start"][key], n2, large["cold_start"][key], 1024)
        for key in ("peak_rss_mib", "settled_rss_mib")
    }
    p50 = [s["one_change"]["change_to_template"]["p50_ms"] for s in (small, large)]
    return {
        "objects_counted": "ConfigProfiles + SealedSecrets (Deployments are a fifth of each)",
        "rss_mib_to_1gib": rss,
        "per_object_growth_kib": {
            str(s["cold_start"]["objects"]): round(
                (s["cold_start"]["settled_rss_mib"] - s["cold_start"]["rss_when_live_mib"])
                * 1024
                / s["cold_start"]["objects"],
                1,
            )
            for s in (small, large)
        },
        "change_p50_ms_to_1s": line(n1, p50[0], n2, p50[1], 1000),
        "change_p50_ratio": round(p50[1] / p50[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--idle-after", type=float, default=10.0)
    parser.add_argument(
        "--cprofile", type=Path, help="profile each cold start's operator into this directory"
    )
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace the operator's heap (FRAMES per allocation, into --cprofile's directory "
        "or a temporary one) and report who holds it once settled; slows the operator; "
        "-1: only count the object bodies it holds and what holds them",
    )
    parser.add_argument(
        "--cold-only", action="store_true", help="stop after the cold start (no restart, no change)"
    )
    parser.add_argument(
        "--strip-managed-fields",
        action="store_true",
        help="experiment: the operator's kopf drops managedFields from what it decodes",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if (args.tracemalloc or args.strip_managed_fields) and args.cprofile is None:
        args.cprofile = Path(tempfile.mkdtemp(prefix="kstrata-heap-"))
    if os.environ.get("KSTRATA_BENCH_SCALE", "1") != "1":
        print("skipped: `make bench SCALE=1` runs it (tens of minutes)")
        return 0
    results: dict[str, Any] = {}
    for size in args.sizes:
        results[str(size)] = one_size(
            size,
            args.items,
            args.concurrency,
            args.changes,
            args.idle_after,
            args.cprofile / str(size) if args.cprofile else None,
            args.tracemalloc,
            args.cold_only,
            args.strip_managed_fields,
        )
        print(json.dumps({size: results[str(size)]}, indent=2), flush=True)
    small, large = results[str(args.sizes[0])], results[str(args.sizes[-1])]
    if len(args.sizes) >= 2 and not args.cold_only:
        results["projection"] = projection(small, large)
    if len(args.sizes) >= 2 and args.tracemalloc > 0:
        results["heap_growth"] = heap_growth(small["cold_start"], large["cold_start"])
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
