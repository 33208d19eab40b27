"""Wait for conditions with a deadline instead of sleeping and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ConditionTimeout(AssertionError):
    """The awaited condition did not hold before the deadline."""


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something truthy; return that value.

    Exceptions from the probe count as "not yet" until the deadline, then the
    last one is chained to the timeout so the failure explains itself.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
        except Exception as exc:
            last_error = exc
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ConditionTimeout(
                f"timed out after {timeout} s waiting for {what}"
            ) from last_error
        time.sleep(interval)
