"""The peer benchmark's wording of results: which way a ratio points, and how far.

benchmarks/peerstats.py turns medians into the cells of docs/performance.md's
peer table; a ratio printed the wrong way round would misstate the comparison,
so the direction and the arithmetic are checked here (pure, no cluster).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

PEERSTATS = Path(__file__).resolve().parents[2] / "benchmarks" / "peerstats.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peerstats", PEERSTATS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peerstats = _load()


def test_spread_reports_n_median_and_range() -> None:
    assert peerstats.spread([3.0, 1.0, 2.0, 10.0]) == {
        "n": 4,
        "median": 2.5,
        "min": 1.0,
        "max": 10.0,
    }
    with pytest.raises(ValueError, match="no samples"):
        peerstats.spread([])


def test_rates_read_faster_or_slower_by_the_larger_over_the_smaller() -> None:
    assert peerstats.ratio(42.0, 20.0, higher_is_better=True) == "2.1x faster"
    assert peerstats.ratio(20.0, 42.0, higher_is_better=True) == "2.1x slower"


def test_costs_read_better_or_worse() -> None:
    assert peerstats.ratio(143.3, 19.7, higher_is_better=False) == "7.3x worse"
    assert peerstats.ratio(50.0, 100.0, higher_is_better=False) == "2.0x better"


def test_near_equal_and_zero_sides() -> None:
    assert peerstats.ratio(5.0, 5.0, higher_is_better=True) == "equal"
    assert peerstats.ratio(101.0, 100.0, higher_is_better=False) == "equal (within 5%)"
    assert peerstats.ratio(0, 1000, higher_is_better=False) == "better (0 vs 1000)"
    assert peerstats.ratio(3, 0, higher_is_better=False) == "worse (3 vs 0)"


def test_latency_is_a_multiple_of_the_floor() -> None:
    assert peerstats.latency_ratio(166.8, 22.4) == "7.4x the floor"
    with pytest.raises(ValueError, match="floor must be positive"):
        peerstats.latency_ratio(1.0, 0.0)


def test_cells_show_the_range_only_when_there_is_one() -> None:
    summary = peerstats.spread([40.1, 42.5, 44.0])
    assert peerstats.cell(summary, "/s") == "42.5 /s (n=3, 40.1-44)"
    assert peerstats.cell(peerstats.spread([12.0]), "s") == "12 s (n=1)"
