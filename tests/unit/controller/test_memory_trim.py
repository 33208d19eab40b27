"""When the operator gives memory back: once after each burst of work, never during one.

``runner.QuietAfterBurst`` decides from the CPU seconds the process used per
interval; ``runner.trim_when_quiet`` acts on it.
"""

from __future__ import annotations

from kstrata.controller.runner import QuietAfterBurst


def feed(decide: QuietAfterBurst, cpu_per_second: list[float]) -> list[int]:
    """The seconds (0-based) at which ``decide`` says: trim now."""
    return [second for second, cpu in enumerate(cpu_per_second) if decide.observe(cpu, 1.0)]


def test_trims_once_after_a_burst_has_gone_quiet() -> None:
    burst = [0.9] * 10  # a cold start: ~a CPU's worth for 10 s
    quiet = [0.01] * 20
    assert feed(QuietAfterBurst(), burst + quiet) == [12]  # the third quiet second


def test_never_trims_while_working_or_when_there_was_no_burst() -> None:
    assert feed(QuietAfterBurst(), [0.9] * 60) == []  # busy throughout
    assert feed(QuietAfterBurst(), [0.01] * 60) == []  # idle from the start
    # A keep-alive or a single reconcile now and then is not a burst.
    assert feed(QuietAfterBurst(), ([0.2] + [0.01] * 9) * 4) == []


def test_a_pause_inside_a_burst_does_not_trim_and_each_burst_trims_once() -> None:
    pause_inside = [0.9] * 5 + [0.01] * 2 + [0.9] * 5 + [0.01] * 10
    assert feed(QuietAfterBurst(), pause_inside) == [14]
    two_bursts = ([0.9] * 5 + [0.01] * 10) * 2
    assert feed(QuietAfterBurst(), two_bursts) == [7, 22]
