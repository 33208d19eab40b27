"""Fault injection for tests/faults: an operator in its own process, bursts, and the final checks.

Every fault scenario has the same shape: a fleet of ConfigProfiles and
SealedSecrets followed by one Deployment, a burst of changes from a
background thread (retrying as a user or a GitOps tool would, since the API
server may be gone for a while), a fault injected from the test's main
thread, and at the end the same verdict (:meth:`Fleet.verdict`):

* the final state equals the last change of every object (status, ConfigMap
  or Secret, revision index, kopf's record of the handled spec);
* revision numbers are contiguous: each object's ControllerRevisions are
  exactly 1..N, N its ``status.revision``, each revision a content change;
* rollouts are one per change set: every ReplicaSet that
  kube-controller-manager made carries a record with at least one revision
  newer than the previous rollout's and none older (no rollout repeated,
  none backwards), the last one carries the final revisions, and no two
  RollingRestart events announce the same record.

The operator runs as ``python -m kstrata operator run``, as in production, so
it can be SIGKILLed and SIGSTOPped without touching the test process.
Components of the control plane, and operator processes, are started by
the test's own (main) thread: they run with ``PR_SET_PDEATHSIG``, which
kills a child when the *thread* that started it ends, so a component
restarted from a short-lived thread would die with it.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

import controlplane
from kstrata.crypto import PublicKeyBundle, Scope, SealingContext, seal
from kstrata.domain.reload_decision import format_revisions, parse_revisions
from kstrata.domain.revisions import (
    decode_history,
    decode_snapshot,
)
from kstrata.wellknown import HISTORY_ANNOTATION, OWNER_UID_LABEL, REVISION_ANNOTATION
from support.cluster import TestCluster
from support.waiting import wait_for

GROUP, VERSION = "kstrata.dev", "v1alpha1"
PROFILES, SEALED = "configprofiles", "sealedsecrets"
RECORD = "kstrata.dev/revisions"
LAST_HANDLED = "kopf.zalando.org/last-handled-configuration"
PUBLIC_KEYS = "kstrata-sealing-public-keys"
KEY_SECRET = "kstrata-sealing-keys"
#: The largest history the CRDs allow: every revision of a scenario stays stored.
HISTORY_LIMIT = 100

#: (scenario, what was measured, seconds), printed in pytest's terminal summary.
RECOVERIES: list[tuple[str, str, float]] = []


def record_recovery(scenario: str, what: str, seconds: float) -> None:
    RECOVERIES.append((scenario, what, seconds))
    print(f"[faults] {scenario}: {what}: {seconds:.1f} s", flush=True)


# --- the operator in its own process ----------------------------------------


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the thread that started it goes away."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class OperatorProcess:
    """``python -m kstrata operator run`` against the test cluster; restartable.

    Each start uses fresh loopback ports for metrics and liveness (a killed
    process's ports are free at once, but fresh ones rule out any doubt) and
    appends its output to one log file, so the log tells the whole story of
    every incarnation.  Start it from the test's main thread.
    """

    cluster: TestCluster
    namespaces: tuple[str, ...]
    operator_namespace: str
    log_path: Path
    log_level: str = "info"
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    metrics_url: str = ""
    _liveness_url: str = ""

    def argv(self) -> list[str]:
        metrics, liveness = controlplane.free_port(), controlplane.free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics}/metrics"
        self._liveness_url = f"http://127.0.0.1:{liveness}/healthz"
        argv = [
            sys.executable, "-m", "kstrata", "--kubeconfig", str(self.cluster.kubeconfig),
            "operator", "run", "--standalone",
            "--operator-namespace", self.operator_namespace,
            "--log-level", self.log_level,
            f"--metrics-address=127.0.0.1:{metrics}",
            f"--liveness={self._liveness_url}",
        ]  # fmt: skip
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        # No admission webhook: these scenarios are about reconciling (the
        # webhook's own faults are tests/faults/test_fault_webhook.py).
        return [*argv, "--no-webhook"]

    def start(self, *, wait: bool = True, timeout: float = 60.0) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            self.starts += 1
            log.write(f"\n===== start {self.starts} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only
            )
        if wait:
            self.wait_live(timeout)

    def wait_live(self, timeout: float = 60.0) -> None:
        def live() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the operator exited ({self.process.returncode})")
            return _http_ok(self._liveness_url)

        try:
            wait_for(live, timeout=timeout, interval=0.05, what="the operator to be live")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.log_tail()}") from error

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown, as the OOM killer or a node loss."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def metric(self, name: str) -> float | None:
        """One unlabelled sample of the operator's /metrics, None if it is not there."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(f"{name} "):
                    return float(line.split()[-1])
        return None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "operator log (tail):\n" + "\n".join(self.log_text().splitlines()[-lines:])


# --- the fleet: sources, one Deployment, and what they must end up as ------


def transient(error: BaseException) -> bool:
    """An error a client should retry: the API server (or etcd behind it) is away."""
    if isinstance(error, ApiException):
        return error.status in (0, None, 429) or error.status >= 500
    return isinstance(error, HTTPError | OSError | TimeoutError)


def describe(error: BaseException) -> str:
    """What a client saw, in a few words (for the report of what users see)."""
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}".strip()
    return type(error).__name__


def retrying(
    call: Callable[[], Any],
    *,
    timeout: float = 120.0,
    seen: Callable[[BaseException], None] | None = None,
) -> Any:
    """``call`` until it succeeds, retrying transient errors (others raise at once)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except Exception as error:
            if not transient(error) or time.monotonic() > deadline:
                raise
            if seen is not None:
                seen(error)
        time.sleep(0.1)


def secret_value(name: str, value: int) -> bytes:
    return f"{name}-value-{value}".encode()


@dataclass
class Fleet:
    """ConfigProfiles ``p00..`` and SealedSecrets ``s00..`` in one namespace, and ``web``.

    ``web`` is a Deployment (no replicas: kube-controller-manager still makes a
    ReplicaSet for every pod template) that follows every source by name.
    ``expected`` is the last value each source was successfully changed to.
    """

    cluster: TestCluster
    namespace: str
    keys_namespace: str
    size: int
    bundle: PublicKeyBundle | None = None
    expected: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    deployment: str = "web"
    #: What the writer saw while changing sources, by description: what users see.
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def profiles(self) -> list[str]:
        return [f"p{i:02d}" for i in range(self.size // 2)]

    @property
    def sealed(self) -> list[str]:
        return [f"s{i:02d}" for i in range(self.size - self.size // 2)]

    @property
    def names(self) -> list[str]:
        # Interleaved: a burst changes both kinds all the time.
        rest = self.sealed[len(self.profiles) :]
        return [n for pair in zip(self.profiles, self.sealed, strict=False) for n in pair] + rest

    # --- bodies --------------------------------------------------------------

    def profile_spec(self, name: str, value: int) -> dict[str, Any]:
        return {"base": {"name": name, "value": value}, "revisionHistoryLimit": HISTORY_LIMIT}

    def sealed_spec(self, name: str, value: int) -> dict[str, Any]:
        assert self.bundle is not None, "the public keys are not known yet"
        context = SealingContext.bind(
            Scope("strict"), item="value", namespace=self.namespace, name=name
        )
        token = seal(secret_value(name, value), self.bundle.newest, context)
        return {"encryptedData": {"value": token}, "revisionHistoryLimit": HISTORY_LIMIT}

    def manifest(self, name: str, value: int) -> dict[str, Any]:
        kind, spec = (
            ("ConfigProfile", self.profile_spec(name, value))
            if name.startswith("p")
            else ("SealedSecret", self.sealed_spec(name, value))
        )
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }

    # --- writing ---------------------------------------------------------------

    def wait_for_public_keys(self, timeout: float = 60.0) -> None:
        def read() -> PublicKeyBundle:
            cm = self.cluster.core.read_namespaced_config_map(PUBLIC_KEYS, self.keys_namespace)
            return PublicKeyBundle.parse(cm.data["keys.json"])

        self.bundle = wait_for(read, timeout=timeout, what="the published sealing keys")

    def create(self, tmp: Path) -> None:
        """Every source at value 0 (one ``kubectl apply -f dir/``), then ``web`` following all."""
        self.apply_together(self.names, 0, tmp)
        # Plain JSON, which the client sends as is (its signature names V1Deployment).
        body: Any = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": self.deployment,
                "annotations": {"kstrata.dev/reload": ",".join(self.names)},
            },
            "spec": {
                "replicas": 0,
                # Every ReplicaSet stays, so every rollout can be counted.
                "revisionHistoryLimit": 1000,
                "selector": {"matchLabels": {"app": self.deployment}},
                "template": {
                    "metadata": {"labels": {"app": self.deployment}},
                    "spec": {
                        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]
                    },
                },
            },
        }
        self.cluster.apps.create_namespaced_deployment(self.namespace, body)

    def change_set(self, names: Sequence[str], value: int, tmp: Path) -> Path:
        """A directory of manifests for ``names`` at ``value``, for ``kubectl apply -f``."""
        directory = tmp / f"change-set-{value}-{time.monotonic_ns()}"
        directory.mkdir(parents=True)
        for name in names:
            (directory / f"{name}.yaml").write_text(yaml.safe_dump(self.manifest(name, value)))
        return directory

    def apply_together(self, names: Sequence[str], value: int, tmp: Path) -> str:
        """One ``kubectl apply -f dir/`` of ``names`` at ``value``: one change set."""
        directory = self.change_set(names, value, tmp)
        output = self.cluster.kubectl("apply", "-f", str(directory)).stdout
        with self.lock:
            self.expected.update(dict.fromkeys(names, value))
        return output

    def change(self, name: str, value: int, *, timeout: float = 120.0) -> None:
        """One change as a merge patch, retried while the API server is away."""
        plural, spec = (
            (PROFILES, self.profile_spec(name, value))
            if name.startswith("p")
            else (SEALED, self.sealed_spec(name, value))
        )
        retrying(
            lambda: self.cluster.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, {"spec": spec}, _request_timeout=10
            ),
            timeout=timeout,
            seen=self._seen,
        )
        with self.lock:
            self.expected[name] = value

    def _seen(self, error: BaseException) -> None:
        with self.lock:
            self.errors[describe(error)] += 1

    # --- reading ---------------------------------------------------------------

    def _list(self, plural: str) -> dict[str, dict[str, Any]]:
        found = self.cluster.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, _request_timeout=10
        )
        return {item["metadata"]["name"]: item for item in found["items"]}

    def sources(self) -> dict[str, dict[str, Any]]:
        return {**self._list(PROFILES), **self._list(SEALED)}

    def revisions_now(self, sources: dict[str, dict[str, Any]] | None = None) -> dict[str, int]:
        sources = sources if sources is not None else self.sources()
        return {
            name: int((body.get("status") or {}).get("revision") or 0)
            for name, body in sources.items()
        }

    def replica_sets(self) -> list[tuple[int, dict[str, int] | None]]:
        """(deployment revision, record) of ``web``'s ReplicaSets, oldest rollout first."""
        found: list[tuple[int, dict[str, int] | None]] = []
        for rs in self.cluster.apps.list_namespaced_replica_set(
            self.namespace, _request_timeout=10
        ).items:
            if not any(
                o.kind == "Deployment" and o.name == self.deployment
                for o in rs.metadata.owner_references or []
            ):
                continue
            number = int((rs.metadata.annotations or {})["deployment.kubernetes.io/revision"])
            record = (rs.spec.template.metadata.annotations or {}).get(RECORD)
            # The fleet's sources are kstrata's own: revision numbers, never fingerprints.
            numbers = (
                {
                    source: revision
                    for source, revision in parse_revisions(record).items()
                    if isinstance(revision, int)
                }
                if record is not None
                else None
            )
            found.append((number, numbers))
        return sorted(found, key=lambda pair: pair[0])

    def rollout_events(self) -> list[str]:
        events = self.cluster.core.list_namespaced_event(self.namespace, _request_timeout=10).items
        return [
            e.message or ""
            for e in events
            if e.involved_object.name == self.deployment and e.reason == "RollingRestart"
        ]

    def value_served(self, name: str, body: dict[str, Any]) -> int | None:
        """The value the ConfigMap or Secret of ``name`` holds now."""
        if name.startswith("p"):
            cm_name = (body.get("status") or {}).get("configMapName") or name
            cm = self.cluster.core.read_namespaced_config_map(
                cm_name, self.namespace, _request_timeout=10
            )
            rendered = yaml.safe_load((cm.data or {}).get("config.yaml", "")) or {}
            return int(rendered["value"]) if "value" in rendered else None
        secret = self.cluster.core.read_namespaced_secret(name, self.namespace, _request_timeout=10)
        raw = base64.b64decode((secret.data or {}).get("value", ""))
        prefix = f"{name}-value-".encode()
        return int(raw[len(prefix) :]) if raw.startswith(prefix) else None

    # --- the verdict -------------------------------------------------------------

    def converged(self, *, rolled: bool = True) -> bool:
        """Raise AssertionError naming what is not there yet; True when all of it is.

        For ``wait_for``: the last mismatch is chained to its timeout.
        """
        with self.lock:
            expected = dict(self.expected)
        sources = self.sources()
        for name, value in expected.items():
            body = sources[name]
            meta, status = body["metadata"], body.get("status") or {}
            ready = {c["type"]: c for c in status.get("conditions") or []}.get("Ready", {})
            spec_value = (
                body["spec"]["base"]["value"] if name.startswith("p") else None
            )  # profiles carry the value in clear; SealedSecrets only as ciphertext
            assert spec_value in (None, value), f"{name}: spec says {spec_value}, not {value}"
            assert status.get("observedGeneration") == meta["generation"], (
                f"{name}: generation {meta['generation']} not observed "
                f"(status at {status.get('observedGeneration')})"
            )
            assert ready.get("status") == "True", f"{name}: Ready is {ready or 'missing'}"
            assert ready.get("observedGeneration") == meta["generation"], f"{name}: Ready stale"
            annotations = meta.get("annotations") or {}
            assert annotations.get(REVISION_ANNOTATION) == str(status.get("revision")), (
                f"{name}: revision index {annotations.get(REVISION_ANNOTATION)} "
                f"behind status {status.get('revision')}"
            )
            handled = json.loads(annotations.get(LAST_HANDLED, "{}")).get("spec")
            assert handled == body["spec"], f"{name}: kopf has not recorded the spec as handled"
            served = self.value_served(name, body)
            assert served == value, f"{name}: serves {served}, the last change was {value}"
        revisions = self.revisions_now(sources)
        desired = format_revisions({n: revisions[n] for n in expected})
        for name in expected:
            # The reload pass's last write: then the operator has nothing left to do.
            workloads = (sources[name].get("status") or {}).get("workloads")
            wanted_status = [
                {"kind": "Deployment", "name": self.deployment, "revision": revisions[name]}
            ]
            assert workloads == wanted_status, f"{name}: status.workloads {workloads}"
        web = self.cluster.apps.read_namespaced_deployment(
            self.deployment, self.namespace, _request_timeout=10
        )
        record = (web.metadata.annotations or {}).get(RECORD)
        template = (web.spec.template.metadata.annotations or {}).get(RECORD)
        assert record == desired, f"{self.deployment} records {record}, sources are at {desired}"
        # Before the first change the record is written without a rollout.
        wanted = parse_revisions(desired) if rolled else None
        assert template == (desired if rolled else None), f"{self.deployment}: template {template}"
        rollouts = self.replica_sets()
        assert rollouts, f"{self.deployment}: no ReplicaSet yet"
        assert rollouts[-1][1] == wanted, f"{self.deployment}: no ReplicaSet for {template} yet"
        return True

    def wait_converged(self, *, since: float, timeout: float = 120.0, rolled: bool = True) -> float:
        """Wait until converged; the seconds from ``since`` (monotonic) until it was.

        ``rolled``: whether ``web`` has rolled out since its creation (False
        only for the fleet as created).
        """
        wait_for(
            lambda: self.converged(rolled=rolled),
            timeout=timeout,
            interval=0.2,
            what="the fleet to converge",
        )
        return time.monotonic() - since

    def check_revisions(self) -> dict[str, int]:
        """Contiguous revisions: ControllerRevisions 1..N for each source, N its status.

        Consecutive snapshots differ (a revision is a content change), the
        index lists the same numbers, and revision N holds the last change.
        Returns N by source.
        """
        sources = self.sources()
        stored: dict[str, dict[int, Any]] = {}
        for item in self.cluster.apps.list_namespaced_controller_revision(self.namespace).items:
            uid = (item.metadata.labels or {}).get(OWNER_UID_LABEL)
            if uid:
                by_number = stored.setdefault(uid, {})
                assert item.revision not in by_number, f"two ControllerRevisions {item.revision}"
                by_number[item.revision] = item
        result = {}
        with self.lock:
            expected = dict(self.expected)
        for name, body in sources.items():
            meta, status = body["metadata"], body.get("status") or {}
            last = int(status["revision"])
            numbers = sorted(stored.get(meta["uid"], {}))
            assert numbers == list(range(1, last + 1)), f"{name}: revisions {numbers}, N={last}"
            index = decode_history((meta.get("annotations") or {}).get(HISTORY_ANNOTATION))
            assert [e.number for e in index] == numbers, f"{name}: index {index} vs {numbers}"
            snapshots = [decode_snapshot(stored[meta["uid"]][n].data, n) for n in numbers]
            digests = [s.digest for s in snapshots]
            assert all(a != b for a, b in itertools.pairwise(digests)), (
                f"{name}: two consecutive revisions with the same content"
            )
            if name.startswith("p"):
                final = yaml.safe_load(snapshots[-1].rendered["config.yaml"])
                assert final["value"] == expected[name], f"{name}: revision {last} is {final}"
            else:
                assert snapshots[-1].spec["encryptedData"] == body["spec"]["encryptedData"], (
                    f"{name}: revision {last} does not hold the last sealed value"
                )
            result[name] = last
        return result

    def announced(self) -> Counter[str]:
        """The records ``web``'s RollingRestart events announce, and how often each."""
        return Counter(m.rsplit("(", 1)[-1].rstrip(")") for m in self.rollout_events())

    def check_rollouts(self) -> int:
        """One rollout per change set; returns the ReplicaSets made for rollouts.

        Every ReplicaSet kube-controller-manager made carries a record with at
        least one revision newer than the previous one's and none older: no
        rollout repeated, none backwards, none to a state that never was.
        (Two pod-template writes closer together than the controller's sync
        make one ReplicaSet: ``verdict`` checks the announcements as well.)
        """
        rollouts = self.replica_sets()
        records = [record for _, record in rollouts if record is not None]
        # The first ReplicaSet is the Deployment's creation (no record on its template).
        assert len(records) == len(rollouts) - 1, f"unexpected templates: {rollouts}"
        for before, after in itertools.pairwise(records):
            older = {n for n, r in after.items() if r < before.get(n, 0)}
            newer = {n for n, r in after.items() if r > before.get(n, 0)}
            assert not older, f"a rollout went backwards: {before} -> {after}"
            assert newer, f"a rollout repeated: {before} -> {after}"
        # No record announced twice: a pass that decided on a read of the Deployment
        # made before another pass rolled it would patch it again and announce the
        # same rollout a second time (fixed in 690bf78; these faults provoke it).
        twice = {record: count for record, count in self.announced().items() if count > 1}
        assert not twice, f"{self.deployment}: rollouts announced more than once: {twice}"
        return len(records)

    def verdict(self, tmp: Path, *, final_value: int) -> dict[str, Any]:
        """The checks every scenario ends with, then one more change set that rolls once.

        Call after ``wait_converged``.  The last change set is a profile and a
        SealedSecret applied together: exactly one more ReplicaSet, and one
        new record announced, with both new revisions.
        """
        revisions = self.check_revisions()
        replica_sets, announced = self.check_rollouts(), set(self.announced())
        pair = [self.profiles[0], self.sealed[0]]
        self.apply_together(pair, final_value, tmp)
        self.wait_converged(since=time.monotonic(), timeout=60)
        after = self.check_revisions()
        assert all(after[n] == revisions[n] + 1 for n in pair), (revisions, after)
        final = format_revisions(after)
        assert self.check_rollouts() == replica_sets + 1, "the last change set did not roll once"
        wait_for(
            lambda: set(self.announced()) - announced == {final},
            timeout=30,
            what=f"one rollout announced for the last change set, to {final}",
        )
        return {"rollouts": replica_sets + 1, "revisions": sum(after.values())}


# --- the burst -----------------------------------------------------------------


class Burst:
    """Rounds of changes from a background thread; every source changes once per round.

    ``progress`` counts changes done; a test waits on it to place a fault
    in the middle of the burst.  ``gate`` (optional) is called before each
    round with its number, to let the main thread pace the rounds.
    """

    def __init__(
        self,
        fleet: Fleet,
        rounds: Sequence[int],
        *,
        gate: Callable[[int], object] | None = None,
    ) -> None:
        self.fleet = fleet
        self.rounds = list(rounds)
        self.gate = gate
        self.total = len(self.rounds) * len(fleet.names)
        self.progress = 0
        self.changed = threading.Condition()
        self.error: BaseException | None = None
        self.started = 0.0
        self.finished: float | None = None
        self._thread = threading.Thread(target=self._run, name="burst", daemon=True)

    def _run(self) -> None:
        try:
            for value in self.rounds:
                if self.gate is not None:
                    self.gate(value)
                for name in self.fleet.names:
                    self.fleet.change(name, value)
                    with self.changed:
                        self.progress += 1
                        self.changed.notify_all()
        except BaseException as error:  # handed to the main thread by join()
            self.error = error
        finally:
            self.finished = time.monotonic()
            with self.changed:
                self.changed.notify_all()

    def __enter__(self) -> Burst:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, failed: type[BaseException] | None, *_: object) -> None:
        if failed is None:
            self.join()
        else:  # the test failed already: let its error through, not the writer's
            self._thread.join(180.0)

    def wait_progress(self, fraction: float, timeout: float = 120.0) -> None:
        """Block until ``fraction`` of the changes are done (or the burst failed)."""
        target = int(self.total * fraction)
        with self.changed:
            done = self.changed.wait_for(
                lambda: self.progress >= target or self.finished is not None, timeout
            )
        if self.error is not None:
            raise AssertionError("the burst failed") from self.error
        assert done, f"the burst made {self.progress}/{target} changes in {timeout} s"

    def join(self, timeout: float = 180.0) -> float:
        """Wait for the last change; returns when it was made (monotonic)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the burst is stuck at {self.progress}/{self.total}"
        if self.error is not None:
            raise AssertionError("the burst failed") from self.error
        assert self.finished is not None
        return self.finished


# --- the control plane -----------------------------------------------------------


def etcd_client_url(plane: Any) -> str:
    etcd = next(c for c in plane.components if c.name == "etcd")
    flag = next(a for a in etcd.argv if a.startswith("--listen-client-urls="))
    return str(flag.split("=", 1)[1])


def etcd_call(plane: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One call of etcd's JSON gateway on loopback (``/v3/kv/range``, ``/v3/kv/compaction``)."""
    host, port = etcd_client_url(plane).removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", path, body=json.dumps(body))
        response = connection.getresponse()
        payload = response.read()
        assert response.status == 200, f"etcd {path}: {response.status} {payload[:200]!r}"
        found: dict[str, Any] = json.loads(payload)
        return found
    finally:
        connection.close()


def etcd_revision(plane: Any) -> int:
    header = etcd_call(plane, "/v3/kv/range", {"key": base64.b64encode(b"\0").decode()})["header"]
    return int(header["revision"])


def etcd_healthy(plane: Any) -> bool:
    host, port = etcd_client_url(plane).removeprefix("http://").rsplit(":", 1)
    try:
        connection = http.client.HTTPConnection(host, int(port), timeout=2)
        connection.request("GET", "/health")
        healthy = connection.getresponse().status == 200
        connection.close()
    except OSError:
        return False
    return healthy


@contextlib.contextmanager
def healthy_control_plane(cluster: TestCluster) -> Iterator[None]:
    """Around a module: afterwards every component runs and the API server is ready.

    A component left dead would fail every later test: it is restarted here
    (from this, the main, thread) and the module fails.
    """
    yield
    plane = cluster.plane
    if plane is None:
        return
    dead = plane.dead_components()
    for name in dead:
        plane.restart(name)
    wait_for(plane.apiserver_ready, timeout=60, what="kube-apiserver to be ready")
    assert not dead, f"a fault test left {', '.join(dead)} dead (restarted now)"


# --- a TCP proxy in front of the admission webhook ---------------------------------


class WebhookProxy:
    """A loopback TCP proxy the API server calls instead of the webhook itself.

    ``pass``: bytes flow both ways; ``slow``: each connection waits ``delay``
    seconds before anything is forwarded (TLS included, so the API server's
    own timeout fires); ``down``: nothing listens (connection refused).
    """

    def __init__(self, upstream_port: int, *, delay: float = 8.0) -> None:
        self.upstream_port = upstream_port
        self.port = controlplane.free_port()
        self.delay = delay
        self.mode = "pass"
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def set(self, mode: str) -> None:
        """Switch modes; connections kept alive from before are cut (the next call reconnects)."""
        assert mode in ("pass", "slow", "down")
        self.mode = mode
        if mode == "down":
            self.close()
        elif self._listener is None:
            self.listen()
        with self._lock:
            kept, self._open = self._open, set()
        for connection in kept:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client, self.mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str) -> None:
        with self._lock:
            self._open.add(client)
        with client:
            if mode == "slow" and self._stopped.wait(self.delay):
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                return
            with upstream:
                upstream.settimeout(None)
                done = threading.Event()

                def pipe(source: socket.socket, target: socket.socket) -> None:
                    with contextlib.suppress(OSError):
                        while data := source.recv(65536):
                            target.sendall(data)
                    done.set()

                threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
                pipe(client, upstream)
                done.wait(5)

    def stop(self) -> None:
        self._stopped.set()
        self.close()
