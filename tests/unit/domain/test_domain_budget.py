"""The time budget: multiplying schemas are abandoned with a clear error, honest work is not."""

from __future__ import annotations

import threading
import time

import pytest

from kstrata.domain import budget
from kstrata.domain.schema import validate
from kstrata.errors import BudgetExceededError, InputLimitError
from support.hostile import multiplying_schema

CANARY = 7_354_911


def test_a_multiplying_schema_is_abandoned_at_the_default_budget() -> None:
    started = time.monotonic()
    with pytest.raises(BudgetExceededError) as caught:
        validate(multiplying_schema(), {"x": CANARY})
    elapsed = time.monotonic() - started
    # 2**24 validations would take minutes; the budget ends it (slack for a loaded machine).
    assert elapsed < budget.DEFAULT_SECONDS + 10
    assert isinstance(caught.value, InputLimitError)
    assert caught.value.reason == "BudgetExceeded"
    message = str(caught.value)
    assert "schema validation took longer than its 2 s budget" in message
    assert "anyOf/oneOf" in message
    assert str(CANARY) not in message


def test_the_callers_budget_applies_and_an_inner_one_never_extends_it() -> None:
    with budget.time_budget(0.2, "reviewing ConfigProfile ns/evil"):
        assert budget.active()
        with budget.time_budget(60, "inner"), pytest.raises(BudgetExceededError) as caught:
            validate(multiplying_schema(), {"x": 1})
    assert "reviewing ConfigProfile ns/evil took longer than its 0.2 s budget" in str(caught.value)
    assert not budget.active()


def test_honest_work_is_unaffected_and_a_spent_budget_is_per_thread() -> None:
    schema = multiplying_schema(depth=4)  # 16 alternatives: cheap
    assert [v.rule for v in validate(schema, {"x": 1})] == ["anyOf"]
    assert validate(schema, {"x": "fine"}) == []
    seen: list[bool] = []
    with budget.time_budget(-1.0, "already spent"):
        with pytest.raises(BudgetExceededError):
            budget.check()
        other = threading.Thread(target=lambda: seen.append(budget.active()))
        other.start()
        other.join()
    assert seen == [False]
