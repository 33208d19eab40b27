"""Shared set-up for the cluster benchmarks: a fresh control plane and a real operator process.

The operator runs as ``python -m kstrata operator run`` in its own process, as
in production, so its RSS can be read from /proc and nothing of the
benchmark client's work is counted in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools" / "controlplane"))

from kubernetes import client, watch  # noqa: E402
from urllib3.exceptions import ProtocolError  # noqa: E402

import controlplane  # noqa: E402
from kstrata.kube.connection import Cluster, connect  # noqa: E402


@dataclass
class Bench:
    plane: controlplane.ControlPlane
    cluster: Cluster

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.cluster.api_client)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.cluster.api_client)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        result = subprocess.run(
            [str(self.plane.kubectl), "--kubeconfig", str(self.plane.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout


@contextlib.contextmanager
def control_plane() -> Iterator[Bench]:
    controlplane.ensure_built(quiet=True)
    with tempfile.TemporaryDirectory(prefix="kstrata-bench-") as state:
        plane = controlplane.ControlPlane(Path(state) / "plane")
        plane.start()
        try:
            bench = Bench(plane, connect(plane.kubeconfig))
            bench.kubectl("apply", "-k", str(REPO / "crds"))
            bench.kubectl(
                "wait", "--for=condition=Established", "--timeout=60s",
                "crd/configprofiles.kstrata.dev", "crd/sealedsecrets.kstrata.dev",
            )  # fmt: skip
            _warm_custom_resource_storage(bench)
            yield bench
        finally:
            plane.stop()


def _warm_custom_resource_storage(bench: Bench) -> None:
    """Wait until the apiserver serves lists of both custom resources.

    kube-apiserver builds the watch cache of a custom resource on its first
    request and answers 429 "storage is (re)initializing" meanwhile.  In a
    long-lived cluster that happened long ago; on this fresh control plane it
    would otherwise fall on the operator's first list and count kopf's retry
    backoff (seconds) as reconcile time.
    """

    def serves(plural: str) -> bool:
        try:
            bench.custom.list_cluster_custom_object("kstrata.dev", "v1alpha1", plural, limit=1)
        except client.ApiException as error:
            if error.status == 429:
                return False
            raise
        return True

    for plural in ("configprofiles", "sealedsecrets"):
        wait(lambda plural=plural: serves(plural), 60, f"apiserver to serve {plural}", 0.2)


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    metrics_url: str

    def rss_peak_mib(self) -> float:
        return self._status_mib("VmHWM:")

    def rss_mib(self) -> float:
        """Resident memory now (VmRSS), for idle readings."""
        return self._status_mib("VmRSS:")

    def _status_mib(self, field: str) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
        return float("nan")

    def metric(self, prefix: str) -> float:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(prefix):
                    return float(line.split()[-1])
        return 0.0


@contextlib.contextmanager
def operator(bench: Bench, *extra: str) -> Iterator[OperatorProcess]:
    metrics, liveness = controlplane.free_port(), controlplane.free_port()
    webhook = controlplane.free_port()
    argv = [
        sys.executable, "-m", "kstrata", "--kubeconfig", str(bench.plane.kubeconfig),
        "operator", "run", "--standalone", "--log-level", "warning",
        f"--metrics-address=127.0.0.1:{metrics}",
        f"--liveness=http://127.0.0.1:{liveness}/healthz",
        f"--webhook-address=127.0.0.1:{webhook}", f"--webhook-url=https://127.0.0.1:{webhook}",
        *extra,
    ]  # fmt: skip
    with process_log("kstrata-operator-") as log:
        process = subprocess.Popen(
            argv, stdout=log.file, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
        running = OperatorProcess(process, f"http://127.0.0.1:{metrics}/metrics")
        try:
            wait(lambda: _ok(f"http://127.0.0.1:{liveness}/healthz"), 60, "operator liveness")
            # The webhook configuration is written by a startup handler, before kopf's
            # admission server listens: until then every write of a profile is refused.
            wait(lambda: _listening(webhook), 60, "admission webhook server")
            yield running
        finally:
            log.keep_unless_stopped(stop_process(process), "kstrata operator")


@dataclass
class ProcessLog:
    """A child process's log file (see :func:`process_log`)."""

    file: IO[bytes]
    #: Kept after the block even when it ended normally.
    keep: bool = False

    @property
    def path(self) -> str:
        return self.file.name

    def keep_unless_stopped(self, returncode: int, what: str) -> None:
        """Keep the log (and say where) when ``what`` did not exit as SIGTERM asks."""
        if returncode not in (0, -signal.SIGTERM):
            self.keep = True
            print(f"{what} exited {returncode}: {self.path}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def process_log(prefix: str) -> Iterator[ProcessLog]:
    """A temporary log file for a child process, removed when the block ends normally.

    A failing benchmark keeps its log (the path goes to stderr), so its
    processes' last words can be read; a passing one leaves nothing in /tmp
    (hundreds of operator logs piled up there when every log was kept).
    """
    log = ProcessLog(
        tempfile.NamedTemporaryFile(prefix=prefix, suffix=".log", delete=False)  # noqa: SIM115
    )
    try:
        yield log
    except BaseException:
        log.file.close()
        print(f"log kept: {log.path}", file=sys.stderr, flush=True)
        raise
    log.file.close()
    if not log.keep:
        os.unlink(log.path)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Stop ``process`` as a kubelet would (SIGTERM, then SIGKILL after ``timeout`` s).

    Returns its exit code; judging it is the caller's business.
    """
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def wait(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50_ms": round(at(0.50) * 1000, 1),
        "p95_ms": round(at(0.95) * 1000, 1),
        "p99_ms": round(at(0.99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
    }


LAST_HANDLED = "kopf.zalando.org/last-handled-configuration"


def kopf_handled(item: dict[str, Any]) -> bool:
    """kopf has handled this exact state: its last-handled copy matches the spec.

    kstrata's kopf settings leave labels and annotations out of that copy
    (controller/runner.py ``essence_storage``), so the spec is all there is to match.
    """
    annotations = item["metadata"].get("annotations") or {}
    if LAST_HANDLED not in annotations or any(
        key.startswith("kopf.zalando.org/") and key != LAST_HANDLED for key in annotations
    ):
        return False
    essence = json.loads(annotations[LAST_HANDLED])
    return bool(essence.get("spec") == item.get("spec") and "metadata" not in essence)


class Follower:
    """Follows one namespaced watch: the latest object by name, and when values first appeared.

    ``value(obj)`` (optional) extracts what a clock stops on (a revision, a
    config value); ``wait_for`` returns when the last of some (name, value)
    pairs was first seen.  ``wait_until`` waits for a condition on an object's
    latest version, e.g. the operator being done with it, without polling the
    apiserver.
    """

    def __init__(
        self,
        list_call: Callable[..., Any],
        namespace: str,
        value: Callable[[Any], Any] | None = None,
    ) -> None:
        self.latest: dict[str, Any] = {}
        self.seen: dict[tuple[str, Any], float] = {}
        self.arrived = threading.Condition()
        self._stopper = watch.Watch()

        def follow() -> None:
            # stop() cuts the stream: the error that follows is the expected end.
            with contextlib.suppress(ProtocolError):
                for event in self._stopper.stream(list_call, namespace, timeout_seconds=3600):
                    obj = event["object"]
                    name = obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name
                    found = value(obj) if value is not None else None
                    with self.arrived:
                        self.latest[name] = obj
                        if found is not None:
                            self.seen.setdefault((name, found), time.perf_counter())
                        self.arrived.notify_all()

        threading.Thread(target=follow, daemon=True).start()

    def wait_for(self, keys: list[tuple[str, Any]], timeout: float = 30) -> float:
        """The time the last of ``keys`` was first seen."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: all(k in self.seen for k in keys), timeout):
                missing = [k for k in keys if k not in self.seen][:3]
                raise TimeoutError(f"never seen: {missing}")
            return max(self.seen[k] for k in keys)

    def wait_until(self, name: str, condition: Callable[[Any], bool], timeout: float = 30) -> None:
        with self.arrived:
            if not self.arrived.wait_for(
                lambda: name in self.latest and condition(self.latest[name]), timeout
            ):
                raise TimeoutError(f"{name} never reached the awaited state")

    def stop(self) -> None:
        self._stopper.stop()


def operator_done_with(item: dict[str, Any]) -> bool:
    """The operator has finished every write for this resource's current spec.

    Its status describes this generation, the revision index says the same
    revision, and kopf has recorded the spec as handled (its own PATCH is the
    last write of a reconcile).
    """
    status = item.get("status") or {}
    annotations = item["metadata"].get("annotations") or {}
    return (
        status.get("observedGeneration") == item["metadata"].get("generation")
        and annotations.get("kstrata.dev/revision") == str(status.get("revision"))
        and kopf_handled(item)
    )
