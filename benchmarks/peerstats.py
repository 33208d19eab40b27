"""Medians, spread and kstrata-to-peer ratios for benchmarks/bench_peers.py.

Kept apart from the benchmark (no Kubernetes client, no control plane) so the
wording of a ratio -- which way is better, how many times -- is unit-tested
(tests/unit/test_peerstats.py) and every row of the peer table says it the
same way.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def spread(samples: Sequence[float], digits: int = 1) -> dict[str, float]:
    """n, median, min and max of some samples, rounded for a report."""
    if not samples:
        raise ValueError("no samples")
    return {
        "n": len(samples),
        "median": round(statistics.median(samples), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
    }


def ratio(kstrata: float, peer: float, *, higher_is_better: bool) -> str:
    """kstrata against the peer in words: "2.1x faster", "7.3x slower", "equal".

    ``higher_is_better`` says which way the measure points: objects per second
    (True) or milliseconds, MiB, writes (False).  Speed measures read
    faster/slower, the others better/worse.  A zero on either side cannot be a
    ratio: then the words say which side is ahead.
    """
    if kstrata == peer:
        return "equal"
    kstrata_ahead = kstrata > peer if higher_is_better else kstrata < peer
    good, bad = ("faster", "slower") if higher_is_better else ("better", "worse")
    if kstrata == 0 or peer == 0:
        return f"{good} (0 vs {peer:g})" if kstrata_ahead else f"{bad} ({kstrata:g} vs 0)"
    times = max(kstrata, peer) / min(kstrata, peer)
    if times < 1.05:
        return "equal (within 5%)"
    return f"{times:.1f}x {good if kstrata_ahead else bad}"


def latency_ratio(kstrata_ms: float, floor_ms: float) -> str:
    """A latency as a multiple of the API floor: "4.2x the floor"."""
    if floor_ms <= 0:
        raise ValueError("the floor must be positive")
    return f"{kstrata_ms / floor_ms:.1f}x the floor"


def cell(summary: dict[str, float], unit: str) -> str:
    """``12.3 unit (n=3, 11.9-13.0)`` for a table cell; n=1 shows no range."""
    text = f"{summary['median']:g} {unit}".rstrip()
    if summary["n"] == 1:
        return f"{text} (n=1)"
    return f"{text} (n={summary['n']:g}, {summary['min']:g}-{summary['max']:g})"
