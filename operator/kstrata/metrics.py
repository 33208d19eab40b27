"""Prometheus metrics kstrata exposes on ``/metrics``.

Defined once here so the use cases and the kopf handlers record into the same
series.  Labels are kinds, results and reasons: never names of secret items,
never values, never hashes of values.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from typing import Final

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from kstrata.errors import ClusterError, KstrataError
from kstrata.wellknown import READY_CONDITION

RECONCILES = Counter(
    "kstrata_reconcile_total",
    "Reconciles by resource kind and result.",
    ["kind", "result"],
)
RECONCILE_SECONDS = Histogram(
    "kstrata_reconcile_duration_seconds",
    "Time spent in one reconcile, by resource kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
VALIDATION_FAILURES = Counter(
    "kstrata_validation_failures_total",
    "Configurations rejected, by resource kind and reason.",
    ["kind", "reason"],
)
OPERATOR_UP = Gauge(
    "kstrata_operator_up",
    "1 while the operator's handlers are running.",
)
SEALING_KEY_MISSING = Counter(
    "kstrata_sealing_key_missing_total",
    "SealedSecret reconciles that failed because a token names a sealing key the operator "
    "does not hold.",
)
SEALED_SECRETS_WAITING_FOR_KEYS = Gauge(
    "kstrata_sealed_secrets_waiting_for_keys",
    "SealedSecrets currently not unsealed because a sealing key is missing.",
)
SEALING_KEYS = Gauge(
    "kstrata_sealing_keys",
    "Sealing key pairs in the operator's key Secret (0 while the Secret is missing).",
)
SEALING_KEY_NEWEST_CREATED = Gauge(
    "kstrata_sealing_key_newest_created_timestamp_seconds",
    "Creation time (Unix seconds) of the newest sealing key pair, the one new values are "
    "sealed to (0 while there is none).",
)
SEALING_KEY_ROTATION_PERIOD = Gauge(
    "kstrata_sealing_key_rotation_period_seconds",
    "The configured sealing key rotation interval (key_rotation_days) in seconds; 0 when "
    "rotation is off.",
)
SEALING_KEY_ROTATIONS = Counter(
    "kstrata_sealing_key_rotations_total",
    "Sealing keys added by rotation.",
)
RESEAL_ITEMS = Counter(
    "kstrata_reseal_items_total",
    "SealedSecret items the reseal endpoint handled, by outcome "
    "(resealed, unchanged, failed, refused).",
    ["outcome"],
)
RELOAD_ROLLOUTS = Counter(
    "kstrata_reload_rollouts_total",
    "Workload rollouts requested because a configuration revision changed, by reload "
    "strategy and result (patched, failed).",
    ["strategy", "result"],
)
RELOAD_POD_SYNCS = Counter(
    "kstrata_reload_pod_syncs_total",
    "Pods of hot-reload workloads annotated so the kubelet refreshes their mounted files "
    "at once, by result (patched, failed).",
    ["result"],
)
RELOAD_LATENCY_SECONDS = Histogram(
    "kstrata_reload_latency_seconds",
    "Time from noticing a revision or annotation change to the pod-template patch "
    "(includes any wait for changes still in flight in the namespace).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)
RELOAD_PASSES = Counter(
    "kstrata_reload_passes_total",
    "Reload passes over a namespace's opted-in workloads, by result (ok, error).",
    ["result"],
)


def reconcile_result(error: BaseException) -> str:
    """The ``result`` label of a reconcile that raised ``error``, for every kind alike.

    ``error``: the API server refused or failed a request, or something
    unexpected broke (both are the operator's or the cluster's trouble: check
    the operator log).  ``invalid``: the object cannot be served as it stands
    (a bad spec, a target that is not ours, a token that does not open or
    names a key not held); changing the object, or the cluster state it
    names, is the fix, and its ``Ready`` condition says which.
    """
    if isinstance(error, ClusterError) or not isinstance(error, KstrataError):
        return "error"
    return "invalid"


@contextlib.contextmanager
def reconcile_measured(kind: str) -> Iterator[None]:
    """Count one reconcile of ``kind`` by its result and time it, the same for every kind."""
    started = time.perf_counter()
    try:
        yield
    except Exception as error:
        RECONCILES.labels(kind=kind, result=reconcile_result(error)).inc()
        raise
    finally:
        RECONCILE_SECONDS.labels(kind=kind).observe(time.perf_counter() - started)
    RECONCILES.labels(kind=kind, result="ok").inc()


class ObjectStates:
    """How many ConfigProfiles and SealedSecrets are Ready, counted when scraped.

    ``kstrata_objects{kind, ready, reason}``: ``ready`` is ``true`` or
    ``false`` from the ``Ready`` condition (``reason`` its reason), or
    ``unknown`` while the status does not speak for the current spec yet
    (``reason`` ``Pending`` before the first reconcile, ``Stale`` while
    ``observedGeneration`` lags ``generation``: the operator is down or busy).
    Fed by the kopf event handlers with each object's status as the watch
    delivers it, so it follows the cluster's state, not this replica's own
    attempts; a standby replica (kopf peering) sees no events and reports
    nothing until it takes over.  Labels hold kinds and reasons only.
    """

    NAME: Final = "kstrata_objects"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str, str], tuple[str, str]] = {}
        # Kept with every change, so a scrape costs the number of series, not
        # of objects: at 10,000 objects a count at each scrape (the benchmarks
        # poll /metrics twice a second) grew with n times the cold start.
        self._counts: Tally[tuple[str, str, str]] = Tally()

    @staticmethod
    def state_of(body: Mapping[str, object]) -> tuple[str, str]:
        """(ready, reason) of one object as its metadata and status say."""
        meta = _mapping(body.get("metadata"))
        status = _mapping(body.get("status"))
        conditions = status.get("conditions")
        ready = next(
            (
                c
                for c in (conditions if isinstance(conditions, list) else [])
                if isinstance(c, Mapping) and c.get("type") == READY_CONDITION
            ),
            None,
        )
        if ready is None:
            return "unknown", "Pending"
        if _count(status.get("observedGeneration")) < _count(meta.get("generation")):
            return "unknown", "Stale"
        flag = "true" if ready.get("status") == "True" else "false"
        return flag, str(ready.get("reason") or "Unknown")

    def observe(self, kind: str, body: Mapping[str, object]) -> None:
        meta = _mapping(body.get("metadata"))
        key = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        state = self.state_of(body)
        with self._lock:
            self._uncount(kind, self._states.get(key))
            self._states[key] = state
            self._counts[(kind, *state)] += 1

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._uncount(kind, self._states.pop((kind, namespace, name), None))

    def _uncount(self, kind: str, state: tuple[str, str] | None) -> None:
        if state is not None:
            series = (kind, *state)
            self._counts[series] -= 1
            if not self._counts[series]:
                del self._counts[series]

    def describe(self) -> list[Metric]:
        return [self._family()]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self.NAME,
            "ConfigProfiles and SealedSecrets by kind and Ready state (true, false, or unknown "
            "while the status lags the spec), with the condition's reason.",
            labels=["kind", "ready", "reason"],
        )

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = dict(self._counts)
        family = self._family()
        for (kind, ready, reason), count in sorted(counts.items()):
            family.add_metric([kind, ready, reason], count)
        yield family


def _mapping(value: object) -> Mapping[str, object]:
    """``value`` if the watch delivered an object there, else empty (a field left out)."""
    return value if isinstance(value, Mapping) else {}


def _count(value: object) -> int:
    """A generation number, 0 when absent (or not a number, which the API never sends)."""
    return value if isinstance(value, int) else 0


OBJECTS = ObjectStates()
REGISTRY.register(OBJECTS)
