"""``kstrata history``, ``kstrata diff`` and ``kstrata rollback`` (being built)."""

from __future__ import annotations

from typing import Any


def register(commands: Any) -> None:
    """Registers nothing yet; the history commands land here."""
