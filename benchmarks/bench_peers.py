"""kstrata measured beside its peers on one embedded control plane, in one run.

The peers are the real programs, pinned in tools/gotools/tools.toml and built
by tools/gotools/install.py: the bitnami sealed-secrets controller and
kubeseal.  Reloader is not served by the module proxy, and nothing imitates
it: reloads are compared with the **API floor** instead, the least any reload
controller can do -- a bare watch on a ConfigMap that, on a change, sends one
PATCH of a Deployment's pod template (done here by this Python process with
the Kubernetes client, so the floor includes a Python watch decode).

Per repetition (``--reps``; each on a fresh control plane, the order of the
two controllers alternating):

* cold start: ``--sealed`` SealedSecrets x ``--items`` items in
  ``--namespaces`` namespaces exist before the controller starts; the clock
  runs from spawning the process until a watch has seen every produced Secret.
  objects/s, CPU seconds (utime + stime from /proc) at that moment, peak RSS
  (VmHWM).  sealed-secrets runs unthrottled (``--kubeclient-qps=-1``); its
  default client limit (5 requests/s) is measured on ``--default-qps-objects``
  fresh objects in their own namespaces (``--additional-namespaces``), since
  1,000 take ten minutes at that rate;
* restart: the controller is started again with nothing changed; objects
  (SealedSecrets, Secrets) whose resourceVersion moved and Events written or
  updated in the benchmark's namespaces, counted once its own counter says it
  has handled every object plus a 3 s grace for trailing writes;
* idle RSS: VmRSS of that restarted process 10 s after it settled (median of
  5 readings, 1 s apart).

Then, on the last repetition's control plane with kstrata running:
reload latency p50 over ``--reload-samples`` changes, interleaved one floor
change, one change seen by the **kopf floor** (``kopf_floor.py``, its own
process: a kopf operator whose event handler sends that one PATCH, the least
a kopf operator can do), one ConfigProfile change (kstrata: profile write -> a watch sees the
Deployment's pod template carrying the new revision), and, where kstrata
follows plain ConfigMaps (``kstrata.dev/reload: configmap/NAME``), two plain
ConfigMap changes (-> the template's record changes); "missing" otherwise.
Each sample starts once kstrata is done with the previous one (status,
kopf's record, the Deployment controller caught up), except the first plain
change, made right after the profile change and reported on its own row: in
the same namespace it may wait for the profile change's pass to end.

Offline CLI, no cluster: one value sealed with ``kubeseal --cert --raw`` and
``kstrata seal --cert`` (the console script a user runs), ``--cli-runs``
fresh processes each, interleaved with ``python -c pass``; and
``--bulk`` Secret manifests sealed from a shell loop, 2 in parallel
(``xargs -P2``), once per tool; and the same manifests sealed by one
``kstrata seal -f DIR --output-dir OUT`` process (``--bulk-runs`` times),
which is how kstrata seals many manifests.

``--cli-only`` runs only the offline CLI part, with no control plane: the
kubeseal certificate is then a self-signed RSA-4096 certificate made here
(what the sealed-secrets controller generates), not one a controller served.

    .venv/bin/python benchmarks/bench_peers.py [--quick] [--json out.json]

``--reload-only`` runs only the reload part: a fresh control plane, kstrata
started on it, ``--reload-samples`` interleaved changes, no peers and no CLI
(about a minute; for before/after comparisons of the reload path, run it
alternately with ``PYTHONPATH=<snapshot>/operator``).

``--quick`` shrinks every size (one repetition, 200 objects, 100 manifests).
The report's Markdown table goes to standard output; its JSON to --json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client, watch
from urllib3.exceptions import ProtocolError

from bench_reloads import RECORD, deployment, namespaced_profiles, profile, template_record
from bench_sealedsecrets import operator_keys, sealed_secret
from harness import (
    REPO,
    Bench,
    Follower,
    OperatorProcess,
    control_plane,
    controlplane,
    operator,
    operator_done_with,
    process_log,
    stop_process,
    wait,
)
from kstrata.crypto import PublicKeyBundle, generate_keypair
from peerstats import cell, latency_ratio, ratio, spread

GOTOOLS = REPO / "tools" / "gotools" / "install.py"
KSTRATA_GROUP, SS_GROUP, VERSION = "kstrata.dev", "bitnami.com", "v1alpha1"
KSTRATA_OK = 'kstrata_reconcile_total{kind="SealedSecret",result="ok"}'
SS_UNSEALS = "sealed_secrets_controller_unseal_requests_total"
SS_NAMESPACE = "kube-system"
SS_KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key=active"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the peer programs -------------------------------------------------------


def install(name: str) -> Path:
    """The pinned tool, installed (built once per machine) and version-checked."""
    out = subprocess.run(
        [sys.executable, str(GOTOOLS), name], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def sealed_secrets_crd() -> Path:
    """The CRD shipped in the pinned module (the module cache holds it after go install)."""
    tools = (REPO / "tools" / "gotools" / "tools.toml").read_text()
    version = cast("dict[str, Any]", __import__("tomllib").loads(tools))[
        "sealed-secrets-controller"
    ]["version"]
    found = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/bitnami-labs/sealed-secrets@{version}"],
        check=True,
        capture_output=True,
        text=True,
    )
    module = Path(json.loads(found.stdout)["Dir"])
    return module / "helm" / "sealed-secrets" / "crds" / "bitnami.com_sealedsecrets.yaml"


@dataclass
class Process:
    """A controller process: its RSS and CPU time read from /proc."""

    pid: int
    metrics_url: str

    def _status(self, field: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
        return float("nan")

    def peak_rss_mib(self) -> float:
        return self._status("VmHWM:")

    def rss_mib(self) -> float:
        return self._status("VmRSS:")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def metric(self, prefix: str) -> float:
        import urllib.request

        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith(prefix):
                        return float(line.split()[-1])
        except OSError:
            return 0.0
        return 0.0


def kstrata_process(running: OperatorProcess) -> Process:
    return Process(running.process.pid, running.metrics_url)


def service_account_dir(bench: Bench, scratch: Path) -> Path:
    """What a pod would find in /var/run/secrets/kubernetes.io/serviceaccount.

    The controller only reads in-cluster configuration; it gets a
    cluster-admin service account (kstrata's operator runs as the admin
    client certificate, so neither is held back by RBAC).
    """
    bench.kubectl("create", "serviceaccount", "sealed-secrets", "-n", SS_NAMESPACE)
    bench.kubectl(
        "create", "clusterrolebinding", "sealed-secrets", "--clusterrole=cluster-admin",
        f"--serviceaccount={SS_NAMESPACE}:sealed-secrets",
    )  # fmt: skip
    token = bench.kubectl(
        "create", "token", "sealed-secrets", "-n", SS_NAMESPACE, "--duration=24h"
    ).strip()
    directory = scratch / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(token)
    config = yaml.safe_load(bench.plane.kubeconfig.read_text())
    ca = Path(config["clusters"][0]["cluster"]["certificate-authority"])
    (directory / "ca.crt").write_bytes(ca.read_bytes())
    (directory / "namespace").write_text(SS_NAMESPACE)
    return directory


# In a private mount namespace a tmpfs covers /run (only for this process), so
# the service account files appear where client-go's in-cluster config reads
# them without touching the machine's /run.  unshare and sh exec in place: the
# pid Popen returns is the controller's.
_IN_CLUSTER = (
    'mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && cp "$0"/* '
    '/run/secrets/kubernetes.io/serviceaccount/ && exec "$@"'
)


@contextlib.contextmanager
def sealed_secrets_controller(
    bench: Bench, binary: Path, account: Path, *flags: str
) -> Iterator[Process]:
    port, metrics = controlplane.free_port(), controlplane.free_port()
    argv = [
        "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _IN_CLUSTER,
        str(account), str(binary), f"--listen-addr=127.0.0.1:{port}",
        f"--listen-metrics-addr=127.0.0.1:{metrics}", "--log-level=ERROR", *flags,
    ]  # fmt: skip
    env = dict(
        os.environ,
        KUBERNETES_SERVICE_HOST=bench.plane.address,
        KUBERNETES_SERVICE_PORT=str(bench.plane.apiserver_port),
        POD_NAMESPACE=SS_NAMESPACE,
    )
    with process_log("sealed-secrets-") as log:
        process = subprocess.Popen(argv, stdout=log.file, stderr=subprocess.STDOUT, env=env)
        try:
            yield Process(process.pid, f"http://127.0.0.1:{metrics}/metrics")
        finally:
            log.keep_unless_stopped(stop_process(process), "sealed-secrets controller")


def sealed_secrets_cert(bench: Bench, binary: Path, account: Path, scratch: Path) -> Path:
    """Start the controller once with nothing to do, so it creates its key; return the cert."""

    def key() -> str | None:
        found = bench.core.list_namespaced_secret(SS_NAMESPACE, label_selector=SS_KEY_LABEL).items
        return found[0].data["tls.crt"] if found else None

    with sealed_secrets_controller(bench, binary, account):
        encoded: str = wait(key, 120, "the sealed-secrets key", 0.2)
    cert = scratch / "sealed-secrets.pem"
    cert.write_bytes(base64.b64decode(encoded))
    return cert


# --- objects -------------------------------------------------------------------


def secret_manifest(namespace: str, name: str, index: int, items: int) -> dict[str, Any]:
    values = {
        "username": f"app-{index}",
        "password": f"{index:032d}",
        "url": f"postgres://db-{index % 10}.internal:5432/app?sslmode=require",
    }
    for extra in range(3, items):
        values[f"item-{extra}"] = f"value-{index}-{extra}" * 4
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": dict(list(values.items())[:items]),
    }


def kubeseal_objects(
    kubeseal: Path, cert: Path, pairs: list[tuple[str, str]], items: int
) -> list[dict[str, Any]]:
    def one(indexed: tuple[int, tuple[str, str]]) -> dict[str, Any]:
        index, (namespace, name) = indexed
        out = subprocess.run(
            [str(kubeseal), "--cert", str(cert), "--format", "json"],
            input=json.dumps(secret_manifest(namespace, name, index, items)),
            check=True,
            capture_output=True,
            text=True,
        )
        return cast("dict[str, Any]", json.loads(out.stdout))

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, enumerate(pairs)))


def spread_over(prefix: str, count: int, namespaces: int) -> list[tuple[str, str]]:
    return [(f"{prefix}-{i % namespaces:02d}", f"s-{i:04d}") for i in range(count)]


def create_all(
    bench: Bench, group: str, bodies: list[tuple[str, dict[str, Any]]], namespaces: set[str]
) -> None:
    for namespace in sorted(namespaces):
        bench.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )

    def create(pair: tuple[str, dict[str, Any]]) -> None:
        namespace, body = pair
        bench.custom.create_namespaced_custom_object(
            group, VERSION, namespace, "sealedsecrets", body
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, bodies))


class SecretsSeen:
    """A watch on every Secret: when the last of an expected set first appeared."""

    def __init__(self, bench: Bench, expected: set[str]) -> None:
        self.expected = expected
        self.seen: set[str] = set()
        self.arrived = threading.Condition()
        self.stopper = watch.Watch()
        self.stopped = threading.Event()
        threading.Thread(target=self._follow, args=(bench,), daemon=True).start()

    def _follow(self, bench: Bench) -> None:
        while not self.stopped.is_set():
            try:
                for event in self.stopper.stream(
                    bench.core.list_secret_for_all_namespaces, timeout_seconds=600
                ):
                    meta = event["object"].metadata
                    key = f"{meta.namespace}/{meta.name}"
                    if key in self.expected:
                        with self.arrived:
                            self.seen.add(key)
                            self.arrived.notify_all()
            except Exception:  # a cut stream: watch again, existing ones come back as ADDED
                self.stopper = watch.Watch()

    def wait_all(self, timeout: float) -> float:
        with self.arrived:
            if not self.arrived.wait_for(lambda: self.seen >= self.expected, timeout=timeout):
                raise TimeoutError(f"only {len(self.seen)} of {len(self.expected)} Secrets")
        return time.perf_counter()

    def stop(self) -> None:
        self.stopped.set()
        self.stopper.stop()


def versions(bench: Bench, group: str, prefix: str) -> dict[str, dict[str, str]]:
    """resourceVersions of the objects in the benchmark's namespaces, by kind."""
    mine = {
        "sealed": cast(
            "dict[str, Any]",
            bench.custom.list_cluster_custom_object(group, VERSION, "sealedsecrets"),
        )["items"],
    }
    state: dict[str, dict[str, str]] = {"objects": {}, "events": {}}
    for item in mine["sealed"]:
        meta = item["metadata"]
        if meta["namespace"].startswith(prefix):
            state["objects"][f"ss/{meta['namespace']}/{meta['name']}"] = meta["resourceVersion"]
    for secret in bench.core.list_secret_for_all_namespaces().items:
        meta = secret.metadata
        if meta.namespace.startswith(prefix):
            state["objects"][f"secret/{meta.namespace}/{meta.name}"] = meta.resource_version
    for event in bench.core.list_event_for_all_namespaces().items:
        meta = event.metadata
        if meta.namespace.startswith(prefix):
            state["events"][f"{meta.namespace}/{meta.name}"] = meta.resource_version
    return state


def moved(before: dict[str, str], after: dict[str, str]) -> int:
    return sum(1 for key, version in after.items() if before.get(key) != version)


# --- cold start, restart, idle -------------------------------------------------


@dataclass
class Side:
    """One controller under measurement: how to start it and how it counts its work."""

    name: str
    group: str
    prefix: str
    start: Callable[[], contextlib.AbstractContextManager[Process]]
    handled_metric: str


def cold_restart_idle(bench: Bench, side: Side, expected: set[str]) -> dict[str, Any]:
    count = len(expected)
    seen = SecretsSeen(bench, expected)
    spawned = time.perf_counter()
    with side.start() as running:
        done = seen.wait_all(1800)
        cpu = running.cpu_seconds()
        wait(lambda: running.metric(side.handled_metric) >= count, 300, "settle", 0.5)
        peak = running.peak_rss_mib()
    seen.stop()
    time.sleep(3)  # trailing status writes of the stopped process have landed
    before = versions(bench, side.group, side.prefix)
    with side.start() as restarted:
        reached = True
        try:
            wait(lambda: restarted.metric(side.handled_metric) >= count, 300, "resume", 0.5)
        except TimeoutError:
            reached = False
        time.sleep(3)  # grace for writes that follow the counter
        after = versions(bench, side.group, side.prefix)
        time.sleep(10)
        idle = []
        for _ in range(5):
            idle.append(restarted.rss_mib())
            time.sleep(1)
        restart_peak = restarted.peak_rss_mib()
    return {
        "objects": count,
        "seconds_from_spawn": round(done - spawned, 2),
        "objects_per_second": round(count / (done - spawned), 1),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mib": round(peak, 1),
        "restart_handled_counter_reached": reached,
        "restart_objects_written": moved(before["objects"], after["objects"]),
        "restart_events_written": moved(before["events"], after["events"]),
        "restart_peak_rss_mib": round(restart_peak, 1),
        "idle_rss_mib": round(statistics.median(idle), 1),
    }


def default_qps_cold(bench: Bench, start: Callable[..., Any], expected: set[str]) -> dict[str, Any]:
    seen = SecretsSeen(bench, expected)
    namespaces = sorted({key.split("/")[0] for key in expected})
    spawned = time.perf_counter()
    with start(f"--additional-namespaces={','.join(namespaces)}") as running:
        done = seen.wait_all(1800)
        cpu = running.cpu_seconds()
    seen.stop()
    return {
        "objects": len(expected),
        "seconds_from_spawn": round(done - spawned, 2),
        "objects_per_second": round(len(expected) / (done - spawned), 2),
        "cpu_seconds": round(cpu, 2),
    }


# --- reloads ---------------------------------------------------------------------


class FloorReloader:
    """The API floor: a watch on one ConfigMap; each change -> one PATCH of a pod template."""

    def __init__(self, bench: Bench, namespace: str, configmap: str, workload: str) -> None:
        self.apps = client.AppsV1Api(bench.cluster.api_client)
        self.stopper = watch.Watch()
        self.last: str | None = None

        def follow() -> None:
            with contextlib.suppress(ProtocolError):
                for event in self.stopper.stream(
                    bench.core.list_namespaced_config_map,
                    namespace,
                    field_selector=f"metadata.name={configmap}",
                    timeout_seconds=3600,
                ):
                    value = (event["object"].data or {}).get("v")
                    if value is not None and value != self.last:
                        self.last = value
                        self.apps.patch_namespaced_deployment(
                            workload,
                            namespace,
                            {"spec": {"template": {"metadata": {"annotations": {"v": value}}}}},
                        )

        threading.Thread(target=follow, daemon=True).start()

    def stop(self) -> None:
        self.stopper.stop()


@contextlib.contextmanager
def kopf_floor(bench: Bench, namespace: str, configmap: str, workload: str) -> Iterator[None]:
    """The kopf floor (``kopf_floor.py``) in its own process, for the life of the block."""
    env = dict(
        os.environ,
        KUBECONFIG=str(bench.plane.kubeconfig),
        KOPF_FLOOR_NAMESPACE=namespace,
        KOPF_FLOOR_CONFIGMAP=configmap,
        KOPF_FLOOR_DEPLOYMENT=workload,
    )
    argv = [sys.executable, "-m", "kopf", "run", "--standalone", "-A", "--quiet"]
    argv.append(str(Path(__file__).with_name("kopf_floor.py")))
    with process_log("kstrata-kopf-floor-") as log:
        process = subprocess.Popen(argv, stdout=log.file, stderr=subprocess.STDOUT, env=env)
        try:
            yield
        finally:
            log.keep_unless_stopped(stop_process(process), "the kopf floor")


def reloads(bench: Bench, samples: int) -> dict[str, Any]:
    with kopf_floor(bench, "peers-kopf", "src", "kopf-floor"):
        return _reloads(bench, samples)


def _reloads(bench: Bench, samples: int) -> dict[str, Any]:
    apps = client.AppsV1Api(bench.cluster.api_client)
    floor_ns, kstrata_ns, kopf_ns = "peers-floor", "peers-reload", "peers-kopf"
    for namespace in (floor_ns, kstrata_ns, kopf_ns):
        bench.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )
    bench.core.create_namespaced_config_map(
        floor_ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="src"), data={"v": "0"})
    )
    floor_app = deployment("floor", "none")
    floor_app.metadata.annotations = {}
    apps.create_namespaced_deployment(floor_ns, floor_app)
    floor_seen = Follower(
        apps.list_namespaced_deployment,
        floor_ns,
        lambda d: (d.spec.template.metadata.annotations or {}).get("v"),
    )
    floor = FloorReloader(bench, floor_ns, "src", "floor")

    # The kopf floor: kopf_floor.py patches the template with the ConfigMap's value;
    # the initial "0" patched proves its watch is running.
    bench.core.create_namespaced_config_map(
        kopf_ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="src"), data={"v": "0"})
    )
    kopf_app = deployment("kopf-floor", "none")
    kopf_app.metadata.annotations = {}
    apps.create_namespaced_deployment(kopf_ns, kopf_app)
    kopf_seen = Follower(
        apps.list_namespaced_deployment,
        kopf_ns,
        lambda d: (d.spec.template.metadata.annotations or {}).get("v"),
    )
    kopf_seen.wait_for([("kopf-floor", "0")], timeout=120)

    kstrata_seen = Follower(apps.list_namespaced_deployment, kstrata_ns, template_record)
    revisions = Follower(
        namespaced_profiles(bench),
        kstrata_ns,
        lambda obj: (obj.get("status") or {}).get("revision"),
    )
    bench.custom.create_namespaced_custom_object(
        KSTRATA_GROUP, VERSION, kstrata_ns, "configprofiles", profile("p", 0)
    )
    revisions.wait_for([("p", 1)])
    apps.create_namespaced_deployment(kstrata_ns, deployment("web", "p"))
    wait(
        lambda: (
            (apps.read_namespaced_deployment("web", kstrata_ns).metadata.annotations or {}).get(
                RECORD
            )
            == "p=1"
        ),
        60,
        "web to record p=1",
    )

    def caught_up(d: Any) -> bool:
        return bool(d.status and d.status.observed_generation == d.metadata.generation)

    def rolled(item: dict[str, Any]) -> bool:
        status = item.get("status") or {}
        entry = {"kind": "Deployment", "name": "web", "revision": status.get("revision")}
        return operator_done_with(item) and entry in (status.get("workloads") or [])

    # A plain ConfigMap (not kstrata's) followed by name, Reloader's main feature:
    # ``kstrata.dev/reload: configmap/NAME``.  Older kstrata ignored it: "missing".
    bench.core.create_namespaced_config_map(
        kstrata_ns,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"v": "0"}),
    )
    apps.create_namespaced_deployment(kstrata_ns, deployment("plain", "configmap/settings"))
    plain_supported = True
    try:
        wait(
            lambda: (
                "configmap/settings"
                in (
                    apps.read_namespaced_deployment("plain", kstrata_ns).metadata.annotations or {}
                ).get(RECORD, "")
            ),
            30,
            "plain to record configmap/settings",
        )
    except TimeoutError:
        plain_supported = False

    def plain_change(value: str) -> float:
        kstrata_seen.wait_until("plain", caught_up)
        before = template_record(kstrata_seen.latest["plain"])
        started = time.perf_counter()
        bench.core.patch_namespaced_config_map("settings", kstrata_ns, {"data": {"v": value}})
        kstrata_seen.wait_until("plain", lambda d, old=before: template_record(d) != old)
        return (time.perf_counter() - started) * 1000

    floor_ms, kopf_ms, kstrata_ms, plain_ms = [], [], [], []
    plain_after_profile_ms: list[float] = []
    for i in range(1, samples + 1):
        # Every sample starts once kstrata is done with the previous ones (its
        # status.workloads and kopf's record written, the Deployment controller
        # caught up): its tail must not land in a floor's sample.
        revisions.wait_until("p", rolled)
        kstrata_seen.wait_until("web", caught_up)
        if plain_supported:
            kstrata_seen.wait_until("plain", caught_up)
        floor_seen.wait_until("floor", caught_up)
        started = time.perf_counter()
        bench.core.patch_namespaced_config_map("src", floor_ns, {"data": {"v": str(i)}})
        floor_ms.append((floor_seen.wait_for([("floor", str(i))]) - started) * 1000)

        kopf_seen.wait_until("kopf-floor", caught_up)
        started = time.perf_counter()
        bench.core.patch_namespaced_config_map("src", kopf_ns, {"data": {"v": str(i)}})
        kopf_ms.append((kopf_seen.wait_for([("kopf-floor", str(i))]) - started) * 1000)

        revisions.wait_until("p", rolled)
        kstrata_seen.wait_until("web", caught_up)
        started = time.perf_counter()
        bench.custom.patch_namespaced_custom_object(
            KSTRATA_GROUP, VERSION, kstrata_ns, "configprofiles", "p", {"spec": {"base": {"i": i}}}
        )
        try:
            seen_at = kstrata_seen.wait_for([("web", f"p={i + 1}")])
        except TimeoutError as error:
            # Tell a rollout that never came from a watch of this process that broke.
            found = apps.read_namespaced_deployment("web", kstrata_ns)
            now = (found.spec.template.metadata.annotations or {}).get(RECORD)
            raise TimeoutError(f"{error}; the template records {now!r} now") from error
        kstrata_ms.append((seen_at - started) * 1000)

        if plain_supported:
            # Right after the profile change: its pass's tail (rollout Event,
            # status.workloads) may still hold the namespace.  Reported apart.
            plain_after_profile_ms.append(plain_change(f"{i}a"))
            # Then as every other sample: once kstrata is done with the previous one.
            revisions.wait_until("p", rolled)
            kstrata_seen.wait_until("web", caught_up)
            plain_ms.append(plain_change(f"{i}b"))
    for follower in (floor_seen, kopf_seen, kstrata_seen, revisions):
        follower.stop()
    floor.stop()
    return {
        "api_floor_ms": spread(floor_ms),
        "kopf_floor_ms": spread(kopf_ms),
        "kstrata_configprofile_ms": spread(kstrata_ms),
        "kstrata_plain_configmap_ms": spread(plain_ms) if plain_ms else "missing",
        "kstrata_plain_after_profile_ms": (
            spread(plain_after_profile_ms) if plain_after_profile_ms else "missing"
        ),
    }


# --- offline CLI -------------------------------------------------------------------


def self_signed_cert(path: Path) -> Path:
    """A self-signed RSA-4096 certificate, as the sealed-secrets controller makes (--cli-only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kstrata-bench")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now.replace(year=now.year + 10))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def cli(
    kubeseal: Path, kubeseal_cert: Path, runs: int, bulk: int, bulk_runs: int = 3
) -> dict[str, Any]:
    kstrata = Path(sys.executable).with_name("kstrata")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="kstrata-bench-peers-cli-") as scratch_name:
        scratch = Path(scratch_name)
        bundle = scratch / "kstrata-cert.json"
        bundle.write_text(
            PublicKeyBundle.of([generate_keypair(created=datetime.now(UTC))]).serialize()
        )
        value = scratch / "value"
        value.write_text("s3cret-value")
        commands = {
            "kubeseal": [
                str(kubeseal), "--cert", str(kubeseal_cert), "--raw", "--namespace", "bench",
                "--name", "bench", "--from-file", str(value),
            ],
            "kstrata": [
                str(kstrata), "seal", "--cert", str(bundle), "--namespace", "bench",
                "--name", "bench", "--from-file", f"value={value}",
            ],
            "python": [sys.executable, "-c", "pass"],
        }  # fmt: skip
        timings: dict[str, list[float]] = {label: [] for label in commands}
        for command in commands.values():  # warm-up: page cache, bytecode cache
            subprocess.run(command, env=env, check=True, capture_output=True)
        for _ in range(runs):
            for label, command in commands.items():
                started = time.perf_counter()
                result = subprocess.run(command, env=env, capture_output=True)
                timings[label].append((time.perf_counter() - started) * 1000)
                if result.returncode != 0 or (label != "python" and not result.stdout.strip()):
                    raise SystemExit(f"{label} failed: {result.stderr.decode(errors='replace')}")

        manifests = scratch / "manifests"
        manifests.mkdir()
        for i in range(bulk):
            body = secret_manifest("bench", f"s-{i:04d}", i, 3)
            (manifests / f"s-{i:04d}.yaml").write_text(yaml.safe_dump(body))
        loops = {
            "kubeseal": f'"{kubeseal}" --cert "{kubeseal_cert}" -o yaml < "$1" > "$1.sealed"',
            "kstrata": f'"{kstrata}" seal --cert "{bundle}" -f "$1" > "$1.sealed"',
        }
        bulk_seconds: dict[str, float] = {}
        for label, body in loops.items():
            started = time.perf_counter()
            subprocess.run(
                f"ls {manifests}/*.yaml | xargs -P2 -n1 sh -c '{body}' sh",
                shell=True,
                check=True,
                env=env,
            )
            bulk_seconds[label] = round(time.perf_counter() - started, 2)
            empty = [p for p in manifests.glob("*.sealed") if p.stat().st_size == 0]
            if len(list(manifests.glob("*.sealed"))) != bulk or empty:
                raise SystemExit(f"{label}: not every manifest was sealed")
            for sealed in manifests.glob("*.sealed"):
                sealed.unlink()
        # kstrata's way: one process for every manifest (the same files).
        one_process: list[float] = []
        for run in range(bulk_runs):
            out_dir = scratch / f"sealed-{run}"
            started = time.perf_counter()
            subprocess.run(
                [str(kstrata), "seal", "--cert", str(bundle), "-f", str(manifests),
                 "--output-dir", str(out_dir)],
                check=True, env=env, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            one_process.append(time.perf_counter() - started)
            if len(list(out_dir.rglob("*.yaml"))) != bulk:
                raise SystemExit("kstrata seal -f DIR: not every manifest was sealed")
    return {
        "single_ms": {label: spread(samples) for label, samples in timings.items()},
        "bulk_manifests": bulk,
        "bulk_seconds": bulk_seconds,
        "bulk_one_process_seconds": spread(one_process, 2),
    }


# --- the run -------------------------------------------------------------------------


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def repetition(
    rep: int, args: argparse.Namespace, binaries: dict[str, Path], scratch: Path, last: bool
) -> dict[str, Any]:
    with control_plane() as bench:
        bench.kubectl("apply", "--server-side", "-f", str(sealed_secrets_crd()))
        bench.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s",
            "crd/sealedsecrets.bitnami.com",
        )  # fmt: skip
        account = service_account_dir(bench, scratch / f"rep-{rep}")
        bundle = operator_keys(bench)
        cert = sealed_secrets_cert(bench, binaries["controller"], account, scratch)
        (scratch / "kubeseal-cert.pem").write_bytes(cert.read_bytes())

        ks_pairs = spread_over("ks", args.sealed, args.namespaces)
        ks_bodies = [
            (ns, sealed_secret(bundle, ns, name, args.items, i))
            for i, (ns, name) in enumerate(ks_pairs)
        ]
        create_all(bench, KSTRATA_GROUP, ks_bodies, {ns for ns, _ in ks_pairs})
        ss_pairs = spread_over("ss", args.sealed, args.namespaces)
        ss_bodies = kubeseal_objects(binaries["kubeseal"], cert, ss_pairs, args.items)
        create_all(
            bench, SS_GROUP, [(ns, b) for (ns, _), b in zip(ss_pairs, ss_bodies, strict=True)],
            {ns for ns, _ in ss_pairs},
        )  # fmt: skip

        def start_ss(*flags: str) -> contextlib.AbstractContextManager[Process]:
            return sealed_secrets_controller(bench, binaries["controller"], account, *flags)

        @contextlib.contextmanager
        def start_kstrata() -> Iterator[Process]:
            with operator(bench) as running:
                yield kstrata_process(running)

        sides = [
            Side("kstrata", KSTRATA_GROUP, "ks-", start_kstrata, KSTRATA_OK),
            Side(
                "sealed-secrets", SS_GROUP, "ss-",
                lambda: start_ss("--kubeclient-qps=-1"), SS_UNSEALS,
            ),
        ]  # fmt: skip
        if rep % 2:
            sides.reverse()
        result: dict[str, Any] = {"load_before": load()}
        for side in sides:
            pairs = ks_pairs if side.name == "kstrata" else ss_pairs
            print(f"rep {rep}: {side.name} cold start of {len(pairs)}", flush=True)
            result[side.name] = cold_restart_idle(bench, side, {f"{ns}/{n}" for ns, n in pairs})
            print(json.dumps(result[side.name]), flush=True)

        slow_pairs = spread_over("ssd", args.default_qps_objects, min(10, args.namespaces))
        slow_bodies = kubeseal_objects(binaries["kubeseal"], cert, slow_pairs, args.items)
        create_all(
            bench, SS_GROUP, [(ns, b) for (ns, _), b in zip(slow_pairs, slow_bodies, strict=True)],
            {ns for ns, _ in slow_pairs},
        )  # fmt: skip
        print(f"rep {rep}: sealed-secrets at its default QPS, {len(slow_pairs)}", flush=True)
        result["sealed-secrets default qps"] = default_qps_cold(
            bench, start_ss, {f"{ns}/{n}" for ns, n in slow_pairs}
        )
        if last:
            print(f"rep {rep}: reload latency vs the API floor", flush=True)
            with operator(bench):
                result["reloads"] = reloads(bench, args.reload_samples)
        result["load_after"] = load()
        return result


def table(results: dict[str, Any]) -> str:
    reps = results["repetitions"]
    rows = ["| measure | peer | kstrata | kstrata vs peer |", "|---|---|---|---|"]
    if reps:
        rows += _controller_rows(reps)
    rows += _cli_rows(results["cli"])
    return "\n".join(rows)


def _controller_rows(reps: list[dict[str, Any]]) -> list[str]:
    def col(side: str, key: str) -> list[float]:
        return [float(r[side][key]) for r in reps]

    rows: list[str] = []
    ks_rate, ss_rate = (
        spread(col("kstrata", "objects_per_second")),
        spread(col("sealed-secrets", "objects_per_second")),
    )
    slow = spread(col("sealed-secrets default qps", "objects_per_second"), 2)
    n_obj = reps[0]["kstrata"]["objects"]
    rows.append(
        f"| cold start, {n_obj} SealedSecrets, objects/s from process start | "
        f"sealed-secrets unthrottled {cell(ss_rate, '/s')}; at its default client QPS "
        f"{cell(slow, '/s')} ({reps[0]['sealed-secrets default qps']['objects']} objects) | "
        f"{cell(ks_rate, '/s')} | "
        f"{ratio(ks_rate['median'], ss_rate['median'], higher_is_better=True)} than unthrottled |"
    )
    for key, label, unit in (
        ("cpu_seconds", "CPU seconds for that cold start", "CPU-s"),
        ("peak_rss_mib", "peak RSS during that cold start", "MiB"),
        ("restart_objects_written", f"restart with {n_obj} unchanged: objects written", ""),
        ("restart_events_written", f"restart with {n_obj} unchanged: Events written", ""),
        ("idle_rss_mib", "idle RSS after settling (objects loaded)", "MiB"),
    ):
        peer, ours = spread(col("sealed-secrets", key)), spread(col("kstrata", key))
        rows.append(
            f"| {label} | sealed-secrets {cell(peer, unit)} | {cell(ours, unit)} | "
            f"{ratio(ours['median'], peer['median'], higher_is_better=False)} |"
        )
    reload = reps[-1].get("reloads")
    if reload:
        rows += _reload_rows(reload)
    return rows


def _reload_rows(reload: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    if reload:
        floor, ours = reload["api_floor_ms"], reload["kstrata_configprofile_ms"]
        rows.append(
            f"| one change → pod template patched, p50 | API floor (watch + 1 PATCH) "
            f"{cell(floor, 'ms')} | ConfigProfile change {cell(ours, 'ms')} | "
            f"{latency_ratio(ours['median'], floor['median'])} |"
        )
        plain = reload["kstrata_plain_configmap_ms"]
        if plain == "missing":
            rows.append(
                "| plain ConfigMap changed, workload follows it | API floor as above | "
                "not supported | missing |"
            )
        else:
            rows.append(
                f"| plain ConfigMap changed → pod template patched, p50 | API floor as above | "
                f"{cell(plain, 'ms')} | {latency_ratio(plain['median'], floor['median'])} |"
            )
        kopf = reload.get("kopf_floor_ms")
        if kopf:
            rows.append(
                f"| kopf floor (`kopf_floor.py`: kopf event handler + 1 PATCH) | API floor as "
                f"above | {cell(kopf, 'ms')} | "
                f"{latency_ratio(kopf['median'], floor['median'])} |"
            )
            if plain != "missing":
                versus = latency_ratio(plain["median"], kopf["median"])
                rows.append(
                    f"| plain ConfigMap changed → pod template patched, p50 | kopf floor "
                    f"{cell(kopf, 'ms')} | {cell(plain, 'ms')} | "
                    f"{versus.replace('floor', 'kopf floor')} |"
                )
        after = reload.get("kstrata_plain_after_profile_ms")
        if after and after != "missing":
            rows.append(
                f"| the same, right after a ConfigProfile change in its namespace | API floor "
                f"as above | {cell(after, 'ms')} | "
                f"{latency_ratio(after['median'], floor['median'])} |"
            )
    return rows


def _cli_rows(cli_results: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    single = cli_results["single_ms"]
    seal_ratio = ratio(
        single["kstrata"]["median"], single["kubeseal"]["median"], higher_is_better=False
    )
    rows.append(
        f"| CLI: seal one value offline | kubeseal {cell(single['kubeseal'], 'ms')} | "
        f"{cell(single['kstrata'], 'ms')} (`python -c pass`: {single['python']['median']:g} ms) | "
        f"{seal_ratio} |"
    )
    bulk = cli_results["bulk_seconds"]
    n = cli_results["bulk_manifests"]
    rows.append(
        f"| seal {n} Secret manifests, shell loop, 2 in parallel "
        f"| kubeseal {bulk['kubeseal']:g} s (n=1) | {bulk['kstrata']:g} s (n=1) | "
        f"{ratio(bulk['kstrata'], bulk['kubeseal'], higher_is_better=False)} |"
    )
    one = cli_results.get("bulk_one_process_seconds")
    if one:
        rows.append(
            f"| seal {n} Secret manifests: kstrata in one process (`seal -f DIR --output-dir`) "
            f"vs kubeseal once per manifest, 2 in parallel | kubeseal {bulk['kubeseal']:g} s "
            f"(n=1) | {cell(one, 's')} | "
            f"{ratio(one['median'], bulk['kubeseal'], higher_is_better=False)} |"
        )
    return rows


def reload_only(samples: int, out: Path | None) -> int:
    """The reload rows alone: kstrata on a fresh control plane, no peers (``--reload-only``)."""
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()}: {os.cpu_count()} cores",
        "load_before": load(),
    }
    with control_plane() as bench:
        operator_keys(bench)
        with operator(bench):
            results["reloads"] = reloads(bench, samples)
    results["load_after"] = load()
    rows = ["| measure | peer | kstrata | kstrata vs peer |", "|---|---|---|---|"]
    rows += _reload_rows(results["reloads"])
    print(json.dumps(results, indent=2))
    print("\n".join(rows))
    if out:
        out.write_text(json.dumps(results, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--sealed", type=int)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--default-qps-objects", type=int)
    parser.add_argument("--reload-samples", type=int)
    parser.add_argument("--cli-runs", type=int, default=20)
    parser.add_argument("--bulk", type=int)
    parser.add_argument("--bulk-runs", type=int, default=3)
    parser.add_argument("--cli-only", action="store_true", help="only the offline CLI part")
    parser.add_argument("--reload-only", action="store_true", help="only the reload part")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = {
        "reps": (1, 3),
        "sealed": (200, 1000),
        "default_qps_objects": (30, 100),
        "reload_samples": (20, 30),
        "bulk": (100, 1000),
    }
    for key, (quick, full) in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.quick:
        args.namespaces = min(args.namespaces, 10)

    if args.reload_only:
        return reload_only(args.reload_samples, args.json)
    binaries = {"kubeseal": install("kubeseal")}
    if not args.cli_only:
        binaries["controller"] = install("sealed-secrets-controller")
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()}: {os.cpu_count()} cores",
        "sizes": {k: getattr(args, k) for k in (*sizes, "namespaces", "items", "cli_runs")},
        "peers": {name: str(path) for name, path in binaries.items()},
        "repetitions": [],
    }
    with tempfile.TemporaryDirectory(prefix="kstrata-bench-peers-") as scratch_name:
        scratch = Path(scratch_name)
        if args.cli_only:
            args.reps = 0
            self_signed_cert(scratch / "kubeseal-cert.pem")
        for rep in range(args.reps):
            (scratch / f"rep-{rep}").mkdir()
            results["repetitions"].append(
                repetition(rep, args, binaries, scratch, last=rep == args.reps - 1)
            )
        print("offline CLI", flush=True)
        results["cli"] = cli(
            binaries["kubeseal"],
            scratch / "kubeseal-cert.pem",
            args.cli_runs,
            args.bulk,
            args.bulk_runs,
        )
    results["load_at_end"] = load()
    results["seconds"] = round(time.monotonic() - started)
    results["table"] = table(results)
    print(json.dumps({k: v for k, v in results.items() if k != "table"}, indent=2))
    print(results["table"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
