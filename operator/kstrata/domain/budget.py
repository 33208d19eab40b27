"""Time budgets for work whose cost the user's input decides.

Why this module exists: every reconcile and every admission review runs the
domain over input any namespace user writes.  Size and depth limits bound
most of that work, but not all of it: a JSON Schema can ask for work
exponential in its size (``anyOf`` of two references to a definition that is
itself ``anyOf`` of two references, twenty levels down, is a million
validations of one value).  Inside the operator that would hold a worker
thread, and a share of the GIL, for minutes; inside the webhook it would
outlive the API server's timeout, and ``failurePolicy: Fail`` would then
refuse every write of the kind.

A budget is a deadline for the current thread.  Work that can multiply
(schema applicators, see :mod:`kstrata.domain.schema_keywords`) calls
:func:`check` at each step and gives up with :class:`BudgetExceededError`,
an input error that names the budget and what to simplify, never a value.
Budgets nest: an inner one never extends an outer one.

Boundary: pure (time and a thread-local); it knows nothing of kopf or the
API.  The use cases choose the budgets (``kstrata.app.profiles`` and
``kstrata.app.admission``); :func:`kstrata.domain.schema.validate` applies
:data:`DEFAULT_SECONDS` itself when its caller set none, so the CLI is
bounded too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from kstrata.errors import BudgetExceededError

__all__ = ["DEFAULT_SECONDS", "active", "check", "time_budget"]

#: What one validation may take when no caller said otherwise.  A schema and
#: configuration a person writes validate in milliseconds; this is a bound on
#: abuse, two orders of magnitude above the slowest real profile measured
#: (docs/performance.md), and below the webhook's 5 s timeout.
DEFAULT_SECONDS: Final = 2.0


class _Deadline(threading.local):
    def __init__(self) -> None:
        self.at: float | None = None
        self.seconds = 0.0
        self.what = ""


_current = _Deadline()


@contextmanager
def time_budget(seconds: float, what: str) -> Iterator[None]:
    """Run the block under a deadline ``seconds`` from now (or the outer one, if sooner)."""
    saved = (_current.at, _current.seconds, _current.what)
    deadline = time.monotonic() + seconds
    if _current.at is None or deadline < _current.at:
        _current.at, _current.seconds, _current.what = deadline, seconds, what
    try:
        yield
    finally:
        _current.at, _current.seconds, _current.what = saved


def active() -> bool:
    """Whether the current thread works under a budget."""
    return _current.at is not None


def check() -> None:
    """Raise ``BudgetExceededError`` if the current thread's budget is spent."""
    at = _current.at
    if at is not None and time.monotonic() > at:
        raise BudgetExceededError(_current.what, _current.seconds)
