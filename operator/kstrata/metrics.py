"""Prometheus metrics kstrata exposes on ``/metrics``.

Defined once here so the use cases and the kopf handlers record into the same
series.  Labels are kinds, results and reasons: never names of secret items,
never values, never hashes of values.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
